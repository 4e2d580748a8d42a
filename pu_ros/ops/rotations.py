"""Random rotation matrices, shared by training augmentation and test-time rotations of the upsampler."""

from __future__ import annotations

import numpy as np


def random_rotations(b: int, rng: np.random.Generator, z_only: bool = False):
    """``b`` random proper rotations (det +1) as a float32 tensor.

    Args:
        b: number of matrices.
        rng: numpy generator (a fixed seed gives the same matrices on every run).
        z_only: rotations about the z axis only (LiDAR scans keep their up direction); else uniform over SO(3)
            (QR of a Gaussian matrix with the signs of R's diagonal moved into Q).

    Returns:
        (b, 3, 3) float32 tensor; rotate row-vector points ``(..., N, 3)`` with ``points @ rot.transpose(-1, -2)``.
    """
    import torch

    if z_only:
        a = rng.uniform(0, 2 * np.pi, b)
        rot = np.zeros((b, 3, 3))
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
        rot[:, 2, 2] = 1.0
    else:
        q, r = np.linalg.qr(rng.normal(size=(b, 3, 3)))
        q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
        q[np.linalg.det(q) < 0, :, 0] *= -1
        rot = q
    return torch.from_numpy(rot.astype(np.float32))
