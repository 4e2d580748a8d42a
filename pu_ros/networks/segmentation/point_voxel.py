"""3D branch of the 2DPASS-style segmentor: an SPVCNN-like point-voxel network on sparse convolutions.

Data flow for P points (C = ``hidden_size``, S = ``len(scale_list)``, levels ``(1, *scale_list)``):

1. Multi-scale voxelization (:func:`pu_ros.ops.voxelize.voxelize_multiscale`) of the points at every level.
2. Point encoder: per point ``(x, y, z, intensity, xyz - mean of its base voxel, xyz - centre of its base voxel)``
   (10 values) -> MLP -> (P, C) point features ``p``; their scatter-mean over base voxels gives the first sparse
   voxel features.
3. One SPV stage per scale ``s_i`` (working on the voxels of the previous level ``s_{i-1}``, ``s_{-1} = 1``):
   - voxel branch: two sparse residual blocks (SubMConv3d 3x3x3 + BN + LeakyReLU twice, 1x1x1 shortcut);
   - point branch with point-voxel fusion: the voxel features are copied back to their points and
     ``p <- p + MLP([p, v])`` (per point, so points that share a voxel keep their own features);
   - pooling/downscale: ``scatter_mean(p + v, voxels of level s_i)`` are the next stage's sparse features.
   The stage's output for scale ``s_i`` is, per point, ``p`` plus the pooled features of its level-``s_i`` voxel
   (P, C).
4. The S per-scale point features are concatenated (P, S*C) and classified (P, num_classes).

With the defaults (4 scales, 64 channels) this has about 1.9 M parameters, like the published 2DPASS 3D network.
"""

from __future__ import annotations

import torch
from torch import nn

from pu_ros.networks.segmentation.config import SegmentationConfig
from pu_ros.networks.sparse import sparse_backend
from pu_ros.ops.scatter import scatter_mean
from pu_ros.ops.voxelize import MultiScaleVoxels, voxelize_multiscale

NEGATIVE_SLOPE = 0.1
POINT_INPUT_DIMS = 10


def point_classifier(in_channels: int, num_classes: int) -> nn.Module:
    """The 3D branch's classifier, (N, in_channels) -> (N, num_classes): Linear(128) + LeakyReLU + Linear."""
    return nn.Sequential(
        nn.Linear(in_channels, 128),
        nn.LeakyReLU(NEGATIVE_SLOPE),
        nn.Linear(128, num_classes),
    )


class SparseResBlock(nn.Module):
    """Residual block on a sparse tensor: ``lrelu(BN(conv3(lrelu(BN(conv3(x))))) + BN(conv1(x)))``.

    All convolutions are submanifold (the voxel set does not change) and share ``indice_key``, so the neighbour
    tables are built once per level.
    """

    def __init__(self, sp, in_channels: int, out_channels: int, indice_key: str):
        """Build the block.

        Args:
            sp: sparse backend module (:func:`pu_ros.networks.sparse.sparse_backend`).
            in_channels: input feature channels.
            out_channels: output feature channels.
            indice_key: spconv neighbour-table key shared by the convolutions of one level.
        """
        super().__init__()
        self.shortcut = sp.SubMConv3d(in_channels, out_channels, 1, bias=False, indice_key=indice_key)
        self.bn_shortcut = nn.BatchNorm1d(out_channels)
        self.conv1 = sp.SubMConv3d(in_channels, out_channels, 3, bias=False, indice_key=indice_key)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = sp.SubMConv3d(out_channels, out_channels, 3, bias=False, indice_key=indice_key)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)

    def forward(self, x):
        """Sparse tensor with (V, in_channels) features -> sparse tensor with (V, out_channels) features."""
        identity = self.bn_shortcut(self.shortcut(x).features)
        out = self.conv1(x)
        out = out.replace_feature(self.act(self.bn1(out.features)))
        out = self.conv2(out)
        return out.replace_feature(self.act(self.bn2(out.features) + identity))


class SPVStage(nn.Module):
    """One point-voxel stage: sparse residual blocks, point branch with fusion, pooling to the next scale."""

    def __init__(self, sp, channels: int, indice_key: str, num_blocks: int = 2):
        """Build the stage.

        Args:
            sp: sparse backend module.
            channels: feature channels C (in and out).
            indice_key: spconv key of the level this stage convolves on.
            num_blocks: sparse residual blocks.
        """
        super().__init__()
        self.sp = sp
        self.blocks = nn.ModuleList(SparseResBlock(sp, channels, channels, indice_key) for _ in range(num_blocks))
        self.point_mlp = nn.Sequential(
            nn.Linear(2 * channels, channels),
            nn.BatchNorm1d(channels),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Linear(channels, channels),
        )

    def forward(self, voxel_feats, level, next_level, point_feats, batch_size):
        """Run the stage.

        Args:
            voxel_feats: (V_in, C) features of the voxels of ``level``.
            level: :class:`~pu_ros.ops.voxelize.VoxelLevel` the stage convolves on.
            next_level: :class:`~pu_ros.ops.voxelize.VoxelLevel` it pools to.
            point_feats: (P, C) point features.
            batch_size: samples B.

        Returns:
            ``(next_voxel_feats (V_next, C), point_feats (P, C), scale_feats (P, C))``: the pooled features of the
            next level's voxels, the updated point stream, and the stage's output per point (point stream plus
            the pooled features of its voxel at the next level).
        """
        x = self.sp.SparseConvTensor(voxel_feats, level.coords, list(level.spatial_shape), batch_size)
        for block in self.blocks:
            x = block(x)
        v_points = x.features[level.point2voxel]  # devoxelize: voxel features at their points
        point_feats = point_feats + self.point_mlp(torch.cat([point_feats, v_points], dim=1))
        pooled = scatter_mean(point_feats + v_points, next_level.point2voxel, next_level.num_voxels, next_level.counts)
        return pooled, point_feats, point_feats + pooled[next_level.point2voxel]


class PointVoxelBranch(nn.Module):
    """The 3D branch: multi-scale voxelization, point encoder, one :class:`SPVStage` per scale, classifier."""

    def __init__(self, cfg: SegmentationConfig):
        """Build the branch from ``cfg`` (voxel_size, point_range, scale_list, hidden_size, num_classes, backend)."""
        super().__init__()
        self.cfg = cfg
        sp = sparse_backend(cfg.sparse_backend)
        c = cfg.hidden_size
        self.levels = (1, *cfg.scale_list)
        self.point_encoder = nn.Sequential(
            nn.BatchNorm1d(POINT_INPUT_DIMS),
            nn.Linear(POINT_INPUT_DIMS, c),
            nn.BatchNorm1d(c),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Linear(c, c),
        )
        self.stages = nn.ModuleList(SPVStage(sp, c, f'level{s}') for s in self.levels[:-1])
        self.classifier = point_classifier(c * len(cfg.scale_list), cfg.num_classes)

    def voxelize(self, points: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> MultiScaleVoxels:
        """Voxelize (P, 4) points at every level (no gradients; see :func:`voxelize_multiscale`)."""
        with torch.no_grad():
            return voxelize_multiscale(
                points[:, :3], batch_idx, batch_size, self.cfg.voxel_size, self.cfg.point_range, self.levels
            )

    def point_inputs(self, points: torch.Tensor, voxels: MultiScaleVoxels) -> torch.Tensor:
        """(P, 4) points -> (P, 10) encoder inputs: xyz, intensity, offsets to base-voxel mean and centre."""
        base = voxels.levels[0]
        xyz = points[:, :3]
        mean = scatter_mean(xyz, base.point2voxel, base.num_voxels, base.counts)[base.point2voxel]
        return torch.cat([points[:, :4], xyz - mean, xyz - voxels.voxel_centres(1)], dim=1)

    def forward(self, points: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> dict:
        """Segment a batch of point clouds.

        Args:
            points: (P, 4) float32 x, y, z, intensity, all inside ``cfg.point_range``.
            batch_idx: (P,) int64 sample index of each point.
            batch_size: samples B.

        Returns:
            dict with ``logits`` (P, num_classes), ``point_feats`` (list of S (P, C) per-scale point features) and
            ``voxels`` (the :class:`~pu_ros.ops.voxelize.MultiScaleVoxels`).
        """
        if points.dim() != 2 or points.shape[1] < 4:
            raise ValueError(f'points must be (P, 4) x, y, z, intensity, got {tuple(points.shape)}')
        points = points[:, :4].float()
        voxels = self.voxelize(points, batch_idx, batch_size)
        p = self.point_encoder(self.point_inputs(points, voxels))
        base = voxels.levels[0]
        v = scatter_mean(p, base.point2voxel, base.num_voxels, base.counts)
        per_scale = []
        for i, stage in enumerate(self.stages):
            v, p, out = stage(v, voxels.levels[i], voxels.levels[i + 1], p, batch_size)
            per_scale.append(out)
        logits = self.classifier(torch.cat(per_scale, dim=1))
        return {'logits': logits, 'point_feats': per_scale, 'voxels': voxels}
