"""``upsampler_node``: densifies each LiDAR cloud with PU-Flow (pu_ros.inference.Upsampler).

Topics (private, remapped in launch files): in ``~/input/points`` (PointCloud2 x, y, z [, intensity]; best effort,
keep last 1); out ``~/output/points``: ``upsampler.ratio`` times as many points (x, y, z, intensity) with the input
header (frame and stamp unchanged, so the segmentation node can pair it with the original cloud),
``~/debug/processing_time_ms``, ``~/debug/pipeline_latency_ms``, ``/diagnostics``. Points with a non-finite
x, y or z are left out first. Parameters: ``upsampler.*`` (see ``--help``) and ``diagnostics.*``.
"""

from __future__ import annotations

from dataclasses import replace
import sys

import numpy as np
from sensor_msgs.msg import PointCloud2

from pu_ros.ros.conversions import cloud_to_xyzi, xyzi_to_cloud
from pu_ros.ros.node_params import pick_device
from pu_ros.ros.sampler_node import finite_rows
from pu_ros.ros.stage_node import OUTPUT_QOS, StageNode, node_sections


class UpsamplerNode(StageNode):
    """The upsampling stage.

    Args:
        settings: ``{'upsampler.ratio': 4, ...}``.
        upsampler: an object with ``upsample(points (N, 4) float32) -> (N * ratio, 4)`` used instead of building
            :class:`pu_ros.inference.upsampler.Upsampler` (tests, shared models).
        **kwargs: see :class:`~pu_ros.ros.stage_node.StageNode`.

    Attributes:
        upsampler: the inference object.
    """

    EXECUTABLE = 'upsampler_node'
    NODE_NAME = 'upsampler_node'

    def __init__(self, settings: dict | None = None, *, upsampler=None, **kwargs):
        """Build the upsampler and the output publisher."""
        super().__init__(settings, **kwargs)
        self.upsampler = upsampler if upsampler is not None else self._build(self.params['upsampler'])
        self.monitor.values['device'] = str(getattr(self.upsampler, 'device', ''))
        self.pub_points = self.create_publisher(PointCloud2, '~/output/points', OUTPUT_QOS)
        self.outputs = [self.pub_points]
        self.get_logger().info(f'ready: {self.upsampler!r}; output on {self.pub_points.topic_name}')

    def _build(self, cfg):
        from pu_ros.inference.upsampler import Upsampler

        return Upsampler(replace(cfg, device=pick_device(cfg.device, self.get_logger())))

    def apply_params(self, new: dict) -> None:
        """A runtime change of ``upsampler.*`` builds a new Upsampler first (refused, old one kept, if it fails)."""
        if 'upsampler' in new:
            self.upsampler = self._build(new['upsampler'])

    def process(self, msg: PointCloud2):
        """Densify one cloud; returns ``[(publisher, cloud)]``."""
        t = self.monitor.t0
        pts = cloud_to_xyzi(msg)
        pts = np.ascontiguousarray(pts[finite_rows(pts)])
        t = self.monitor.stage('decode', t)
        dense = np.asarray(self.upsampler.upsample(pts))
        if dense.ndim != 2 or dense.shape[1] not in (3, 4) or not np.isfinite(dense[:, :3]).all():
            raise RuntimeError(f'upsampler returned {dense.shape} {dense.dtype} with non-finite or bad rows')
        t = self.monitor.stage('inference', t)
        out = xyzi_to_cloud(dense.astype(np.float32, copy=False), msg.header.frame_id, msg.header.stamp,
                            is_dense=True)
        self.monitor.stage('encode', t)
        return [(self.pub_points, out)]


def main(args=None) -> int:
    """``ros2 run pu_ros upsampler_node [--ros-args -p upsampler.ratio:=4 ...]``."""
    from pu_ros.ros.process import node_main, parameter_table

    try:
        table = parameter_table(node_sections('upsampler_node'))
    except ImportError as exc:
        table = f'  (pu_ros.inference.upsampler is not importable: {exc})'
    return node_main(UpsamplerNode, prog='upsampler_node', description=__doc__, argv=args, parameters=table)


if __name__ == '__main__':
    sys.exit(main())
