"""kNN and FPS against slow, obvious twins (GUIDE §5)."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from pu_ros.ops.neighbors import farthest_point_sample, knn_points, knn_points_tiled  # noqa: E402


def knn_naive(query, ref, k):
    """Every distance in float64, full sort: (M, k) squared distances and indices."""
    q = np.asarray(query, np.float64)
    r = np.asarray(ref, np.float64)
    d = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    idx = np.argsort(d, axis=1, kind='stable')[:, :k]
    return np.take_along_axis(d, idx, 1), idx


def fps_naive(points, m, selected=()):
    """Python loop over candidates; first index 0 unless seeds are given."""
    p = np.asarray(points, np.float64)
    chosen = list(selected) or [0]
    while len(chosen) < m:
        best, best_d = -1, -1.0
        for j in range(len(p)):
            d = min(((p[j] - p[c]) ** 2).sum() for c in chosen)
            if d > best_d:
                best, best_d = j, d
        chosen.append(best)
    return np.array(chosen)


@pytest.mark.parametrize('offset', [0.0, 40.0])  # 40 m: LiDAR-like coordinates far from the origin
def test_knn_matches_naive(offset):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 3)).astype(np.float32) + offset
    query = rng.normal(size=(57, 3)).astype(np.float32) + offset
    d, i = knn_points(torch.from_numpy(query), torch.from_numpy(ref), 8, block_elements=1000)  # many chunks
    d_ref, i_ref = knn_naive(query, ref, 8)
    np.testing.assert_allclose(d.numpy(), d_ref, rtol=1e-4, atol=1e-5)
    # indices equal except where distances tie within float precision
    same = i.numpy() == i_ref
    assert same.mean() > 0.99
    assert d.shape == (57, 8) and i.dtype == torch.int64


def test_knn_batched_and_errors():
    rng = np.random.default_rng(1)
    ref = torch.from_numpy(rng.normal(size=(3, 50, 3)).astype(np.float32))
    query = torch.from_numpy(rng.normal(size=(3, 20, 3)).astype(np.float32))
    d, i = knn_points(query, ref, 4)
    for b in range(3):
        d_ref, i_ref = knn_naive(query[b].numpy(), ref[b].numpy(), 4)
        np.testing.assert_array_equal(i[b].numpy(), i_ref)
    d_self, i_self = knn_points(ref, ref, 1)
    np.testing.assert_array_equal(i_self[..., 0].numpy(), np.tile(np.arange(50), (3, 1)))
    with pytest.raises(ValueError, match='k=51'):
        knn_points(query, ref, 51)
    with pytest.raises(ValueError, match='expected'):
        knn_points(query[:2], ref, 2)


def test_fps_matches_naive_and_is_spread():
    rng = np.random.default_rng(2)
    pts = rng.uniform(-1, 1, size=(200, 3)).astype(np.float32)
    idx = farthest_point_sample(torch.from_numpy(pts), 20).numpy()
    np.testing.assert_array_equal(idx, fps_naive(pts, 20))
    assert len(set(idx.tolist())) == 20


def test_fps_completion_from_seeds_and_batch():
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1, 1, size=(2, 120, 3)).astype(np.float32)
    seeds = np.array([[5, 17, 40], [0, 1, 2]])
    idx = farthest_point_sample(torch.from_numpy(pts), 10, selected=torch.from_numpy(seeds)).numpy()
    for b in range(2):
        np.testing.assert_array_equal(idx[b], fps_naive(pts[b], 10, seeds[b].tolist()))
    with pytest.raises(ValueError, match='m=121'):
        farthest_point_sample(torch.from_numpy(pts), 121)


def test_fps_rows_with_different_numbers_of_seeds():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(3, 60, 3)).astype(np.float32)
    sel = np.array([[5, 9, 0, 0], [7, 0, 0, 0], [1, 2, 3, 4]])
    counts = np.array([2, 1, 4])
    out = farthest_point_sample(torch.from_numpy(pts), 7, selected=torch.from_numpy(sel),
                                num_selected=torch.from_numpy(counts)).numpy()
    for b in range(3):
        np.testing.assert_array_equal(out[b], fps_naive(pts[b], 7, sel[b, :counts[b]].tolist()))
    with pytest.raises(ValueError):
        farthest_point_sample(torch.from_numpy(pts), 7, selected=torch.from_numpy(sel),
                              num_selected=torch.tensor([0, 1, 1]))


@pytest.mark.parametrize('k', [1, 3])
def test_knn_tiled_matches_naive(k):
    rng = np.random.default_rng(3)
    # a LiDAR-like spread: dense near the origin, sparse far away, plus an isolated far cluster (global fallback)
    ref = np.concatenate([rng.normal(0, 4, (300, 3)), rng.uniform(-60, 60, (200, 3)), [[90, 90, 0], [91, 90, 0]]])
    query = np.concatenate([rng.normal(0, 6, (400, 3)), rng.uniform(-70, 70, (100, 3)), [[95, 95, 1]]])
    d, i = knn_points_tiled(torch.tensor(query, dtype=torch.float32), torch.tensor(ref, dtype=torch.float32), k,
                            tile=0.5, levels=3)
    d_ref, i_ref = knn_naive(query, ref, k)
    np.testing.assert_allclose(d.numpy(), d_ref, rtol=1e-4, atol=1e-4)
    assert (i.numpy() == i_ref).mean() > 0.99  # ties aside
    with pytest.raises(ValueError):
        knn_points_tiled(torch.zeros(3, 3), torch.zeros(2, 3), 3)


@pytest.mark.skipif(not Path('/proc/self/clear_refs').exists(), reason='needs Linux /proc')
def test_knn_peak_memory_stays_near_its_block():
    """51k queries against 8192 points in ~400 chunks: the peak grows by the block, not by heap fragmentation.

    (Collecting per-chunk results in lists between the big temporaries once raised the peak by 0.5-2.4 GB here.)
    """
    def hwm_mb():
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
        raise AssertionError('no VmHWM')

    gen = torch.Generator().manual_seed(0)
    query = torch.nn.functional.normalize(torch.randn(51200, 3, generator=gen), dim=1)
    ref = query[:8192].clone()
    Path('/proc/self/clear_refs').write_text('5')
    before = hwm_mb()
    d, i = knn_points(query, ref, 1, block_elements=1 << 20)
    grown = hwm_mb() - before
    assert d.shape == (51200, 1) and bool((d[:8192, 0] < 1e-6).all())  # the first 8192 queries are the references
    assert grown < 200, f'peak grew by {grown:.0f} MB for a 4 MB block'
