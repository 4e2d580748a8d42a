"""The observer node of ``pu-ros pipeline``: timings, drops, live mIoU, ``output.mcap`` and frames kept for renders.

:class:`PipelineMonitor` subscribes (raw CDR, best effort, deep queues, so it never slows or starves the stages) to
the bag's cloud topic, to every stage's output and to the segmentation node's
``~/debug/miou``. It measures with the **DDS source timestamps** of the messages (the publisher's clock at
``publish()``), matched by header stamp, so what it reports does not depend on when its own callbacks run in the
shared single-threaded executor:

- stage latency: publish time of the stage's output minus publish time of the stage's input;
- end to end: publish time of the labelled cloud minus publish time of the bag cloud (the "sensor");
- live mIoU: ground truth ``label`` field of the bag cloud against the labelled cloud's ``label`` (both raw
  SemanticKITTI ids, mapped to learning ids with :class:`~pu_ros.data.labels.LabelMap`), accumulated in one
  :class:`pu_ros.training.metrics.ConfusionMatrix` (ignore class 0, ``present='gt_or_pred'``).

Everything it keeps is bounded (per-stamp tables of at most ``TABLE_SIZE`` entries, at most ``max_keep`` frames for
renders), so it can run for hours. Without rclpy's ``MessageInfo`` (ROS 2 Humble) it falls back to receive times.
"""

from __future__ import annotations

from collections import OrderedDict
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
import rclpy.subscription

from pu_ros.data import bag as bagio
from pu_ros.data.labels import LabelMap
from pu_ros.training.metrics import ConfusionMatrix

TABLE_SIZE = 256
CLOUD = 'sensor_msgs/msg/PointCloud2'
_HAVE_INFO = hasattr(rclpy.subscription, 'MessageInfo')


def raw_stamp_ns(raw: bytes) -> int:
    """Header stamp (ns) of a serialized message that starts with ``std_msgs/Header`` (CDR, either endianness)."""
    order = '<' if raw[1] == 1 else '>'  # encapsulation id 0x0001 = CDR little-endian, 0x0000 = big-endian
    sec, nanosec = np.frombuffer(raw, dtype=f'{order}i4,{order}u4', count=1, offset=4)[0]
    return int(sec) * 1_000_000_000 + int(nanosec)


def _bounded_put(table: OrderedDict, key, value, size: int = TABLE_SIZE) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > size:
        table.popitem(last=False)


class PipelineMonitor(Node):
    """Watches a running pipeline from inside the same process.

    Args:
        points_topic: the bag's cloud topic (input of the first stage).
        stages: ``[(stage name, input topic, output topic), ...]`` in pipeline order; the last is segmentation.
        miou_topic: ``(topic, message class)`` of the segmentation node's ``~/debug/miou``, or None.
        writer: an open :class:`pu_ros.data.bag.BagWriter` receiving the labelled clouds, or None.
        keep_every: keep every N-th labelled frame (points, labels) for renders; 0 = none.
        max_keep: at most this many kept frames.
        label_map: :class:`LabelMap` (raw -> learning ids for the ground truth); default SemanticKITTI.
        **kwargs: passed to :class:`rclpy.node.Node` (``context``...).

    Attributes:
        counts: ``{topic: messages received}``.
        stage_ms: ``{stage: [latency ms, ...]}``.
        end_to_end: list of ``(publish time of the bag cloud in s, end-to-end latency ms)``.
        confusion: :class:`ConfusionMatrix` (None until a labelled cloud with ground truth arrived).
        gt_frames: labelled clouds that were scored against ground truth.
        debug_miou: last value received on ``~/debug/miou`` (None if none); ``debug_count`` values received.
        handled: labelled clouds fully handled (timed, written, scored).
        kept: list of dicts ``stamp_ns``, ``points`` (N, 3) float32, ``labels`` (N,) uint8 (learning ids).
        last_activity: monotonic time of the last stage output.
        errors: problems seen (e.g. a labelled cloud whose size differs from its input), each counted once.
    """

    def __init__(self, points_topic: str, stages: list[tuple[str, str, str]], *, miou_topic=None, writer=None,
                 keep_every: int = 0, max_keep: int = 8,
                 label_map: LabelMap | None = None, node_name: str = 'pipeline_monitor', **kwargs):
        """Create the subscriptions."""
        super().__init__(node_name, **kwargs)
        self.points_topic = points_topic
        self.stages = list(stages)
        self.output_topic = self.stages[-1][2]
        self.writer = writer
        self.keep_every = int(keep_every)
        self.max_keep = int(max_keep)
        self.label_map = label_map or LabelMap.load()
        self.counts: dict[str, int] = {}
        self.stage_ms: dict[str, list[float]] = {name: [] for name, _, _ in self.stages}
        self.end_to_end: list[tuple[float, float]] = []
        self.confusion: ConfusionMatrix | None = None
        self.gt_frames = 0
        self.debug_miou: float | None = None
        self.debug_count = 0
        self.handled = 0
        self.kept: list[dict] = []
        self.errors: dict[str, int] = {}
        self.last_activity = time.monotonic()
        self.last_output_stamp: int | None = None
        self._published: dict[str, OrderedDict] = {}  # topic -> stamp -> source timestamp (ns)
        self._gt: OrderedDict = OrderedDict()  # stamp -> (N,) uint8 learning ids
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._subs = []
        topics = [points_topic] + [out for _, _, out in self.stages]
        for topic in dict.fromkeys(topics):
            self._subscribe(topic, qos)
        if miou_topic is not None:
            self._subs.append(self.create_subscription(miou_topic[1], miou_topic[0], self._on_miou, 10))

    # ------------------------------------------------------------------ subscriptions
    def _subscribe(self, topic: str, qos) -> None:
        from sensor_msgs.msg import PointCloud2

        if _HAVE_INFO:
            def callback(raw, info):
                self._on_cloud(topic, raw, int(info['source_timestamp']))
        else:  # pragma: no cover - rclpy without MessageInfo (Humble): receive time instead of publish time
            def callback(raw):
                self._on_cloud(topic, raw, time.time_ns())
        self._subs.append(self.create_subscription(PointCloud2, topic, callback, qos, raw=True))

    def _on_miou(self, msg) -> None:
        self.debug_miou = float(msg.data)
        self.debug_count += 1

    def settled(self) -> bool:
        """Whether the monitor has caught up.

        True when every labelled cloud received so far is handled and, if the node publishes ``~/debug/miou``, its
        value for every scored cloud has arrived.
        """
        handled = self.handled == self.counts.get(self.output_topic, 0)
        return handled and (self.debug_count == 0 or self.debug_count >= self.gt_frames)

    def _on_cloud(self, topic: str, raw: bytes, src_ns: int) -> None:
        stamp = raw_stamp_ns(raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1
        _bounded_put(self._published.setdefault(topic, OrderedDict()), stamp, src_ns)
        if topic == self.points_topic:
            self._remember_ground_truth(stamp, raw)
        for name, inp, out in self.stages:
            if out != topic:
                continue
            self.last_activity = time.monotonic()
            sent = self._published.get(inp, {}).get(stamp)
            if sent is not None:
                self.stage_ms[name].append((src_ns - sent) / 1e6)
        if topic == self.output_topic:
            self._on_labelled(stamp, raw, src_ns)

    def _remember_ground_truth(self, stamp: int, raw: bytes) -> None:
        msg = bagio.deserialize(raw, CLOUD)
        if not any(f.name == 'label' for f in msg.fields):
            return
        arr = bagio.pointcloud2_to_array(msg)
        _bounded_put(self._gt, stamp, self.label_map.to_learning(arr['label']), 32)

    def _on_labelled(self, stamp: int, raw: bytes, src_ns: int) -> None:
        try:
            self._score(stamp, raw, src_ns)
        finally:
            self.handled += 1
            self.last_activity = time.monotonic()

    def _score(self, stamp: int, raw: bytes, src_ns: int) -> None:
        self.last_output_stamp = stamp
        sent = self._published.get(self.points_topic, {}).get(stamp)
        if sent is not None:
            self.end_to_end.append((sent / 1e9, (src_ns - sent) / 1e6))
        if self.writer is not None:
            self.writer.write_raw(self.output_topic, stamp, raw)
        n_out = self.counts[self.output_topic]
        gt = self._gt.pop(stamp, None)
        keep = self.keep_every > 0 and (n_out - 1) % self.keep_every == 0 and len(self.kept) < self.max_keep
        if gt is None and not keep:
            return
        arr = bagio.pointcloud2_to_array(bagio.deserialize(raw, CLOUD))
        if 'label' not in arr.dtype.names:
            self._error(f'{self.output_topic} has no label field')
            return
        pred = self.label_map.to_learning(np.asarray(arr['label']))  # the node publishes raw SemanticKITTI ids
        if gt is not None:
            if gt.shape[0] != pred.shape[0]:
                self._error(f'labelled cloud has {pred.shape[0]} points for {gt.shape[0]} input points')
            else:
                if self.confusion is None:
                    self.confusion = ConfusionMatrix(self.label_map.num_classes, self.label_map.ignore_index)
                self.confusion.update(pred.astype(np.int64), gt.astype(np.int64))
                self.gt_frames += 1
        if keep:
            xyz = np.stack([arr['x'], arr['y'], arr['z']], axis=1).astype(np.float32)
            self.kept.append({'stamp_ns': stamp, 'points': xyz,
                              'labels': pred})

    def _error(self, text: str) -> None:
        if text not in self.errors:
            self.get_logger().error(text)
        self.errors[text] = self.errors.get(text, 0) + 1

    # ------------------------------------------------------------------ results
    def last_stamp(self, topic: str) -> int | None:
        """Header stamp of the last message received on ``topic`` (None if none)."""
        table = self._published.get(topic)
        return next(reversed(table)) if table else None

    def received(self, topic: str) -> int:
        """Messages received on ``topic``."""
        return self.counts.get(topic, 0)
