"""Upsampler: exact N·R counts for any ratio, patching/merging helpers, attributes, errors, files and CLI."""

from dataclasses import fields

import numpy as np
import pytest
import torch

from pu_ros.data.cloud_files import CloudFileError, read_cloud, write_cloud
from pu_ros.inference.patching import (
    child_counts,
    covering_patches,
    lloyd_relax,
    midpoint_upsample,
    near_surface_midpoints,
    normalize_patches,
    seed_weights,
)
from pu_ros.inference.upsampler import Upsampler, UpsamplerConfig
from pu_ros.networks.checkpoint import save_checkpoint
from pu_ros.networks.upsampling import PUFlow, PUFlowConfig
from pu_ros.ops.neighbors import knn_points

SMALL = PUFlowConfig(k=8, interp_k=4, feat_channels=(16, 16, 32, 32, 32, 32), growth=(8, 8, 16, 16, 16, 16),
                     cond_channels=(16, 16, 32, 32, 32, 32), hidden=16)


def _checkpoint(path, config, seed=0):
    torch.manual_seed(seed)
    model = PUFlow(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for b in model.blocks:
            b.actnorm.initialized.fill_(1)
    save_checkpoint(path, model.state_dict(), {'model': config.to_dict()}, {'trained_ratio': 4})
    return path


@pytest.fixture(scope='module')
def small_weights(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp('puflow') / 'small.pt', SMALL)


@pytest.fixture(scope='module')
def full_weights(tmp_path_factory):
    """The full published architecture with random weights (no shared data needed)."""
    return _checkpoint(tmp_path_factory.mktemp('puflow') / 'full.pt', PUFlowConfig())


def _surface(n, seed=0):
    """Points on a wavy sheet (a surface, like an object or a scan)."""
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-1, 1, size=(n, 2))
    z = 0.2 * np.sin(3 * uv[:, 0]) * np.cos(2 * uv[:, 1])
    return np.column_stack([uv, z]).astype(np.float32)


def test_config_metadata_and_validation():
    for f in fields(UpsamplerConfig):
        assert 'help' in f.metadata and ('range' in f.metadata or 'choices' in f.metadata or f.name == 'weights')
    assert UpsamplerConfig().ratio == 4 and UpsamplerConfig().weights == '' and UpsamplerConfig().batch_size == 32
    with pytest.raises(ValueError, match='upsampler.ratio=17'):
        UpsamplerConfig(ratio=17)
    with pytest.raises(ValueError, match='upsampler.merge'):
        UpsamplerConfig(merge='nope')


def test_missing_default_weights_is_a_clear_error(monkeypatch, tmp_path):
    import pu_ros.resources

    monkeypatch.setattr(pu_ros.resources, 'share_dirs', lambda: [tmp_path])
    with pytest.raises(FileNotFoundError, match='upsampling_puflow_lidar.pt'):
        Upsampler(device='cpu')
    with pytest.raises(FileNotFoundError, match='nowhere.pt'):
        Upsampler(weights=str(tmp_path / 'nowhere.pt'), device='cpu')


@pytest.mark.parametrize('ratio,strategy,merge', [(2, 'auto', 'parent'), (3, 'weights', 'fps'),
                                                  (7, 'iterate', 'parent'), (16, 'auto', 'parent'), (4, 'auto', 'fps')])
def test_exact_count_for_any_ratio(small_weights, ratio, strategy, merge):
    pts = _surface(300)
    up = Upsampler(weights=str(small_weights), ratio=ratio, strategy=strategy, merge=merge, device='cpu',
                   patch_size=64)
    out = up.upsample(pts)
    assert out.shape == (300 * ratio, 3) and out.dtype == np.float32 and np.isfinite(out).all()
    # new points stay in the region of the input (the bounding box grown by 20 %)
    lo, hi = pts.min(0), pts.max(0)
    assert (out >= lo - 0.2 * (hi - lo)).all() and (out <= hi + 0.2 * (hi - lo)).all()


def test_auto_merge_is_fps_for_objects_and_parent_for_large_clouds(small_weights, monkeypatch):
    import pu_ros.inference.upsampler as mod

    assert UpsamplerConfig().merge == 'auto' and UpsamplerConfig().patch_overlap == 0.0
    assert UpsamplerConfig().fps_outliers == 24
    pts = _surface(300, seed=4)
    run = {m: Upsampler(weights=str(small_weights), ratio=4, merge=m, device='cpu', patch_size=64).upsample(pts)
           for m in ('auto', 'fps', 'parent')}
    assert np.array_equal(run['auto'], run['fps'])
    monkeypatch.setattr(mod, 'FPS_MERGE_MAX_POINTS', 1000)  # 1200 output points: above it
    auto = Upsampler(weights=str(small_weights), ratio=4, device='cpu', patch_size=64).upsample(pts)
    assert np.array_equal(auto, run['parent'])
    # the fps merge drops its extra points where they are farthest from the input
    none = Upsampler(weights=str(small_weights), ratio=4, merge='fps', fps_outliers=0, device='cpu',
                     patch_size=64).upsample(pts)
    far = lambda x: np.sqrt(((x[:, None] - pts[None]) ** 2).sum(-1).min(1)).max()  # noqa: E731
    assert far(run['fps']) <= far(none) + 1e-6


def test_fps_merge_pools_only_the_patch_cores(small_weights, monkeypatch):
    import pu_ros.inference.upsampler as mod

    pts = _surface(300, seed=5)
    pools = []
    real_fps = mod.farthest_point_sample

    def spy(points, m):
        pools.append(points.shape[0])
        return real_fps(points, m)

    real_relax, real_mids = mod.lloyd_relax, mod.near_surface_midpoints
    relaxed, mids = [], []

    def spy_relax(points, samples, steps):
        relaxed.append((points.shape[0], samples.shape[0], steps))
        return real_relax(points, samples, steps)

    def spy_mids(xyz, samples, k, tol):
        out = real_mids(xyz, samples, k, tol)
        mids.append((xyz.shape[0], samples.shape[0], k, tol, out.shape[0]))
        return out

    monkeypatch.setattr(mod, 'farthest_point_sample', spy)
    monkeypatch.setattr(mod, 'lloyd_relax', spy_relax)
    monkeypatch.setattr(mod, 'near_surface_midpoints', spy_mids)
    sizes = {}
    for keep in (1.0, 0.25):
        pools.clear()
        up = Upsampler(weights=str(small_weights), ratio=4, merge='fps', fps_keep=keep, patch_overlap=4.0,
                       device='cpu', patch_size=64)
        assert up.upsample(pts).shape == (1200, 3)
        sizes[keep] = pools[-1]
    # same patches (overlap given): the pool is the input plus R children of the first P*keep points of each patch
    patches = (sizes[1.0] - 300) // (64 * 4)
    assert sizes[1.0] == 300 + patches * 64 * 4
    assert sizes[0.25] == 300 + patches * 16 * 4
    # the Lloyd steps move the N*R chosen points over the children of the first P*fps_relax_keep points + the input
    # + the input edges' midpoints that lie near those
    # (and as many again from each of the fps_relax_rotations - 1 rotated copies)
    candidates = 300 + patches * 48 * 4 * 4
    assert mids[-1][:4] == (300, candidates, 4, 0.25) and 0 < mids[-1][4] <= 300 * 4
    assert relaxed[-1] == (1200, candidates + mids[-1][4], 3)
    mids.clear()
    Upsampler(weights=str(small_weights), ratio=4, merge='fps', patch_overlap=4.0, device='cpu', patch_size=64,
              fps_relax_midpoints=0, fps_relax_rotations=1).upsample(pts)
    assert not mids and relaxed[-1] == (1200, 300 + patches * 48 * 4, 3)
    with pytest.raises(ValueError, match='fps_keep'):
        UpsamplerConfig(fps_keep=0.0)
    with pytest.raises(ValueError, match='fps_relax'):
        UpsamplerConfig(fps_relax=-1)


@pytest.mark.parametrize('z_only', [False, True])
def test_random_rotations_are_proper_and_seeded(z_only):
    from pu_ros.ops.rotations import random_rotations

    raw = random_rotations(64, np.random.default_rng(3), z_only=z_only)
    assert raw.shape == (64, 3, 3) and raw.dtype == torch.float32
    rot = raw.double()
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(64, dtype=torch.float64), atol=1e-6)  # no reflections
    up = rot[:, :, 2]                                                   # where each rotation sends the z axis
    if z_only:
        assert torch.allclose(up, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(64, 3), atol=1e-6)
    else:
        assert up[:, 2].min() < -0.5 and up[:, 2].max() > 0.5          # spread over the sphere, not about z
    again = random_rotations(64, np.random.default_rng(3), z_only=z_only).double()
    assert torch.equal(rot, again)


def test_rotated_copies_join_the_lloyd_candidates_rotated_back(small_weights, monkeypatch):
    import pu_ros.inference.upsampler as mod

    pts = _surface(300, seed=7)
    seen = []
    real_relax = mod.lloyd_relax

    def spy_relax(points, samples, steps):
        seen.append(samples.clone())
        return real_relax(points, samples, steps)

    monkeypatch.setattr(mod, 'lloyd_relax', spy_relax)

    def candidates(rotations, offset):
        """Lloyd candidates of a stub network whose children sit ``offset`` above their parent in its own frame."""
        up = Upsampler(weights=str(small_weights), ratio=4, merge='fps', device='cpu', patch_size=64,
                       fps_relax_midpoints=0, fps_relax_rotations=rotations)
        lift = torch.tensor([0.0, 0.0, offset])
        monkeypatch.setattr(up.model, 'upsample', lambda x, r: x.repeat_interleave(r, dim=1) + lift)
        up.upsample(pts)
        got = seen[-1]
        nearest = knn_points(got[None], torch.from_numpy(pts)[None], 1)[1][0, :, 0]
        return got, got - torch.from_numpy(pts)[nearest], up

    # children equal to their parents: every rotated copy, rotated back, lands on the input points again
    got, off, _ = candidates(3, 0.0)
    assert off.norm(dim=1).max() < 1e-5
    one, _, _ = candidates(1, 0.0)
    assert got.shape[0] - 300 == 3 * (one.shape[0] - 300)
    # a network that is not rotation-equivariant: each copy lifts its children along its own rotated "up"
    _, off, up = candidates(3, 0.01)
    lifted = off[off.norm(dim=1) > 1e-6]
    directions, count = torch.unique((lifted / lifted.norm(dim=1, keepdim=True)).mul(100).round(), dim=0,
                                     return_counts=True)
    main = directions[count > 0.1 * lifted.shape[0]]              # (a few children lie nearer another input point)
    assert main.shape[0] == 3 and [0.0, 0.0, 100.0] in main.tolist() and count.max() < 0.34 * lifted.shape[0]
    assert np.array_equal(up.upsample(pts), up.upsample(pts))                       # fixed rotations: repeatable
    with pytest.raises(ValueError, match='fps_relax_rotations'):
        UpsamplerConfig(fps_relax_rotations=0)


def test_near_surface_midpoints_drop_chords_across_a_gap():
    # two parallel sheets 0.15 apart, grid spacing 0.2: each point's nearest neighbour is across the gap
    g = torch.arange(8, dtype=torch.float32) * 0.2
    x, y = torch.meshgrid(g, g, indexing='ij')
    sheet = torch.stack([x.flatten(), y.flatten(), torch.zeros(64)], 1)
    pts = torch.cat([sheet, sheet + torch.tensor([0.0, 0.0, 0.15])])
    f = torch.linspace(0, 1.4, 71)
    u, v = torch.meshgrid(f, f, indexing='ij')
    dense = torch.stack([u.flatten(), v.flatten(), torch.zeros(71 * 71)], 1)
    samples = torch.cat([dense, dense + torch.tensor([0.0, 0.0, 0.15])])             # the sheets, every 0.02
    kept = near_surface_midpoints(pts, samples, 4, 0.25)
    on_sheet = (kept[:, 2].abs() < 1e-6) | ((kept[:, 2] - 0.15).abs() < 1e-6)
    assert bool(on_sheet.all())                                                      # no chord across the gap
    assert 128 * 2 <= kept.shape[0] < 128 * 4                                        # the in-sheet edges stay
    assert near_surface_midpoints(pts, samples, 4, 1.0).shape[0] == 128 * 4         # loose: every midpoint
    assert near_surface_midpoints(pts[:1], samples, 4, 0.25).shape == (0, 3)        # no neighbour, no midpoint
    with pytest.raises(ValueError, match='fps_relax_midpoints'):
        UpsamplerConfig(fps_relax_midpoints=1.5)


def test_lloyd_relax_lowers_the_coverage_error():
    torch.manual_seed(0)
    samples = torch.nn.functional.normalize(torch.randn(4000, 3), dim=1)         # a sphere, densely sampled
    start = torch.nn.functional.normalize(torch.randn(200, 3) * torch.tensor([1.0, 1.0, 0.3]), dim=1)  # clumped

    def coverage(points):  # mean squared distance from the surface samples to their nearest point
        return float(((samples[:, None] - points[None]) ** 2).sum(-1).min(1).values.mean())

    errors = [coverage(lloyd_relax(start, samples, steps)) for steps in range(4)]
    assert errors[0] == coverage(start)                                             # 0 steps: unchanged
    assert all(b <= a + 1e-7 for a, b in zip(errors, errors[1:])), errors           # never worse
    assert errors[3] < 0.8 * errors[0], errors
    far = torch.cat([start[:10], torch.tensor([[9.0, 9.0, 9.0]])])                  # nearest to no sample: stays
    assert torch.equal(lloyd_relax(far, samples, 2)[-1], far[-1])


def test_ratio_plan(small_weights):
    up = Upsampler(weights=str(small_weights), device='cpu')
    assert up.passes(3) == [3] and up.passes(4) == [4]
    assert up.passes(16) == [4, 4] and up.passes(8) == [4, 2] and up.passes(6) == [4, 2]
    up.config.strategy = 'weights'
    assert up.passes(16) == [16]


def test_intensity_follows_nearest_input_and_tensor_path(small_weights):
    pts = _surface(300, seed=1)
    cloud = np.column_stack([pts, np.arange(300, dtype=np.float32)])
    up = Upsampler(weights=str(small_weights), ratio=3, device='cpu', patch_size=64)
    out = up.upsample(cloud)
    assert out.shape == (900, 4)
    d2 = ((out[:, None, :3] - pts[None]) ** 2).sum(-1)                 # (900, 300)
    carried = out[:, 3].astype(int)                                     # intensity = index of the input point
    assert np.array_equal(out[:, 3], carried) and carried.min() >= 0 and carried.max() < 300
    # the intensity of a nearest input point (a float32 near-tie may go either way)
    assert np.all(d2[np.arange(900), carried] <= d2.min(1) + 1e-6)
    t = up.upsample_tensor(torch.from_numpy(cloud))
    assert isinstance(t, torch.Tensor) and t.shape == (900, 4) and t.device.type == up.device.split(':')[0]


def test_batch_size_does_not_change_the_result(small_weights):
    pts = _surface(200, seed=2)
    a = Upsampler(weights=str(small_weights), ratio=4, device='cpu', patch_size=32, batch_size=1).upsample(pts)
    b = Upsampler(weights=str(small_weights), ratio=4, device='cpu', patch_size=32, batch_size=64).upsample(pts)
    assert np.allclose(a, b, atol=1e-5)


def test_bad_inputs(small_weights):
    up = Upsampler(weights=str(small_weights), device='cpu')
    assert up.upsample(np.zeros((0, 3), np.float32)).shape == (0, 3)
    with pytest.raises(ValueError, match='at least'):
        up.upsample(np.zeros((5, 3), np.float32))
    bad = _surface(100)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        up.upsample(bad)
    with pytest.raises(ValueError, match=r'\(N, 3\)'):
        up.upsample(np.zeros((10,), np.float32))


@pytest.mark.parametrize('merge', ['parent', 'fps'])
def test_non_finite_network_output_is_replaced(small_weights, monkeypatch, merge):
    up = Upsampler(weights=str(small_weights), ratio=4, device='cpu', patch_size=64, merge=merge)
    real = up.model.upsample

    def broken(points, ratio):
        out = real(points, ratio)
        out[0, :5] = float('nan')
        out[-1, -3:] = float('inf')
        return out

    monkeypatch.setattr(up.model, 'upsample', broken)
    out = up.upsample(_surface(200, seed=6))
    assert out.shape == (800, 3) and np.isfinite(out).all()


def test_patch_helpers():
    xyz = torch.from_numpy(_surface(1000, seed=3))
    idx, d2 = covering_patches(xyz, 100, 1.0)
    assert idx.shape[1] == 100 and torch.unique(idx).numel() == 1000          # every point is covered
    assert torch.all(d2[:, 0] == 0) and torch.all(d2[:, 1:] >= d2[:, :-1])    # seed first, sorted by distance
    w = seed_weights(d2)
    assert torch.all(w[:, 0] > 1.0) and torch.all(w > 0) and torch.all(w[:, 1:] <= w[:, :-1])
    c = child_counts(1000, 2345, 3, 'cpu')
    assert int(c.sum()) == 2345 and int(c.max()) <= 3 and int(c.min()) >= 2
    norm, centroid, radius = normalize_patches(xyz[idx[:4]])
    assert torch.allclose(norm.norm(dim=-1).amax(1), torch.ones(4)) and torch.allclose(norm.mean(1), torch.zeros(4, 3),
                                                                                     atol=1e-6)
    assert torch.allclose(norm * radius + centroid, xyz[idx[:4]], atol=1e-6)


def test_midpoint_baseline():
    xyz = torch.tensor([[0., 0, 0], [1, 0, 0], [0, 2, 0], [5, 5, 5]])
    out = midpoint_upsample(xyz, 3, k=2)
    assert out.shape == (12, 3)
    assert torch.equal(out[0], xyz[0]) and torch.allclose(out[1], torch.tensor([0.5, 0, 0]))
    assert midpoint_upsample(xyz[None], 5, k=2).shape == (1, 20, 3)


@pytest.mark.parametrize('suffix', ['.xyz', '.ply', '.npy', '.bin'])
def test_cloud_files_round_trip(tmp_path, suffix):
    pts = np.column_stack([_surface(50), np.linspace(0, 1, 50, dtype=np.float32)])
    back = read_cloud(write_cloud(tmp_path / f'c{suffix}', pts))
    assert back.shape == (50, 4) and np.allclose(back, pts, atol=1e-6)


def test_ascii_ply_and_bad_files(tmp_path):
    p = tmp_path / 'a.ply'
    p.write_text('ply\nformat ascii 1.0\ncomment hi\nelement vertex 2\nproperty float x\nproperty float y\n'
                 'property float z\nproperty uchar red\nend_header\n1 2 3 255\n4 5 6 0\n')
    assert np.array_equal(read_cloud(p), np.array([[1, 2, 3], [4, 5, 6]], np.float32))
    (tmp_path / 'b.ply').write_text('ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\n'
                                    'property float y\nproperty float z\nend_header\n')
    with pytest.raises(CloudFileError, match='binary_big_endian'):
        read_cloud(tmp_path / 'b.ply')
    (tmp_path / 'c.bin').write_bytes(b'123')
    with pytest.raises(CloudFileError, match='multiple of 16'):
        read_cloud(tmp_path / 'c.bin')
    (tmp_path / 'd.pcd').write_text('x')
    with pytest.raises(CloudFileError, match='unsupported suffix'):
        read_cloud(tmp_path / 'd.pcd')


@pytest.mark.parametrize('suffix', ['.xyz', '.ply', '.npy', '.bin'])
def test_cli_writes_file_with_n_times_r_points(tmp_path, small_weights, suffix, capsys):
    from pu_ros.cli import main

    src = write_cloud(tmp_path / f'in{suffix}', np.column_stack([_surface(150), np.ones(150, np.float32)]))
    dst = tmp_path / f'out{suffix}'
    rc = main(['upsample', str(src), '-o', str(dst), '--ratio', '3', '--weights', str(small_weights),
               '--device', 'cpu', '--patch-size', '64'])
    assert rc == 0, capsys.readouterr().err
    out = read_cloud(dst)
    assert out.shape[0] == 450 and np.allclose(out[:, 3], 1.0)


def test_cli_errors(tmp_path, small_weights, capsys):
    from pu_ros.cli import main

    assert main(['upsample', str(tmp_path / 'none.xyz'), '-o', str(tmp_path / 'o.xyz')]) == 2
    src = write_cloud(tmp_path / 'in.xyz', _surface(100))
    assert main(['upsample', str(src), '-o', str(tmp_path / 'o.xyz'), '--weights', str(src)]) == 2
    assert main(['upsample', str(src), '-o', str(tmp_path / 'o.xyz'), '--ratio', '40',
                 '--weights', str(small_weights)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith('upsample: ') for line in err)


@pytest.mark.slow
def test_x16_object_and_x4_scan_on_cpu(full_weights):
    """The issue's scale check with the full-size network (random weights): x16 of 2048 points, x4 of a 35k scan."""
    obj = _surface(2048, seed=4)
    out = Upsampler(weights=str(full_weights), ratio=16, device='cpu', patch_overlap=2.0).upsample(obj)
    assert out.shape == (2048 * 16, 3) and np.isfinite(out).all()
    rng = np.random.default_rng(5)
    az = rng.uniform(-np.pi, np.pi, 35000)
    ring = rng.integers(0, 32, 35000)
    rng_m = rng.uniform(3, 40, 35000)
    elev = np.deg2rad(-25 + ring * 28 / 31)
    scan = np.column_stack([rng_m * np.cos(elev) * np.cos(az), rng_m * np.cos(elev) * np.sin(az),
                            rng_m * np.sin(elev), rng.uniform(0, 1, 35000)]).astype(np.float32)
    dense = Upsampler(weights=str(full_weights), ratio=4, device='cpu', patch_overlap=2.0).upsample(scan)
    assert dense.shape == (140000, 4) and np.isfinite(dense).all()
