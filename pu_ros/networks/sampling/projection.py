"""SampleNet inference on the device: hard projection, de-duplication and farthest-point completion.

The published code snaps the generated points to their nearest input points on the GPU, then copies everything to
numpy and, cloud by cloud in a Python loop, removes duplicate indices and completes the set with farthest point
sampling. Here the three steps are batched torch operations on whatever device the tensors live on.

Shapes: B clouds, N input points, M generated points, m requested points.
"""

from __future__ import annotations

import torch

from pu_ros.ops.neighbors import farthest_point_sample, knn_points


def hard_project(points: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Index of the nearest input point of every generated point.

    Args:
        points: (B, N, 3) input clouds.
        generated: (B, M, 3) generated points.

    Returns:
        (B, M) int64 indices into ``points``.
    """
    return knn_points(generated, points, 1)[1][..., 0]


def dedupe_keep_first(idx: torch.Tensor, ids: torch.Tensor | None = None):
    """Move the first occurrence of every distinct value of each row to the front, order kept.

    Args:
        idx: (B, M) int64 indices.
        ids: optional (B, M) int64 identities to compare instead of ``idx`` (e.g. global point ids when several
            local indices name the same point).

    Returns:
        ``(compact, counts)``: (B, M) int64 ``idx`` rows with the distinct entries first (in their original order,
        the duplicates after them) and (B,) int64 number of distinct entries per row.
    """
    key = idx if ids is None else ids
    sorted_key, order = key.sort(dim=1, stable=True)
    dup_sorted = torch.zeros_like(sorted_key, dtype=torch.bool)
    dup_sorted[:, 1:] = sorted_key[:, 1:] == sorted_key[:, :-1]
    dup = torch.empty_like(dup_sorted).scatter_(1, order, dup_sorted)
    perm = dup.to(torch.uint8).sort(dim=1, stable=True).indices
    return idx.gather(1, perm), (~dup).sum(dim=1)


def match_and_complete(points: torch.Tensor, generated: torch.Tensor, m: int, *, ids: torch.Tensor | None = None):
    """SampleNet inference: ``m`` distinct input points per cloud, generated order first, then FPS completion.

    Args:
        points: (B, N, 3) input clouds (``N >= m``; rows may repeat points as padding if ``ids`` says so).
        generated: (B, M, 3) simplified points (any M; the first ``min(M, m)`` are used, which is what the
            progressive variant wants).
        m: points to return per cloud.
        ids: optional (B, N) int64 identity of each input point (padding copies share the id of their original).

    Returns:
        (B, m) int64 indices into ``points``, distinct per row (by ``ids`` when given, provided each row has at
        least ``m`` distinct points).
    """
    gen = generated[:, :m]
    idx = hard_project(points, gen)  # (B, S)
    key = None if ids is None else ids.gather(1, idx)
    compact, counts = dedupe_keep_first(idx, key)
    s = compact.shape[1]
    if s >= m and bool((counts >= m).all()):
        return compact[:, :m]
    return farthest_point_sample(points, m, selected=compact, num_selected=counts.clamp(min=1, max=s))
