"""Helpers of ``pu-ros eval densify``: exact nearest neighbour (tiled kNN), tiles, tiled upsampling."""

import numpy as np
import pytest
import torch

from pu_ros.ops.neighbors import knn_points
from pu_ros.training.eval_densify import chamfer_m, labels_to, nearest, tiles, upsample_tiled


def _scan_like(n, seed):
    """Points spread like a LiDAR scan: dense near the origin, sparse and far out to 80 m."""
    rng = np.random.default_rng(seed)
    r = 80 * rng.random(n) ** 2 + 1
    a = rng.uniform(-np.pi, np.pi, n)
    return np.stack([r * np.cos(a), r * np.sin(a), rng.normal(0, 1, n)], 1).astype(np.float32)


def test_nearest_matches_brute_force():
    ref, query = _scan_like(3000, 0), _scan_like(2000, 1)
    query[:5] += 300  # far outside every cell: the fallback search
    d2, idx = nearest(query, ref, cell=10.0)
    bd2, bidx = knn_points(torch.from_numpy(query), torch.from_numpy(ref), 1)
    np.testing.assert_allclose(d2, bd2[:, 0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ref[idx], ref[bidx[:, 0].numpy()])
    labels = np.arange(len(ref))
    np.testing.assert_array_equal(labels_to(ref, labels, ref), labels)  # every point is its own neighbour
    assert chamfer_m(ref, ref) == 0.0 and chamfer_m(query, ref) > 0.0


def test_tiles_partition_the_points():
    xy = _scan_like(5000, 2)
    parts = tiles(xy, 700)
    assert all(len(p) <= 700 for p in parts) and len(parts) >= 8
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(xy)))


class _Echo:
    """Stand-in upsampler: child r of point i = point i shifted by 0.01·(r + 1) in z (parent-major output)."""

    def __init__(self):
        self.config = type('C', (), {'ratio': 2})()
        self.calls = []

    def upsample(self, pts):
        self.calls.append(len(pts))
        r = self.config.ratio
        out = np.repeat(pts, r, axis=0)
        out[:, 2] += 0.01 * np.tile(np.arange(1, r + 1), len(pts))
        return out


def test_upsample_tiled_keeps_children_of_every_point():
    pts = np.concatenate([_scan_like(4000, 3), np.ones((4000, 1), np.float32)], 1)
    up = _Echo()
    dense = upsample_tiled(up, pts, 4, max_points=600, margin=2.0)
    assert dense.shape == (16000, 4) and len(up.calls) >= 7 and max(up.calls) < 4000
    np.testing.assert_allclose(dense.reshape(4000, 4, 4)[:, :, :2], np.repeat(pts[:, None, :2], 4, 1))
    np.testing.assert_allclose(dense.reshape(4000, 4, 4)[:, :, 2] - pts[:, None, 2], [[0.01, 0.02, 0.03, 0.04]] * 4000,
                               atol=1e-5)


@pytest.mark.slow
def test_upsample_tiled_with_our_weights_close_to_parents():
    from pu_ros.inference.upsampler import Upsampler

    pts = _scan_like(1500, 4)
    pts = pts[np.linalg.norm(pts[:, :2], axis=1) < 20]
    up = Upsampler(device='cpu', merge='parent', patch_overlap=1.0)
    dense = upsample_tiled(up, pts, 2, max_points=400, margin=3.0)
    assert dense.shape == (2 * len(pts), 3) and np.isfinite(dense).all()
    assert np.median(np.linalg.norm(dense.reshape(len(pts), 2, 3) - pts[:, None], axis=-1)) < 3.0
