"""Patch-wise upsampling of whole clouds on the device: cover, normalise, run in batches, merge to an exact count.

All functions take and return torch tensors on one device; nothing goes through numpy. Shapes: N input points,
P points per patch, R new points per input point, S patches.
"""

from __future__ import annotations

import math

import torch

from pu_ros.ops.neighbors import farthest_point_sample, knn_points


def covering_patches(xyz: torch.Tensor, patch_size: int, overlap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """KNN patches around farthest-point seeds, with extra seeds until every point lies in some patch.

    Args:
        xyz: (N, 3) points, N >= patch_size.
        patch_size: P points per patch.
        overlap: about how many patches cover each point (S ~ N / P * overlap seeds in the first round).

    Returns:
        ``(idx, dist2)``: (S, P) int64 indices of each patch's points (its seed first) and (S, P) their squared
        distances to the seed.
    """
    n = xyz.shape[0]
    n_seeds = max(1, min(n, math.ceil(n / patch_size * overlap)))
    seeds = farthest_point_sample(xyz, n_seeds)
    dist2, idx = knn_points(xyz[seeds][None], xyz[None], patch_size)
    dist2, idx = dist2[0], idx[0]
    covered = torch.zeros(n, dtype=torch.bool, device=xyz.device)
    covered[idx.flatten()] = True
    for _ in range(32):  # FPS seeds leave few gaps; each round seeds the uncovered points far apart
        missing = torch.nonzero(~covered).flatten()
        if missing.numel() == 0:
            break
        extra = missing[farthest_point_sample(xyz[missing], max(1, math.ceil(missing.numel() / patch_size)))]
        d2, i2 = knn_points(xyz[extra][None], xyz[None], patch_size)
        dist2, idx = torch.cat([dist2, d2[0]]), torch.cat([idx, i2[0]])
        covered[i2[0].flatten()] = True
    return idx, dist2


def normalize_patches(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre each patch and scale it into the unit sphere.

    Args:
        patches: (S, P, 3).

    Returns:
        ``(normalised (S, P, 3), centroid (S, 1, 3), radius (S, 1, 1))``.
    """
    centroid = patches.mean(dim=1, keepdim=True)
    centred = patches - centroid
    radius = centred.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True).clamp_min(1e-9)
    return centred / radius, centroid, radius


def seed_weights(dist2: torch.Tensor) -> torch.Tensor:
    """Blending weight of every patch slot: 1 at the seed, falling linearly to ~0 at the patch border.

    Args:
        dist2: (S, P) squared distances of the patch points to their seed, ascending per row.

    Returns:
        (S, P) weights in (0, 1].
    """
    r = dist2.clamp_min(0).sqrt()
    return (1.0 - r / r[:, -1:].clamp_min(1e-12)).clamp_min(0.0) + 1e-3


def child_counts(n: int, target: int, ratio: int, device) -> torch.Tensor:
    """How many of its ``ratio`` children each of ``n`` points keeps so that the total is exactly ``target``.

    Every point keeps ``target // n`` and the remainder is spread evenly over the index range.

    Returns:
        (N,) int64, summing to ``target`` (each <= ratio).
    """
    base, extra = divmod(target, n)
    if base > ratio or (base == ratio and extra):
        raise ValueError(f'cannot make {target} points from {n} x {ratio}')
    counts = torch.full((n,), base, dtype=torch.int64, device=device)
    if extra:
        pick = torch.div(torch.arange(extra, device=device) * n, extra, rounding_mode='floor')
        counts[pick] += 1
    return counts


def midpoint_upsample(xyz: torch.Tensor, ratio: int, k: int = 8) -> torch.Tensor:
    """Naive baseline: the input points plus midpoints of edges to their nearest neighbours.

    Point i contributes itself and the midpoints towards its nearest ``ratio - 1`` neighbours (cycling through
    its ``k`` nearest when ratio - 1 > k, at 1/3 and 2/3 of the edge on the second round...).

    Args:
        xyz: (N, 3) or (B, N, 3).
        ratio: R >= 1.
        k: neighbours considered.

    Returns:
        (N * R, 3) (or (B, N * R, 3)), point-major.
    """
    squeeze = xyz.dim() == 2
    pts = xyz[None] if squeeze else xyz
    b, n, _ = pts.shape
    if ratio == 1:
        return xyz.clone()
    k = max(1, min(k, n - 1))
    nb = knn_points(pts, pts, k + 1)[1][..., 1:]                                      # (B, N, k) without self
    j = torch.arange(ratio - 1, device=pts.device)
    which = nb[..., j % k]                                                            # (B, N, R-1)
    frac = ((j // k) + 1).to(pts.dtype) / ((j // k) + 2).to(pts.dtype)               # 1/2, 2/3, 3/4, ...
    other = torch.gather(pts, 1, which.reshape(b, -1, 1).expand(-1, -1, 3)).reshape(b, n, ratio - 1, 3)
    mids = pts[:, :, None] + (other - pts[:, :, None]) * (1 - frac)[None, None, :, None]
    out = torch.cat([pts[:, :, None], mids], dim=2).reshape(b, n * ratio, 3)
    return out[0] if squeeze else out


def lloyd_relax(points: torch.Tensor, samples: torch.Tensor, steps: int) -> torch.Tensor:
    """Lloyd steps on a sampled surface: every point moves to the mean of the samples nearer to it than to any other.

    Each step lowers the mean squared distance from the samples to their nearest point (the coverage half of the
    Chamfer distance, when the samples stand for the surface); a point that no sample is nearest to stays put.

    Args:
        points: (M, 3) points to move.
        samples: (S, 3) samples of the surface (here: the network's candidate points and the input).
        steps: number of Lloyd steps (0 returns ``points`` unchanged).

    Returns:
        (M, 3) moved points.
    """
    for _ in range(int(steps)):
        owner = knn_points(samples, points, 1)[1][:, 0]                               # (S,) nearest point
        sums = torch.zeros_like(points).index_add_(0, owner, samples)
        count = torch.zeros(points.shape[0], device=points.device, dtype=points.dtype).index_add_(
            0, owner, torch.ones_like(samples[:, 0]))
        points = torch.where(count[:, None] > 0, sums / count.clamp(min=1)[:, None], points)
    return points


def near_surface_midpoints(xyz: torch.Tensor, samples: torch.Tensor, k: int, tol: float) -> torch.Tensor:
    """Midpoints of every point's edges to its ``k`` nearest neighbours that lie near a sample of the surface.

    A midpoint is kept when some sample lies within ``tol`` times the edge's length of it: a chord across a thin
    part or a concave gap lies off the surface, far from every sample. An edge between mutual neighbours is seen from
    both ends and gives its midpoint twice.

    Args:
        xyz: (N, 3) points whose edges are split (here: the input).
        samples: (S, 3) samples of the surface (here: the network's candidate points and the input).
        k: neighbours per point (clipped to N - 1).
        tol: share of the edge length.

    Returns:
        (M, 3) kept midpoints, M <= N * k.
    """
    k = min(int(k), xyz.shape[0] - 1)
    if k < 1:
        return xyz[:0]
    d2, nb = knn_points(xyz, xyz, k + 1)                                             # self first
    mids = (0.5 * (xyz[:, None] + xyz[nb[:, 1:]])).reshape(-1, 3)                   # (N*k, 3)
    edge = d2[:, 1:].clamp_min(0).sqrt().reshape(-1)
    near = knn_points(mids, samples, 1)[0][:, 0].clamp_min(0).sqrt()
    return mids[near <= tol * edge]
