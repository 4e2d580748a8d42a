"""Base class of the pipeline nodes: parameters from dataclasses, sensor-data input, timing, diagnostics, errors.

A stage subscribes to ``~/input/points`` (best effort, keep last 1: a slow stage drops old frames instead of
queueing them), calls :meth:`StageNode.process` for each cloud while someone subscribes to one of its outputs, and
publishes what ``process`` returns. Any exception raised by ``process`` is one bad frame: one error line (repeats
of the same reason within 5 s are logged at debug level), nothing published, the counter for ``/diagnostics``
goes up, and the next message is processed as usual.

Several stages compose in one process::

    ex = SingleThreadedExecutor()
    for node in (SamplerNode(ctx_kwargs...), SegmentationNode(...)):
        ex.add_node(node)
    ex.spin()
"""

from __future__ import annotations

from collections import deque
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2

from pu_ros.ros.conversions import stamp_to_ns
from pu_ros.ros.diagnostics import NodeMonitor
from pu_ros.ros.node_config import NODE_SECTIONS
from pu_ros.ros.node_params import ParameterSections, settings_overrides

#: Input QoS of every stage (GUIDE section 2): best effort, keep last 1, volatile.
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
#: Output QoS: reliable keep-last 1 matches reliable (RViz, recorders) and best-effort subscribers alike and never
#: queues more than the newest cloud.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
_REPEAT_S = 5.0


def node_sections(executable: str) -> dict:
    """``{section: dataclass}`` of a pipeline node executable (imports the config modules)."""
    return {section: load() for section, load in NODE_SECTIONS[executable].items()}


class StageNode(Node):
    """One pipeline stage. Subclasses set ``EXECUTABLE`` and ``NODE_NAME`` and implement :meth:`process`.

    Args:
        settings: parameter values ``{'section.field': value}`` (override ``--ros-args`` and YAML files).
        node_name: ROS node name (default ``NODE_NAME``).
        **kwargs: passed to :class:`rclpy.node.Node` (``context``, ``namespace``, ``cli_args``...).

    Attributes:
        params: :class:`~pu_ros.ros.node_params.ParameterSections` (``node.params['sampler'].ratio``).
        monitor: :class:`~pu_ros.ros.diagnostics.NodeMonitor` (per-stage timings, counters, diagnostics).
        errors: the last 100 error lines (bad frames and rejected parameter sets).
        outputs: publishers whose subscribers make the node work.
    """

    EXECUTABLE = ''
    NODE_NAME = ''

    def __init__(self, settings: dict | None = None, *, node_name: str | None = None, **kwargs):
        """Declare parameters, create the monitor and the input subscription (outputs are the subclass's)."""
        overrides = list(kwargs.pop('parameter_overrides', None) or []) + settings_overrides(settings)
        super().__init__(node_name or self.NODE_NAME, parameter_overrides=overrides, **kwargs)
        self.errors: deque[str] = deque(maxlen=100)
        self._last_error = ('', 0.0)
        self.params = ParameterSections(self, node_sections(self.EXECUTABLE), on_change=self._apply_params)
        self.monitor = NodeMonitor(self, self.params['diagnostics'])
        self.outputs: list = []
        self.sub_points = self.create_subscription(PointCloud2, '~/input/points', self._on_points, SENSOR_QOS)

    # ------------------------------------------------------------------ to implement
    def process(self, msg: PointCloud2) -> list:
        """Work on one cloud; return ``[(publisher, message), ...]`` to publish (raise on a bad frame)."""
        raise NotImplementedError

    def apply_params(self, new: dict) -> None:
        """Called with ``{section: new dataclass}`` before a runtime parameter set; raise ValueError to refuse."""

    # ------------------------------------------------------------------ machinery
    def _apply_params(self, new: dict) -> None:
        self.apply_params(new)
        if 'diagnostics' in new:
            old_period = self.monitor.config.period
            self.monitor.config = new['diagnostics']
            if new['diagnostics'].period != old_period:
                self.monitor.set_period(new['diagnostics'].period)

    def has_subscribers(self) -> bool:
        """True when any output has a subscriber (else frames are skipped: no work for nobody)."""
        return any(pub.get_subscription_count() > 0 for pub in self.outputs)

    def report_error(self, text: str) -> None:
        """Log one error line (repeats of the same text within 5 s at debug level) and keep it in ``errors``."""
        now = time.monotonic()
        self.errors.append(text)
        if self._last_error[0] == text and now - self._last_error[1] < _REPEAT_S:
            self.get_logger().debug(text)
            return
        self._last_error = (text, now)
        self.get_logger().error(text)

    def _on_points(self, msg: PointCloud2) -> None:
        self.run_frame(msg, self.process)

    def run_frame(self, msg: PointCloud2, work) -> None:
        """Run ``work(msg)`` as one frame: skip without subscribers, time it, publish its output or report."""
        stamp = stamp_to_ns(msg.header.stamp)
        if not self.has_subscribers():
            self.monitor.skipped()
            return
        self.monitor.begin(stamp)
        try:
            out = work(msg)
        except Exception as exc:  # noqa: BLE001 - any failure is one bad frame: say why, publish nothing, go on
            reason = str(exc) or type(exc).__name__
            self.report_error(f'cloud {msg.header.frame_id or "?"} @ {stamp / 1e9:.3f}: {reason}; nothing published')
            self.monitor.failed(reason)
            return
        if out is None:  # held back (waiting for its pair): counted when it is handled again
            self.monitor.frames_in -= 1
            return
        for pub, m in out:
            pub.publish(m)
        self.monitor.end(stamp)
