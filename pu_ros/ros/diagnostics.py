"""Per-frame timing, debug topics and ``/diagnostics`` of the pipeline nodes (Autoware style).

Each node owns one :class:`NodeMonitor`:

- ``~/debug/processing_time_ms`` (std_msgs/Float64): callback entry to publish, per processed frame;
- ``~/debug/pipeline_latency_ms`` (std_msgs/Float64): node clock now minus the input header stamp, at publish;
- ``/diagnostics`` (diagnostic_msgs/DiagnosticArray), every ``diagnostics.period`` s: OK; WARN when the last
  latency exceeded ``diagnostics.latency_budget_ms`` or frames were dropped since the last report; ERROR after
  ``diagnostics.error_after`` consecutive failed frames. Key/values: counters, latency percentiles, extra values
  set by the node (device, mIoU...).

Per-stage timings (``monitor.stages[name]``, a :class:`LatencyStats`) give p50/p90/p99/max for summaries.
"""

from __future__ import annotations

from collections import deque
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rclpy.qos import QoSProfile
from std_msgs.msg import Float64

from pu_ros.ros.node_config import DiagnosticsConfig

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class LatencyStats:
    """The last ``window`` samples (ms) of one stage, with percentiles.

    Attributes:
        count: samples ever added.
        last: the latest sample (ms) or None.
    """

    def __init__(self, window: int = 10000):
        """Keep at most ``window`` samples."""
        self._values = deque(maxlen=int(window))
        self.count = 0
        self.last = None

    def add(self, ms: float) -> None:
        """Record one sample in milliseconds."""
        self._values.append(float(ms))
        self.count += 1
        self.last = float(ms)

    def summary(self) -> dict | None:
        """``{'n', 'p50', 'p90', 'p99', 'max', 'mean'}`` in ms over the window, or None without samples."""
        if not self._values:
            return None
        a = np.fromiter(self._values, np.float64)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return {'n': int(a.size), 'p50': float(p50), 'p90': float(p90), 'p99': float(p99), 'max': float(a.max()),
                'mean': float(a.mean())}


class DropCounter:
    """Estimates frames lost upstream (best-effort QoS, keep-last 1) from gaps between input stamps.

    The sensor period is the smallest positive stamp gap among the last 20 frames; a gap of ``k`` periods
    (rounded) counts ``k - 1`` drops. A stamp going backwards (bag loop, sim time reset) starts over.
    """

    def __init__(self):
        """No frame seen yet."""
        self.dropped = 0
        self._last = None
        self._gaps = deque(maxlen=20)

    def update(self, stamp_ns: int) -> int:
        """Add one frame's stamp; returns how many drops it revealed."""
        new = 0
        if self._last is not None and stamp_ns > self._last:
            gap = stamp_ns - self._last
            self._gaps.append(gap)
            period = min(self._gaps)
            if len(self._gaps) >= 3 and gap > 1.5 * period:
                new = int(round(gap / period)) - 1
        elif self._last is not None and stamp_ns < self._last:
            self._gaps.clear()
        self._last = stamp_ns
        self.dropped += new
        return new


class NodeMonitor:
    """Timing, counters, debug topics and diagnostics of one pipeline node.

    Args:
        node: the rclpy Node.
        config: :class:`~pu_ros.ros.node_config.DiagnosticsConfig` (replace ``monitor.config`` to change it).
        hardware_id: ``hardware_id`` of the diagnostic status (e.g. the device name).

    Attributes:
        stages: ``{name: LatencyStats}``; ``'total'`` (processing time) and ``'latency'`` are always filled.
        frames_in, frames_out, frames_failed, frames_skipped: counters (skipped: nobody subscribed).
        drops: :class:`DropCounter` of the input stamps.
        values: extra key/values shown in diagnostics (``monitor.values['miou'] = ...``).
    """

    def __init__(self, node, config: DiagnosticsConfig | None = None, hardware_id: str = ''):
        """Create the debug publishers and the diagnostics timer."""
        self.node = node
        self.config = config or DiagnosticsConfig()
        self.hardware_id = hardware_id
        self.stages: dict[str, LatencyStats] = {'total': LatencyStats(), 'latency': LatencyStats()}
        self.frames_in = self.frames_out = self.frames_failed = self.frames_skipped = 0
        self.consecutive_failures = 0
        self.last_error = ''
        self.drops = DropCounter()
        self.values: dict[str, object] = {}
        self._dropped_reported = 0
        self.t0 = None
        qos = QoSProfile(depth=10)
        self.pub_processing = node.create_publisher(Float64, '~/debug/processing_time_ms', qos)
        self.pub_latency = node.create_publisher(Float64, '~/debug/pipeline_latency_ms', qos)
        self.pub_diag = node.create_publisher(DiagnosticArray, '/diagnostics', qos)
        self._timer = node.create_timer(self.config.period, self.publish_diagnostics)

    # ------------------------------------------------------------------ per frame
    def begin(self, stamp_ns: int | None = None) -> float:
        """A frame arrived: count it (and drops before it); returns the start time for :meth:`end`."""
        self.frames_in += 1
        if stamp_ns is not None:
            self.drops.update(int(stamp_ns))
        self.t0 = time.perf_counter()
        return self.t0

    def stage(self, name: str, t0: float) -> float:
        """Record the time since ``t0`` (perf_counter s) under ``name``; returns now (the next stage's t0)."""
        now = time.perf_counter()
        self.stages.setdefault(name, LatencyStats()).add((now - t0) * 1e3)
        return now

    def skipped(self) -> None:
        """The frame was not processed because nobody subscribes to the outputs."""
        self.frames_skipped += 1

    def end(self, stamp_ns: int | None) -> None:
        """The frame was published: record processing time and latency and publish them."""
        total = (time.perf_counter() - self.t0) * 1e3 if self.t0 is not None else 0.0
        self.stages['total'].add(total)
        self.pub_processing.publish(Float64(data=total))
        if stamp_ns is not None:
            latency = (self.node.get_clock().now().nanoseconds - int(stamp_ns)) / 1e6
            self.stages['latency'].add(latency)
            self.pub_latency.publish(Float64(data=latency))
        self.frames_out += 1
        self.consecutive_failures = 0

    def failed(self, reason: str) -> None:
        """The frame could not be processed (the node has logged ``reason``)."""
        self.frames_failed += 1
        self.consecutive_failures += 1
        self.last_error = str(reason)

    # ------------------------------------------------------------------ diagnostics
    def level(self) -> tuple[int, str]:
        """``(level, message)`` of the current state."""
        if self.consecutive_failures >= self.config.error_after:
            return ERROR, f'{self.consecutive_failures} consecutive frames failed: {self.last_error}'
        problems = []
        last = self.stages['latency'].last
        if last is not None and last > self.config.latency_budget_ms:
            problems.append(f'latency {last:.0f} ms over the {self.config.latency_budget_ms:g} ms budget')
        new_drops = self.drops.dropped - self._dropped_reported
        if new_drops > 0:
            problems.append(f'{new_drops} input frames dropped')
        if self.consecutive_failures:
            problems.append(f'last frame failed: {self.last_error}')
        if problems:
            return WARN, '; '.join(problems)
        return OK, 'OK' if self.frames_out else 'waiting for input'

    def status(self) -> DiagnosticStatus:
        """The node's DiagnosticStatus now."""
        level, message = self.level()
        kv = {'frames_in': self.frames_in, 'frames_out': self.frames_out, 'frames_failed': self.frames_failed,
              'frames_skipped_no_subscriber': self.frames_skipped, 'frames_dropped': self.drops.dropped,
              'latency_budget_ms': self.config.latency_budget_ms}
        for name, stats in self.stages.items():
            s = stats.summary()
            if s:
                kv[f'{name}_ms_p50'] = round(s['p50'], 2)
                kv[f'{name}_ms_max'] = round(s['max'], 2)
        kv.update(self.values)
        return DiagnosticStatus(level=level, name=f'{self.node.get_fully_qualified_name()}', message=message,
                                hardware_id=self.hardware_id,
                                values=[KeyValue(key=str(k), value=str(v)) for k, v in kv.items()])

    def publish_diagnostics(self) -> None:
        """Publish the status on /diagnostics (called by the timer)."""
        status = self.status()
        self._dropped_reported = self.drops.dropped
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub_diag.publish(msg)

    def set_period(self, period: float) -> None:
        """Change the diagnostics period (s)."""
        self._timer.timer_period_ns = int(period * 1e9)
        self._timer.reset()

    def summary(self) -> dict:
        """Counters and per-stage percentiles (for ``summary.json``)."""
        return {'frames_in': self.frames_in, 'frames_out': self.frames_out, 'frames_failed': self.frames_failed,
                'frames_skipped': self.frames_skipped, 'frames_dropped': self.drops.dropped,
                'stages': {k: v.summary() for k, v in self.stages.items()}, **self.values}
