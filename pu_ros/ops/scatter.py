"""Scatter reductions over the first axis in pure torch (``index_add_``), on any device, differentiable.

``scatter_mean(src, index, n)[j]`` is the mean of the rows ``src[i]`` with ``index[i] == j`` (zero for groups that
receive nothing). Used to pool point features into voxels (points -> voxel mean) without torch_scatter.
"""

from __future__ import annotations

import torch


def _check(src: torch.Tensor, index: torch.Tensor, dim_size: int):
    if index.dim() != 1 or src.dim() < 1 or src.shape[0] != index.shape[0]:
        raise ValueError(
            f'scatter: index must be (N,) and src (N, ...), got index {tuple(index.shape)} and src {tuple(src.shape)}'
        )
    if index.dtype not in (torch.int64, torch.int32):
        raise ValueError(f'scatter: index must be int64 or int32, got {index.dtype}')
    if index.device != src.device:
        raise ValueError(f'scatter: index on {index.device} but src on {src.device}')
    if dim_size < 0:
        raise ValueError(f'scatter: dim_size must be >= 0, got {dim_size}')


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum the rows of ``src`` into ``dim_size`` groups.

    Args:
        src: (N, ...) float tensor.
        index: (N,) int64 group of each row, values in ``0..dim_size-1`` (not checked, for speed; an out-of-range
            value raises inside torch).
        dim_size: number of groups G.

    Returns:
        (G, ...) tensor of src's dtype and device.
    """
    _check(src, index, dim_size)
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)


def group_counts(index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Number of rows per group: (N,) int64 index -> (G,) int64 counts."""
    return torch.bincount(index, minlength=dim_size)


def scatter_mean(
    src: torch.Tensor, index: torch.Tensor, dim_size: int, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of the rows of ``src`` per group (groups without rows give zeros).

    Args:
        src: (N, ...) float tensor.
        index: (N,) int64 group of each row, values in ``0..dim_size-1``.
        dim_size: number of groups G.
        counts: optional (G,) rows per group, as :func:`group_counts` returns (saves a bincount when known).

    Returns:
        (G, ...) tensor of src's dtype and device; differentiable with respect to ``src``.
    """
    total = scatter_sum(src, index, dim_size)
    if counts is None:
        counts = group_counts(index, dim_size)
    if counts.shape != (dim_size,):
        raise ValueError(f'scatter_mean: counts must be ({dim_size},), got {tuple(counts.shape)}')
    denom = counts.clamp_min(1).to(total.dtype).view(dim_size, *([1] * (src.dim() - 1)))
    return total / denom
