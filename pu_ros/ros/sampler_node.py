"""``sampler_node``: downsamples each LiDAR cloud (SampleNet, FPS, random or voxel) with pu_ros.inference.Sampler.

Topics (private, remapped in launch files): in ``~/input/points`` (PointCloud2 with x, y, z and any other fields;
best effort, keep last 1); out ``~/output/points``: the chosen input points with ALL their fields (intensity,
ground-truth label...) and the input header (frame and stamp unchanged, so the segmentation node can pair it with
the original cloud), ``~/debug/processing_time_ms``, ``~/debug/pipeline_latency_ms``, ``/diagnostics``.
Points with a non-finite x, y or z are left out before sampling. Parameters: ``sampler.*`` (see ``--help``) and
``diagnostics.*``.
"""

from __future__ import annotations

from dataclasses import replace
import sys

import numpy as np
from sensor_msgs.msg import PointCloud2

from pu_ros.ros.conversions import array_to_cloud, cloud_to_array, cloud_to_xyzi
from pu_ros.ros.node_params import pick_device
from pu_ros.ros.stage_node import OUTPUT_QOS, StageNode, node_sections


def finite_rows(points: np.ndarray) -> np.ndarray:
    """Indices of the rows of an (N, >=3) array whose x, y, z are finite; ValueError when there is none."""
    if points.shape[0] == 0:
        raise ValueError('empty cloud')
    idx = np.flatnonzero(np.isfinite(points[:, :3]).all(1))
    if idx.size == 0:
        raise ValueError(f'no finite point among {points.shape[0]}')
    return idx


class SamplerNode(StageNode):
    """The sampling stage.

    Args:
        settings: ``{'sampler.method': 'fps', 'sampler.ratio': 0.25, ...}``.
        sampler: an object with ``sample(points (N, 4) float32) -> result with .indices (M,) int64`` used instead
            of building :class:`pu_ros.inference.sampler.Sampler` (tests, shared models).
        **kwargs: see :class:`~pu_ros.ros.stage_node.StageNode`.

    Attributes:
        sampler: the inference object.
    """

    EXECUTABLE = 'sampler_node'
    NODE_NAME = 'sampler_node'

    def __init__(self, settings: dict | None = None, *, sampler=None, **kwargs):
        """Build the sampler and the output publisher."""
        super().__init__(settings, **kwargs)
        self.sampler = sampler if sampler is not None else self._build(self.params['sampler'])
        self.monitor.values['device'] = str(getattr(self.sampler, 'device', ''))
        self.pub_points = self.create_publisher(PointCloud2, '~/output/points', OUTPUT_QOS)
        self.outputs = [self.pub_points]
        self.get_logger().info(f'ready: {self.sampler!r}; output on {self.pub_points.topic_name}')

    def _build(self, cfg):
        from pu_ros.inference.sampler import Sampler

        return Sampler(replace(cfg, device=pick_device(cfg.device, self.get_logger())))

    def apply_params(self, new: dict) -> None:
        """A runtime change of ``sampler.*`` builds a new Sampler first (refused, old one kept, if that fails)."""
        if 'sampler' in new:
            self.sampler = self._build(new['sampler'])

    def process(self, msg: PointCloud2):
        """Sample one cloud; returns ``[(publisher, cloud)]``."""
        t = self.monitor.t0
        arr = cloud_to_array(msg)
        pts = cloud_to_xyzi(msg)
        keep = finite_rows(pts)
        t = self.monitor.stage('decode', t)
        idx = np.asarray(self.sampler.sample(np.ascontiguousarray(pts[keep])).indices, np.int64)
        if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= keep.size)):
            raise RuntimeError(f'sampler returned bad indices (shape {idx.shape}) for {keep.size} points')
        t = self.monitor.stage('inference', t)
        out = array_to_cloud(arr[keep[idx]], msg.header.frame_id, msg.header.stamp)
        self.monitor.stage('encode', t)
        return [(self.pub_points, out)]


def main(args=None) -> int:
    """``ros2 run pu_ros sampler_node [--ros-args -p sampler.method:=fps -p sampler.ratio:=0.25 ...]``."""
    from pu_ros.ros.process import node_main, parameter_table

    try:
        table = parameter_table(node_sections('sampler_node'))
    except ImportError as exc:
        table = f'  (pu_ros.inference.sampler is not importable: {exc})'
    return node_main(SamplerNode, prog='sampler_node', description=__doc__, argv=args, parameters=table)


if __name__ == '__main__':
    sys.exit(main())
