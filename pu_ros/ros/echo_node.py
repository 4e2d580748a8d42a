"""See what a subscriber receives: ``KittiEcho`` node, ``echo_node`` executable and ``pu-ros echo``.

The node subscribes to the KITTI topics written by ``pu-ros kitti-to-bag`` (best-effort sensor-data QoS by default,
as the pipeline's nodes do; ``reliable`` for a lossless check), converts every message with
:mod:`pu_ros.ros.conversions` and keeps one record per message (:func:`summarize`): stamp, point count, SHA-1 of
the ``(N, 4)`` float32 x, y, z, intensity array and of the ``label`` field, a histogram of the labels' raw class
ids, image size / encoding / SHA-1 of the pixels, camera_info size and matrices. :func:`bag_records` builds the
same records from a bag, and :func:`compare_records` says which messages arrived intact; the demo and the DDS tests
use them. ``pu-ros echo`` prints one line per message, a summary table at the end and, with ``--json``, writes the
records to a file.

Parameters: ``topics`` (string array; ``TOPIC`` or ``TOPIC:pkg/msg/Type``), ``reliable`` (bool), ``count`` (int,
stop after that many messages in total; 0 = no limit), ``depth`` (int, subscription queue depth).
"""

from __future__ import annotations

import sys
import time

try:
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.task import Future
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
except ImportError as exc:  # pragma: no cover - exercised only without rclpy
    raise ImportError(
        'pu_ros.ros.echo_node needs rclpy and sensor_msgs: source a ROS 2 installation or '
        '`pip install ros-rclpy ros-rmw-fastrtps-cpp ros-sensor-msgs`'
    ) from exc

from pu_ros.ros.echo_cli import SETUP_ERRORS, EchoSession, add_arguments, run
from pu_ros.ros.echo_format import format_summary, message_line
from pu_ros.ros.echo_records import (
    CAMERA_INFO_TOPIC,
    CONTENT_KEYS,
    DEFAULT_TOPICS,
    IMAGE_TOPIC,
    POINTS_TOPIC,
    array_sha1,
    bag_records,
    compare_records,
    labels_checksum,
    points_checksum,
    summarize,
)
from pu_ros.ros.message_types import resolve_message_type, type_name

__all__ = [
    'CAMERA_INFO_TOPIC', 'CONTENT_KEYS', 'DEFAULT_TOPICS', 'IMAGE_TOPIC', 'NODE_NAME', 'POINTS_TOPIC',
    'SETUP_ERRORS', 'TF_STATIC_TOPIC', 'EchoSession', 'KittiEcho', 'add_arguments', 'array_sha1', 'bag_records',
    'compare_records', 'format_summary', 'guess_type', 'labels_checksum', 'main', 'message_line',
    'points_checksum', 'run', 'summarize', 'type_name',
]

NODE_NAME = 'kitti_echo'
TF_STATIC_TOPIC = '/tf_static'


def guess_type(topic: str):
    """Message class for a topic name of the KITTI layout (``..._info`` / ``image`` / ``points``), else None."""
    name = topic.lower()
    if name in ('/tf_static', '/tf'):
        return resolve_message_type('tf2_msgs/msg/TFMessage')[0]  # None without tf2_msgs
    if name.endswith('camera_info'):
        return CameraInfo
    if 'image' in name:
        return Image
    if any(key in name for key in ('point', 'cloud', 'velo', 'lidar', 'scan')):
        return PointCloud2
    return None


# ------------------------------------------------------------------------------------------------- node


class KittiEcho(Node):
    """Subscribes to KITTI topics and keeps a :func:`summarize` record of every message.

    Args:
        settings: parameter values by name (``topics``, ``reliable``, ``count``, ``depth``).
        node_name: ROS node name.
        keep_arrays: also keep the converted arrays in :attr:`arrays` (memory grows with every message).
        on_record: called with each new record (after it is appended).
        **kwargs: passed to :class:`rclpy.node.Node`.

    Attributes:
        records: list of records in arrival order; each also has ``index`` (per-topic count) and
            ``received_ns`` (wall time of arrival).
        arrays: list parallel to ``records`` of dicts with ``points`` (N, 4) float32, ``labels`` (N,) uint32 or
            None, ``image`` (H, W[, C]); only with ``keep_arrays``.
        counts: ``{topic: messages received}``.
        finished: future completed once ``count`` messages have arrived (never when ``count`` is 0).
    """

    def __init__(self, settings: dict | None = None, *, node_name: str = NODE_NAME, keep_arrays: bool = False,
                 on_record=None, **kwargs):
        """Declare parameters and subscribe (topics of unknown type are resolved from the ROS graph)."""
        overrides = list(kwargs.pop('parameter_overrides', None) or [])
        overrides += [_to_parameter(k, v) for k, v in (settings or {}).items()
                      if not (isinstance(v, (list, tuple)) and not v)]
        super().__init__(node_name, parameter_overrides=overrides, **kwargs)
        from pu_ros.ros.node_config import EchoConfig
        from pu_ros.ros.node_params import ParameterSections

        # Subscriptions are made once: runtime changes are refused, not ignored.
        self.params = ParameterSections(self, {'': EchoConfig}, read_only=['topics', 'reliable', 'count', 'depth'])
        try:
            topics = [str(t) for t in self.get_parameter('topics').value if str(t)]
        except ParameterUninitializedException:
            topics = []
        self.topics = topics or list(DEFAULT_TOPICS)
        self.reliable = bool(self.get_parameter('reliable').value)
        self.count = int(self.get_parameter('count').value)
        depth = int(self.get_parameter('depth').value)
        self.qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if self.reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        self.keep_arrays = keep_arrays
        self.on_record = on_record
        self.records: list[dict] = []
        self.arrays: list[dict] = []
        self.counts: dict[str, int] = {}
        self.finished = Future()
        self._subs = {}
        self._unresolved: dict[str, float] = {}
        self._errors_logged: set[str] = set()
        for spec in self.topics:
            topic, _, msgtype = spec.partition(':')
            cls = None
            if msgtype:
                cls, reason = resolve_message_type(msgtype)
                if cls is None:
                    raise ValueError(f'topic {topic}: {reason}')
            cls = cls or guess_type(topic)
            if cls is None:
                self._unresolved[topic] = time.monotonic()
            else:
                self._subscribe(topic, cls)
        self._resolve_timer = self.create_timer(0.5, self._resolve) if self._unresolved else None
        latched = ', /tf_static reliable + transient local' if TF_STATIC_TOPIC in self._subs else ''
        self.get_logger().info(f'listening on {", ".join(t.partition(":")[0] for t in self.topics)} '
                               f'({"reliable" if self.reliable else "best effort"}, depth {depth}{latched})')

    def _subscribe(self, topic: str, cls) -> None:
        self.counts.setdefault(topic, 0)
        qos = self.qos
        if topic == TF_STATIC_TOPIC:  # latched: reliable + transient local, or the static transforms are missed
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subs[topic] = self.create_subscription(cls, topic, lambda msg, t=topic: self._on_message(t, msg), qos)

    def _resolve(self) -> None:
        known = dict(self.get_topic_names_and_types())
        for topic in list(self._unresolved):
            types = known.get(self.resolve_topic_name(topic))
            if not types:
                continue
            cls, reason = resolve_message_type(types[0])
            if cls is None:
                self.get_logger().warning(f'cannot subscribe to {topic} ({types[0]}): {reason}')
            else:
                self._subscribe(topic, cls)
                self.get_logger().info(f'subscribed to {topic} ({types[0]})')
            del self._unresolved[topic]
        if not self._unresolved:
            self._resolve_timer.cancel()

    def _on_message(self, topic: str, msg) -> None:
        keep = {} if self.keep_arrays else None
        rec = summarize(msg, topic, keep)
        rec['index'] = self.counts[topic]
        rec['received_ns'] = time.time_ns()
        self.counts[topic] += 1
        self.records.append(rec)
        if keep is not None:
            self.arrays.append(keep)
        if 'error' in rec and topic not in self._errors_logged:
            self._errors_logged.add(topic)
            self.get_logger().error(f'{topic}: cannot convert message: {rec["error"]}')
        if self.on_record is not None:
            self.on_record(rec)
        if self.count and len(self.records) >= self.count and not self.finished.done():
            self.finished.set_result(len(self.records))


def _to_parameter(name: str, value) -> Parameter:
    if isinstance(value, (list, tuple)):
        return Parameter(name, Parameter.Type.STRING_ARRAY, [str(v) for v in value])
    return Parameter(name, value=value)


def main(args=None) -> int:
    """``ros2 run pu_ros echo_node [--ros-args -p topics:=[...] -p count:=10 -p reliable:=true]``.

    ``--help`` prints usage without listening; SIGINT/SIGTERM (once or more) print the summary and exit 0, or 1
    when ``count`` was set and not reached (like ``pu-ros echo``); reaching ``count`` exits 0; bad parameters exit
    2 (see :func:`pu_ros.ros.process.node_main`).
    """
    from pu_ros.ros.node_config import EchoConfig
    from pu_ros.ros.process import node_main, parameter_table

    made = []

    def make_node():
        made.append(KittiEcho(on_record=lambda rec: print(message_line(rec), flush=True)))
        return made[0]

    code = node_main(make_node, prog='echo_node', description=__doc__, parameters=parameter_table({'': EchoConfig}),
                     argv=args, finished=lambda node: 0 if node.finished.done() else None,
                     on_exit=lambda node: print(format_summary(node.records) if node.records
                                                else 'no message received', flush=True))
    if code == 0 and made and made[0].count and not made[0].finished.done():
        return 1  # stopped before `count` messages arrived
    return code


if __name__ == '__main__':
    sys.exit(main())
