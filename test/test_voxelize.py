"""Multi-scale voxelization and scatter-mean against slow, obvious twins (numpy dicts and Python loops)."""

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from pu_ros.ops.scatter import group_counts, scatter_mean, scatter_sum  # noqa: E402
from pu_ros.ops.voxelize import (  # noqa: E402
    VoxelizationError,
    grid_shape,
    in_range_mask,
    voxelize_multiscale,
)

RANGE = (-50.0, -50.0, -4.0, 50.0, 50.0, 2.0)
SCALES = (1, 2, 4, 8, 16)


def _voxelize_twin(xyz, batch_idx, voxel_size, point_range, scale):
    """Slow obvious twin: per point, its voxel tuple; voxels listed in sorted order; inverse by dict lookup."""
    origin = np.asarray(point_range[:3], dtype=np.float32)
    cells = []
    for p, b in zip(xyz, batch_idx):
        base = np.floor((p - origin) / np.float32(voxel_size)).astype(np.int64)
        cells.append((int(b), *(int(v) // scale for v in base)))
    unique = sorted(set(cells))
    row = {cell: i for i, cell in enumerate(unique)}
    inverse = np.array([row[c] for c in cells], dtype=np.int64)
    counts = np.zeros(len(unique), dtype=np.int64)
    for i in inverse:
        counts[i] += 1
    return np.array(unique, dtype=np.int64).reshape(-1, 4), inverse, counts


def _random_batch(rng, n, batch_size, extent=(20.0, 20.0, 2.5)):
    xyz = (rng.random((n, 3)) * 2 - 1) * np.asarray(extent)
    xyz[:, 2] -= 1.0
    # Many points share voxels: snap half of them onto a coarse lattice.
    half = n // 2
    xyz[:half] = np.round(xyz[:half] * 2) / 2 + 0.01
    batch_idx = rng.integers(0, batch_size, n)
    return xyz.astype(np.float32), batch_idx.astype(np.int64)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_voxelize_matches_twin(seed):
    rng = np.random.default_rng(seed)
    xyz, batch_idx = _random_batch(rng, 3000, batch_size=3)
    vox = voxelize_multiscale(torch.from_numpy(xyz), torch.from_numpy(batch_idx), 3, 0.1, RANGE, SCALES)
    assert [lvl.scale for lvl in vox.levels] == list(SCALES)
    for lvl in vox.levels:
        coords, inverse, counts = _voxelize_twin(xyz, batch_idx, 0.1, RANGE, lvl.scale)
        assert lvl.coords.dtype == torch.int32 and lvl.point2voxel.dtype == torch.int64
        np.testing.assert_array_equal(lvl.coords.numpy(), coords)
        np.testing.assert_array_equal(lvl.point2voxel.numpy(), inverse)
        np.testing.assert_array_equal(lvl.counts.numpy(), counts)
        assert lvl.spatial_shape == grid_shape(RANGE, 0.1, lvl.scale)
        assert lvl.num_voxels == len(coords)
        # every voxel index is inside its grid
        assert (lvl.coords[:, 1:].numpy() < np.asarray(lvl.spatial_shape)).all()


def test_voxel_centres_and_nesting():
    rng = np.random.default_rng(5)
    xyz, batch_idx = _random_batch(rng, 500, batch_size=2)
    vox = voxelize_multiscale(torch.from_numpy(xyz), torch.from_numpy(batch_idx), 2, 0.1, RANGE, SCALES)
    for scale in SCALES:
        centres = vox.voxel_centres(scale).numpy()
        half = 0.05 * scale + 1e-4
        assert (np.abs(centres - xyz) <= half).all()
    # points in one fine voxel are in one coarse voxel (coarse voxels are unions of fine ones)
    for fine, coarse in zip(vox.levels, vox.levels[1:]):
        parent = np.full(fine.num_voxels, -1)
        f, c = fine.point2voxel.numpy(), coarse.point2voxel.numpy()
        parent[f] = c
        assert (parent[f] == c).all()


def test_grid_shape_defaults():
    assert grid_shape(RANGE, 0.1) == (1000, 1000, 60)
    assert grid_shape(RANGE, 0.1, 16) == (63, 63, 4)


def test_in_range_mask_numpy_and_torch_half_open():
    pts = np.array(
        [
            [0, 0, 0, 0],
            [50.0, 0, 0, 0],
            [-50.0, -50.0, -4.0, 0],
            [0, 0, 2.0, 0],
            [np.nan, 0, 0, 0],
            [0, 49.99, 1.99, 0],
        ],
        dtype=np.float32,
    )
    expected = [True, False, True, False, False, True]
    assert in_range_mask(pts, RANGE).tolist() == expected
    assert in_range_mask(torch.from_numpy(pts), RANGE).tolist() == expected


def test_points_at_upper_edge_stay_in_grid():
    xyz = torch.tensor([[np.nextafter(np.float32(50), np.float32(0)), 49.9999, 1.99999]], dtype=torch.float32)
    vox = voxelize_multiscale(xyz, torch.zeros(1, dtype=torch.int64), 1, 0.1, RANGE, (1, 16))
    assert vox.levels[0].coords.tolist() == [[0, 999, 999, 59]]
    assert vox.levels[1].coords.tolist() == [[0, 62, 62, 3]]


@pytest.mark.parametrize(
    ('xyz', 'batch_idx', 'message'),
    [
        (torch.zeros((0, 3)), torch.zeros(0, dtype=torch.int64), 'empty'),
        (torch.tensor([[60.0, 0, 0]]), torch.zeros(1, dtype=torch.int64), 'outside point_range'),
        (torch.tensor([[float('nan'), 0, 0]]), torch.zeros(1, dtype=torch.int64), 'not finite'),
        (torch.tensor([[0.0, 0, 0]]), torch.ones(1, dtype=torch.int64), 'batch_idx'),
        (torch.zeros((2, 4)), torch.zeros(2, dtype=torch.int64), r'\(P, 3\)'),
    ],
)
def test_voxelize_rejects_bad_input(xyz, batch_idx, message):
    with pytest.raises(VoxelizationError, match=message):
        voxelize_multiscale(xyz, batch_idx, 1, 0.1, RANGE, SCALES)
    assert issubclass(VoxelizationError, ValueError)


def _scatter_mean_twin(src, index, dim_size):
    out = np.zeros((dim_size, *src.shape[1:]), dtype=np.float64)
    for g in range(dim_size):
        rows = [src[i] for i in range(len(index)) if index[i] == g]
        if rows:
            out[g] = np.mean(rows, axis=0)
    return out


def test_scatter_mean_matches_loop_twin():
    rng = np.random.default_rng(3)
    src = rng.standard_normal((400, 5)).astype(np.float32)
    index = rng.integers(0, 60, 400)
    index[index == 7] = 8  # an empty group
    got = scatter_mean(torch.from_numpy(src), torch.from_numpy(index), 61).numpy()
    np.testing.assert_allclose(got, _scatter_mean_twin(src, index, 61), rtol=1e-5, atol=1e-6)
    assert (got[7] == 0).all() and (got[60] == 0).all()
    counts = group_counts(torch.from_numpy(index), 61)
    np.testing.assert_allclose(
        scatter_mean(torch.from_numpy(src), torch.from_numpy(index), 61, counts).numpy(), got, rtol=1e-6
    )
    np.testing.assert_allclose(
        scatter_sum(torch.from_numpy(src), torch.from_numpy(index), 61).numpy()[8],
        src[index == 8].sum(0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_scatter_mean_gradient():
    src = torch.randn(30, 3, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 6, (30,))
    assert torch.autograd.gradcheck(lambda s: scatter_mean(s, index, 6), (src,))


def test_scatter_rejects_bad_shapes():
    with pytest.raises(ValueError, match='index must be'):
        scatter_mean(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match='int64'):
        scatter_mean(torch.zeros(4, 2), torch.zeros(4), 2)
