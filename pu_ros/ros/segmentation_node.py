"""``segmentation_node``: labels every point of a LiDAR cloud with a SemanticKITTI class (pu_ros.inference.Segmenter).

Topics (private, remapped in launch files): in ``~/input/points`` (PointCloud2: x, y, z [, intensity] [, label]),
``~/input/original_points`` (with ``resample.use_original``), ``~/input/image`` + ``~/input/camera_info`` (with
``segmentation.fused``), ``/tf_static``; out ``~/output/points`` (x, y, z, intensity, label uint32 = raw
SemanticKITTI id, rgb = class colour; same frame, stamp and point count as the cloud it labels),
``~/output/resampled_points`` (with ``resample.use_original``: the segmented resampled cloud, labelled),
``~/debug/miou`` (std_msgs/Float64, when inputs carry ground truth), ``~/debug/processing_time_ms``,
``~/debug/pipeline_latency_ms``, ``/diagnostics``.

Resampled input: the sampler and upsampler keep the header stamp, so with ``resample.use_original`` the node also
subscribes to the original cloud, pairs the two by stamp and gives every original point the label of its nearest
segmented point (on the device). Parameters: see ``--help`` or the README.
"""

from __future__ import annotations

from collections import OrderedDict
import sys

import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float64

from pu_ros.data.labels import LabelMap
from pu_ros.ros.conversions import cloud_to_array, cloud_to_xyzi, stamp_to_ns, xyzi_to_cloud
from pu_ros.ros.node_params import pick_device
from pu_ros.ros.segmentation_io import fused_inputs, transfer_labels
from pu_ros.ros.stage_node import OUTPUT_QOS, SENSOR_QOS, StageNode, node_sections
from pu_ros.ros.sync import make_synchronizer
from pu_ros.ros.transforms import StaticTransforms


class SegmentationNode(StageNode):
    """The segmentation stage.

    Args:
        settings: ``{'segmentation.checkpoint': ..., 'resample.use_original': True, ...}``.
        segmenter: an object with ``segment(points, image, calib, probs=False)``, ``fused`` and ``device`` to use
            instead of building :class:`pu_ros.inference.Segmenter` (tests, runners sharing one model).
        **kwargs: see :class:`~pu_ros.ros.stage_node.StageNode`.

    Attributes:
        segmenter: the inference object.
        confusion: :class:`pu_ros.training.metrics.ConfusionMatrix` of the labelled inputs (live mIoU).
        miou: running mIoU (None before the first labelled cloud).
        label_map: :class:`pu_ros.data.labels.LabelMap` (names, colours, raw <-> learning ids).
    """

    EXECUTABLE = 'segmentation_node'
    NODE_NAME = 'segmentation_node'

    def __init__(self, settings: dict | None = None, *, segmenter=None, **kwargs):
        """Build the segmenter, publishers and subscriptions."""
        super().__init__(settings, **kwargs)
        from pu_ros.training.metrics import ConfusionMatrix

        self.label_map = LabelMap.load()
        self.confusion = ConfusionMatrix(self.label_map.num_classes, self.label_map.ignore_index)
        self.miou = None
        self.segmenter = segmenter if segmenter is not None else self._build(self.params['segmentation'])
        self.monitor.hardware_id = str(getattr(self.segmenter, 'device', ''))
        self.monitor.values['device'] = self.monitor.hardware_id
        self.pub_points = self.create_publisher(PointCloud2, '~/output/points', OUTPUT_QOS)
        self.pub_resampled = self.create_publisher(PointCloud2, '~/output/resampled_points', OUTPUT_QOS)
        self.pub_miou = self.create_publisher(Float64, '~/debug/miou', QoSProfile(depth=10))
        self.outputs = [self.pub_points, self.pub_resampled]
        self._originals: OrderedDict[int, PointCloud2] = OrderedDict()
        self._pending = None
        if self.params['resample'].use_original:  # (start-up setting: the subscription exists only then)
            self.create_subscription(PointCloud2, '~/input/original_points', self._on_original,
                                     QoSProfile(depth=self.params['resample'].cache_size,
                                                reliability=ReliabilityPolicy.BEST_EFFORT))
        self.tf = StaticTransforms()
        self._sync = None
        self._unmatched_reported = 0
        if getattr(self.segmenter, 'fused', False):
            self._setup_fusion()
        self.get_logger().info(f'ready: {self.segmenter!r}; labelled clouds on {self.pub_points.topic_name}')

    # ------------------------------------------------------------------ set-up
    def _build(self, cfg):
        from dataclasses import replace

        device = pick_device(cfg.device, self.get_logger())
        if cfg.fused:
            try:
                return replace(cfg, device=device).build()
            except (OSError, ValueError) as exc:
                self.get_logger().warning(f'fused mode needs a checkpoint with the 2D branch ({exc}); running '
                                          'LiDAR-only')
                cfg = replace(cfg, fused=False, checkpoint='' if not cfg.checkpoint else cfg.checkpoint)
        return replace(cfg, device=device, fused=False).build()

    def _setup_fusion(self) -> None:
        f = self.params['fusion']
        self._sync, kind = make_synchronizer(3, f.queue_size, f.slop)
        self._sync.register_callback(self._on_set)
        self.destroy_subscription(self.sub_points)
        self.sub_points = self.create_subscription(PointCloud2, '~/input/points', lambda m: self._sync.add(0, m),
                                                   SENSOR_QOS)
        self.create_subscription(Image, '~/input/image', lambda m: self._sync.add(1, m), SENSOR_QOS)
        self.create_subscription(CameraInfo, '~/input/camera_info', lambda m: self._sync.add(2, m),
                                 QoSProfile(depth=f.queue_size, reliability=ReliabilityPolicy.BEST_EFFORT))
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            TFMessage = None  # noqa: N806
        if TFMessage is not None:
            self.create_subscription(TFMessage, '/tf_static', self.tf.add,
                                     QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                                durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.create_timer(1.0, self._check_unmatched)
        self.get_logger().info(f'fused mode: cloud + image + camera_info paired within {f.slop:g} s ({kind})')

    def apply_params(self, new: dict) -> None:
        """Runtime changes: a new checkpoint/device is loaded first and refused (kept old) if it fails."""
        if 'resample' in new and new['resample'].use_original != self.params['resample'].use_original:
            raise ValueError('resample.use_original can only be set at start-up')
        if 'segmentation' in new:
            old = self.params['segmentation']
            if new['segmentation'].fused != old.fused:
                raise ValueError('segmentation.fused can only be set at start-up')
            segmenter = self._build(new['segmentation'])
            if segmenter.fused != (self._sync is not None):
                raise ValueError('this checkpoint needs a different camera set-up than the node started with; '
                                 'restart the node to change between fused and LiDAR-only')
            self.segmenter = segmenter

    # ------------------------------------------------------------------ callbacks
    def _on_original(self, msg: PointCloud2) -> None:
        self._originals[stamp_to_ns(msg.header.stamp)] = msg
        while len(self._originals) > self.params['resample'].cache_size:
            self._originals.popitem(last=False)
        pending, self._pending = self._pending, None
        if pending is not None:
            self.run_frame(pending, self.process)

    def _on_set(self, cloud, image, info) -> None:
        self.run_frame(cloud, lambda m: self.process(m, image, info))

    def _check_unmatched(self) -> None:
        lost = self._sync.evicted[0]
        if lost > self._unmatched_reported:
            self.report_error(f'{lost - self._unmatched_reported} clouds found no image + camera_info within '
                              f'{self.params["fusion"].slop:g} s (check the camera/LiDAR clocks); not segmented')
            self.monitor.drops.dropped += lost - self._unmatched_reported
            self._unmatched_reported = lost

    # ------------------------------------------------------------------ one frame
    def _camera(self, cloud, image, info):
        T = None
        f = self.params['fusion']
        if len(f.T_cam_lidar) == 16:
            T = np.asarray(f.T_cam_lidar, np.float64).reshape(4, 4)
        elif f.T_cam_lidar:
            raise ValueError(f'fusion.T_cam_lidar needs 16 numbers, has {len(f.T_cam_lidar)}')
        if T is None or cloud.header.frame_id.lstrip('/') == info.header.frame_id.lstrip('/'):
            T = self.tf.lookup(info.header.frame_id, cloud.header.frame_id)
        return fused_inputs(cloud, image, info, T)

    def process(self, msg: PointCloud2, image=None, info=None):
        """Segment one cloud; returns the messages to publish (None: waiting for the original cloud)."""
        t = self.monitor.t0
        original = None
        if self.params['resample'].use_original:
            original = self._originals.pop(stamp_to_ns(msg.header.stamp), None)
            if original is None:
                if self._pending is not None:  # the previous one never found its original: say so, drop it
                    self.report_error(f'a resampled cloud found no original cloud with its stamp on '
                                      f'{self.resolve_topic_name("~/input/original_points")}; dropped')
                    self.monitor.drops.dropped += 1
                self._pending = msg
                return None
        pts = cloud_to_xyzi(msg)
        if pts.shape[0] == 0:
            raise ValueError('empty cloud')
        if not np.isfinite(pts[:, :3]).all(1).any():
            raise ValueError(f'no finite point among {pts.shape[0]}')
        target = original if original is not None else msg
        target_pts = cloud_to_xyzi(original) if original is not None else pts
        names = cloud_to_array(target).dtype.names
        gt = cloud_to_array(target, ['label'])['label'] if 'label' in names else None
        img = calib = None
        if image is not None and getattr(self.segmenter, 'fused', False):
            img, calib = self._camera(msg, image, info)
        t = self.monitor.stage('decode', t)
        labels = np.asarray(self.segmenter.segment(pts, img, calib, probs=False).labels)
        if labels.shape != (pts.shape[0],):
            raise RuntimeError(f'segmenter returned {labels.shape} labels for {pts.shape[0]} points')
        t = self.monitor.stage('inference', t)
        out = []
        if original is not None:
            target_labels = transfer_labels(target_pts, pts, labels, getattr(self.segmenter, 'device', 'cpu'))
            t = self.monitor.stage('labels_to_original', t)
            out.append((self.pub_resampled, self._labelled(msg, pts, labels)))
        else:
            target_labels = labels
        out.append((self.pub_points, self._labelled(target, target_pts, target_labels)))
        if gt is not None and self.params['evaluation'].enabled:
            self.confusion.update(target_labels, self.label_map.to_learning(gt))
            self.miou = float(self.confusion.miou())
            self.monitor.values['miou'] = round(self.miou, 4)
            out.append((self.pub_miou, Float64(data=self.miou)))
        self.monitor.stage('encode', t)
        return out

    def _labelled(self, msg, pts, learning) -> PointCloud2:
        raw = self.label_map.to_raw(learning).astype(np.uint32)
        return xyzi_to_cloud(pts, msg.header.frame_id, msg.header.stamp, labels=raw,
                             colors=self.label_map.colorize(learning))


def main(args=None) -> int:
    """``ros2 run pu_ros segmentation_node [--ros-args -p segmentation.device:=cpu ...]``."""
    from pu_ros.ros.process import node_main, parameter_table

    return node_main(SegmentationNode, prog='segmentation_node', description=__doc__, argv=args,
                     parameters=parameter_table(node_sections('segmentation_node')))


if __name__ == '__main__':
    sys.exit(main())
