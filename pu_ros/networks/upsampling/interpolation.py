"""Latent interpolation: every point gets R new latents, convex combinations of its K neighbours' latents.

The weights come from a small network looking at the local geometry (relative positions, distances and dense
EdgeConv features of the K-neighbourhood); it predicts ``max_ratio`` (32) weight sets per point and a ratio R uses
the first R of them, each softmax-normalised over the K neighbours.
"""

from __future__ import annotations

import torch
from torch import nn

from pu_ros.networks.upsampling.features import DenseEdgeConv, LinearBN, gather_neighbors


class DistanceEncoder(nn.Module):
    """Edge geometry ``[p_i, p_j, p_i - p_j, |p_i - p_j|]`` (10 channels for 3-D points) -> ``out_channels``."""

    def __init__(self, dim: int = 3, out_channels: int = 128):
        super().__init__()
        self.layer1 = LinearBN(3 * dim + 1, 64, 0.01)
        self.layer2 = LinearBN(64, 64, 0.01)
        self.out = nn.Linear(64, out_channels)

    def forward(self, xyz: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """xyz: (B, N, D), idx: (B, N, K) -> (B, N, K, out_channels)."""
        nb = gather_neighbors(xyz, idx)
        centre = xyz[:, :, None, :].expand_as(nb)
        rel = centre - nb
        dist = rel.pow(2).sum(-1, keepdim=True).clamp_min(1e-24).sqrt()
        return self.out(self.layer2(self.layer1(torch.cat([centre, nb, rel, dist], dim=-1))))


class WeightEstimator(nn.Module):
    """Per-edge context (B, N, K, C) -> (B, N, max_ratio, K) unnormalised interpolation weights."""

    def __init__(self, in_channels: int = 256, max_ratio: int = 32):
        super().__init__()
        self.layer1 = LinearBN(in_channels, 128, 0.01)
        self.layer2 = LinearBN(128, 64, 0.01)
        self.out = nn.Linear(64, max_ratio)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """context: (B, N, K, C) -> (B, N, max_ratio, K)."""
        return self.out(self.layer2(self.layer1(context))).transpose(2, 3)


class LatentInterpolation(nn.Module):
    """Learned interpolation of latent codes over the K nearest neighbours (K = 8 in the published model)."""

    def __init__(self, dim: int = 3, k: int = 8, max_ratio: int = 32):
        super().__init__()
        self.k = k
        self.max_ratio = max_ratio
        self.distance = DistanceEncoder(dim, 128)
        self.edge = DenseEdgeConv(dim, 128, growth=16, slope=0.05)
        self.weights = WeightEstimator(256, max_ratio)

    def weight_sets(self, xyz: torch.Tensor, idx: torch.Tensor, ratio: int) -> torch.Tensor:
        """Normalised weights: xyz (B, N, D), idx (B, N, K) -> (B, N, ratio, K), rows summing to 1."""
        if not 1 <= ratio <= self.max_ratio:
            raise ValueError(f'ratio {ratio} outside 1..{self.max_ratio} (learned weight sets)')
        context = torch.cat([self.distance(xyz, idx), self.edge(xyz, idx, pool=False)], dim=-1)
        return torch.softmax(self.weights(context)[:, :, :ratio], dim=-1)

    def forward(self, z: torch.Tensor, xyz: torch.Tensor, idx: torch.Tensor, ratio: int) -> torch.Tensor:
        """Interpolated latents.

        Args:
            z: (B, N, D) latents of the input points.
            xyz: (B, N, D) input points (the geometry the weights look at).
            idx: (B, N, K) indices of each point's K nearest neighbours (self included).
            ratio: R new latents per point.

        Returns:
            (B, N * R, D), point-major: rows n*R .. n*R + R - 1 belong to input point n.
        """
        w = self.weight_sets(xyz, idx, ratio)                     # (B, N, R, K)
        zi = torch.einsum('bnrk,bnkd->bnrd', w, gather_neighbors(z, idx))
        return zi.reshape(z.shape[0], -1, z.shape[-1])
