"""Multi-scale voxelization of batched point clouds on the device (pure torch).

A point at ``xyz`` inside ``point_range`` falls in base voxel ``floor((xyz - min) / voxel_size)``; at scale ``s``
its voxel is ``base // s`` (so voxels of a coarser scale are unions of whole base voxels, with edge
``voxel_size * s``). For each scale the voxels that hold at least one point of a sample are listed once, sorted
by (sample, x, y, z), and every point gets the row of its voxel (the inverse map). Unique voxels come from a 1-D
``torch.unique`` over a packed int64 key, which is much faster than ``unique(dim=0)`` on rows.

Coordinates follow spconv's layout: ``coords[:, 0]`` is the sample index in the batch, then the voxel index along
x, y, z; ``spatial_shape`` is ``(X, Y, Z)`` at that scale.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import torch


class VoxelizationError(ValueError):
    """Points or batch indices that cannot be voxelized (empty cloud, out of range, bad shapes)."""


def _range_of(cfg_or_range) -> tuple[float, ...]:
    point_range = getattr(cfg_or_range, 'point_range', cfg_or_range)
    point_range = tuple(float(v) for v in point_range)
    if len(point_range) != 6:
        raise ValueError(f'point_range must be (xmin, ymin, zmin, xmax, ymax, zmax), got {point_range}')
    return point_range


def grid_shape(point_range, voxel_size: float, scale: int = 1) -> tuple[int, int, int]:
    """Voxels ``(X, Y, Z)`` covering ``point_range`` at ``scale`` (each axis ``ceil(extent / voxel_size) / scale``).

    Args:
        point_range: 6 numbers ``(xmin, ymin, zmin, xmax, ymax, zmax)`` (or an object with ``.point_range``).
        voxel_size: base voxel edge in metres.
        scale: integer scale factor (1 = base voxels).
    """
    point_range = _range_of(point_range)
    base = [max(1, math.ceil((point_range[i + 3] - point_range[i]) / voxel_size - 1e-6)) for i in range(3)]
    return tuple(-(-n // int(scale)) for n in base)


def in_range_mask(points, cfg):
    """Which points lie inside the half-open box ``[min, max)`` of ``cfg.point_range`` (NaN/inf are outside).

    Args:
        points: (N, >=3) float array, numpy or torch (x, y, z first).
        cfg: a :class:`~pu_ros.networks.segmentation.SegmentationConfig` or a 6-tuple point range.

    Returns:
        (N,) bool mask of the same library and device as ``points``.
    """
    lo0, lo1, lo2, hi0, hi1, hi2 = _range_of(cfg)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f'points must be (N, >=3), got shape {tuple(points.shape)}')
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return (x >= lo0) & (x < hi0) & (y >= lo1) & (y < hi1) & (z >= lo2) & (z < hi2)


@dataclass
class VoxelLevel:
    """The voxels of one scale.

    Attributes:
        scale: integer scale factor (voxel edge ``voxel_size * scale``).
        spatial_shape: ``(X, Y, Z)`` voxels along each axis at this scale.
        coords: (V, 4) int32 ``[sample, ix, iy, iz]`` of every occupied voxel, sorted, unique.
        point2voxel: (P,) int64 row of ``coords`` holding each point (the inverse map).
        counts: (V,) int64 points per voxel.
    """

    scale: int
    spatial_shape: tuple[int, int, int]
    coords: torch.Tensor
    point2voxel: torch.Tensor
    counts: torch.Tensor

    @property
    def num_voxels(self) -> int:
        """Number of occupied voxels V."""
        return int(self.coords.shape[0])


@dataclass
class MultiScaleVoxels:
    """Voxelization of one batch at several scales.

    Attributes:
        base_index: (P, 3) int64 base-voxel index (x, y, z) of each point.
        levels: one :class:`VoxelLevel` per scale, in the order of ``scales`` given to :func:`voxelize_multiscale`.
        batch_size: number of samples B.
        voxel_size: base voxel edge (m).
        origin: (3,) float tensor, the minimum corner of the range.
    """

    base_index: torch.Tensor
    levels: list[VoxelLevel]
    batch_size: int
    voxel_size: float
    origin: torch.Tensor

    def level(self, scale: int) -> VoxelLevel:
        """The :class:`VoxelLevel` of ``scale`` (KeyError if it was not computed)."""
        for lvl in self.levels:
            if lvl.scale == scale:
                return lvl
        raise KeyError(f'scale {scale} not voxelized (have {[lvl.scale for lvl in self.levels]})')

    def voxel_centres(self, scale: int = 1) -> torch.Tensor:
        """(P, 3) float centre of each point's voxel at ``scale`` (metres)."""
        idx = torch.div(self.base_index, scale, rounding_mode='floor')
        return (idx.to(self.origin.dtype) + 0.5) * (self.voxel_size * scale) + self.origin


def voxelize_multiscale(
    xyz: torch.Tensor,
    batch_idx: torch.Tensor,
    batch_size: int,
    voxel_size: float,
    point_range,
    scales=(1, 2, 4, 8, 16),
) -> MultiScaleVoxels:
    """Voxelize points at several scales, all on the points' device.

    Args:
        xyz: (P, 3) float32 coordinates, all inside the half-open ``point_range`` box.
        batch_idx: (P,) int64 sample index of each point, in ``0..batch_size-1``.
        batch_size: number of samples B.
        voxel_size: base voxel edge (m).
        point_range: ``(xmin, ymin, zmin, xmax, ymax, zmax)`` or an object with ``.point_range``.
        scales: positive integer scales, e.g. ``(1, 2, 4, 8, 16)``.

    Returns:
        :class:`MultiScaleVoxels`.

    Raises:
        VoxelizationError: empty input, bad shapes, or points outside the range / bad sample indices.
    """
    point_range = _range_of(point_range)
    if xyz.dim() != 2 or xyz.shape[1] != 3:
        raise VoxelizationError(f'xyz must be (P, 3), got {tuple(xyz.shape)}')
    if batch_idx.shape != (xyz.shape[0],):
        raise VoxelizationError(f'batch_idx must be ({xyz.shape[0]},), got {tuple(batch_idx.shape)}')
    if xyz.shape[0] == 0:
        raise VoxelizationError('cannot voxelize an empty point cloud')
    if not xyz.is_floating_point():
        raise VoxelizationError(f'xyz must be a float tensor, got {xyz.dtype}')
    if batch_size < 1:
        raise VoxelizationError(f'batch_size must be >= 1, got {batch_size}')
    scales = tuple(int(s) for s in scales)
    if not scales or min(scales) < 1:
        raise VoxelizationError(f'scales must be positive integers, got {scales}')
    device = xyz.device
    origin = torch.tensor(point_range[:3], dtype=xyz.dtype, device=device)
    base_shape = torch.tensor(grid_shape(point_range, voxel_size), dtype=torch.int64, device=device)

    batch_idx = batch_idx.to(torch.int64)
    # One device->host transfer for all the checks; the range test is in_range_mask's.
    outside = ~in_range_mask(xyz, point_range)
    stats = torch.stack([outside.sum(), batch_idx.min(), batch_idx.max()]).tolist()
    if stats[0]:
        raise VoxelizationError(
            f'{stats[0]} of {xyz.shape[0]} points are outside point_range {point_range} or not finite; filter them '
            'first with pu_ros.ops.voxelize.in_range_mask'
        )
    if stats[1] < 0 or stats[2] > batch_size - 1:
        raise VoxelizationError(f'batch_idx values must be in 0..{batch_size - 1}, got {stats[1]}..{stats[2]}')
    # Clamp: a point just below the maximum may round up to the next cell in float32.
    base_index = torch.floor((xyz - origin) / voxel_size).to(torch.int64)
    base_index = torch.minimum(base_index.clamp_min(0), base_shape - 1)

    levels = []
    for scale in scales:
        shape = grid_shape(point_range, voxel_size, scale)
        idx = torch.div(base_index, scale, rounding_mode='floor') if scale > 1 else base_index
        key = ((batch_idx * shape[0] + idx[:, 0]) * shape[1] + idx[:, 1]) * shape[2] + idx[:, 2]
        ukey, inverse, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
        coords = torch.empty((ukey.shape[0], 4), dtype=torch.int64, device=device)
        rest = ukey
        for axis, n in ((3, shape[2]), (2, shape[1]), (1, shape[0])):
            coords[:, axis] = rest % n
            rest = torch.div(rest, n, rounding_mode='floor')
        coords[:, 0] = rest
        levels.append(VoxelLevel(scale, shape, coords.to(torch.int32), inverse, counts))
    return MultiScaleVoxels(base_index, levels, int(batch_size), float(voxel_size), origin)
