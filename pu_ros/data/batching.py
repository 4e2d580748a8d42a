"""Batches of segmentation samples: collate into the network's batch dict, move to a device, renumber pixels.

:func:`collate` concatenates :class:`pu_ros.data.semantic_dataset.Sample` objects into the batch dict of
:class:`pu_ros.networks.segmentation.Segmentor2DPASS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pu_ros.data.semantic_dataset import Sample


def select_pixel_points(pix_point_idx, pix_uv, kept, num_points: int):
    """Keep the point-pixel pairs of a subset of the points and renumber them into that subset.

    Works on numpy arrays or torch tensors (all on one device).

    Args:
        pix_point_idx: (M,) int64 indices into the original ``num_points`` points.
        pix_uv: (M, 2) int64 pixel of each pair.
        kept: (K,) int64 distinct indices of the points that remain, in their new order.
        num_points: N, number of original points.

    Returns:
        ``(idx, uv)``: (M',) int64 indices into ``kept`` and (M', 2) int64 pixels of the pairs whose point remains.
    """
    if isinstance(kept, np.ndarray):
        remap = np.full(int(num_points), -1, dtype=np.int64)
        remap[kept] = np.arange(kept.size, dtype=np.int64)
    else:
        import torch

        remap = torch.full((int(num_points),), -1, dtype=torch.int64, device=kept.device)
        remap[kept] = torch.arange(kept.numel(), dtype=torch.int64, device=kept.device)
    new = remap[pix_point_idx]
    ok = new >= 0
    return new[ok], pix_uv[ok]


def collate(samples: Sequence[Sample]) -> dict:
    """Concatenate samples into the network's batch dict (torch tensors on the CPU).

    Returns:
        dict with ``points`` (P, 4) float32, ``batch_idx`` (P,) int64, ``batch_size`` int, ``labels`` (P,) int64,
        and when any sample has an image: ``images`` (B, 3, H, W) float32 (zero-padded to the largest image;
        zeros for samples without one), ``pix_point_idx`` (M,) int64 into ``points``, ``pix_uv`` (M, 2) int64.
        ``meta`` is a list of per-sample dicts (name, keep (P_b,) int64, num_total, num_out_of_range,
        num_out_of_range_labelled, image_source) that the network ignores.
    """
    import torch

    if not samples:
        raise ValueError('collate needs at least one sample')
    offsets = np.cumsum([0] + [s.points.shape[0] for s in samples])
    batch = {
        'points': torch.from_numpy(np.concatenate([s.points for s in samples])),
        'batch_idx': torch.from_numpy(
            np.concatenate([np.full(s.points.shape[0], b, np.int64) for b, s in enumerate(samples)])
        ),
        'batch_size': len(samples),
        'labels': torch.from_numpy(np.concatenate([s.labels for s in samples]).astype(np.int64)),
    }
    if any(s.image is not None for s in samples):
        h = max(s.image.shape[1] for s in samples if s.image is not None)
        w = max(s.image.shape[2] for s in samples if s.image is not None)
        images = np.zeros((len(samples), 3, h, w), np.float32)
        for b, s in enumerate(samples):
            if s.image is not None:
                images[b, :, : s.image.shape[1], : s.image.shape[2]] = s.image
        batch['images'] = torch.from_numpy(images)
        batch['pix_point_idx'] = torch.from_numpy(
            np.concatenate([s.pix_point_idx + offsets[b] for b, s in enumerate(samples)]).astype(np.int64)
        )
        batch['pix_uv'] = torch.from_numpy(np.concatenate([s.pix_uv for s in samples]).astype(np.int64))
    batch['meta'] = [
        {
            'name': s.name, 'keep': s.keep, 'num_total': s.num_total, 'num_out_of_range': s.num_out_of_range,
            'num_out_of_range_labelled': s.num_out_of_range_labelled, 'image_source': s.image_source,
        }
        for s in samples
    ]
    return batch


def batch_to_device(batch: dict, device) -> dict:
    """Copy of ``batch`` with every tensor moved to ``device`` (non-blocking); other entries kept as they are."""
    import torch

    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
