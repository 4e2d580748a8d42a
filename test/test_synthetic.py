"""Synthetic KITTI-like sequences: determinism, scene content, HDL-64 geometry, camera consistency, file layout."""

from pathlib import Path

import numpy as np
import pytest

from pu_ros.data.synthetic import (
    CLASS_COLORS,
    ROAD,
    SCENE_CLASSES,
    SIDEWALK,
    TRAFFIC_SIGN,
    SceneConfig,
    SyntheticSequence,
    hdl64_elevations,
    write_sequence,
)

SMALL = {'n_frames': 2, 'n_azimuth': 600, 'image_width': 320, 'image_height': 96}


@pytest.fixture(scope='module')
def full_seq():
    """Default-sized sequence (2000 azimuth steps, 1242×375 image), 3 frames."""
    return SyntheticSequence(SceneConfig(seed=3, n_frames=3))


@pytest.fixture(scope='module')
def full_frame(full_seq):
    return full_seq.frame(2)


def _elevation_deg(points):
    return np.degrees(np.arcsin(points[:, 2] / np.linalg.norm(points[:, :3], axis=1)))


def _road_residuals(points, labels, height):
    """Range error of road points along their ray (the road is the plane z = -height in the velodyne frame)."""
    road = points[(labels & 0xFFFF) == ROAD].astype(np.float64)
    r = np.linalg.norm(road[:, :3], axis=1)
    sin_el = road[:, 2] / r  # noise is along the ray, so the direction is exact
    return r - height / -sin_el


# ----------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    'bad',
    [{'n_frames': 0}, {'n_azimuth': 3}, {'dropout': 1.0}, {'noise_std': -0.1}, {'max_range': 1.0}, {'seed': -1}],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match='SceneConfig'):
        SceneConfig(**bad)


def test_frame_index_out_of_range():
    seq = SyntheticSequence(SceneConfig(**SMALL))
    with pytest.raises(IndexError):
        seq.frame(2)
    with pytest.raises(IndexError):
        seq.scan(-1)


# ----------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_frames_and_different_seed_differs():
    a = SyntheticSequence(SceneConfig(seed=5, **SMALL)).frame(1)
    b = SyntheticSequence(SceneConfig(seed=5, **SMALL)).frame(1)
    c = SyntheticSequence(SceneConfig(seed=6, **SMALL)).frame(1)
    for key in ('points', 'labels', 'image', 'image_labels', 'pose'):
        np.testing.assert_array_equal(a[key], b[key])
    assert a['points'].shape != c['points'].shape or not np.array_equal(a['points'], c['points'])
    assert not np.array_equal(a['image'], c['image'])


def test_frame_does_not_depend_on_sequence_length():
    short = SyntheticSequence(SceneConfig(seed=2, **{**SMALL, 'n_frames': 2})).frame(1)
    long = SyntheticSequence(SceneConfig(seed=2, **{**SMALL, 'n_frames': 40})).frame(1)
    np.testing.assert_array_equal(short['points'], long['points'])
    np.testing.assert_array_equal(short['image'], long['image'])


def test_written_files_are_bit_identical(tmp_path):
    cfg = SceneConfig(seed=9, **SMALL)
    a = write_sequence(tmp_path / 'a', cfg, progress=False)
    b = write_sequence(tmp_path / 'b', cfg, progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob('*') if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob('*') if p.is_file())
    assert files_a == files_b and len(files_a) == 3 + 3 * cfg.n_frames
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


# ----------------------------------------------------------------------------------------------- content


def test_all_classes_present(full_seq, full_frame):
    lidar = set(np.unique(full_frame['labels'] & 0xFFFF).tolist())
    image = set(np.unique(full_frame['image_labels'] & 0xFFFF).tolist())
    for i in range(2):
        lidar |= set(np.unique(full_seq.scan(i)[1] & 0xFFFF).tolist())
    assert set(SCENE_CLASSES) <= lidar, set(SCENE_CLASSES) - lidar
    assert set(SCENE_CLASSES) - {TRAFFIC_SIGN} <= image, set(SCENE_CLASSES) - image
    assert lidar <= set(SCENE_CLASSES) and image <= set(SCENE_CLASSES) | {0}


def test_instances_for_things_only(full_frame):
    labels = full_frame['labels']
    cls, inst = labels & 0xFFFF, labels >> 16
    things = np.isin(cls, [10, 18, 30])
    assert np.all(inst[things] > 0) and np.all(inst[~things] == 0)
    cars = np.unique(inst[cls == 10])
    assert cars.size >= 5
    for k in cars:  # one instance = one compact car
        pts = full_frame['points'][(cls == 10) & (inst == k), :3]
        assert np.ptp(pts[:, :2], axis=0).max() < 5.5 and np.ptp(pts[:, 2]) < 1.7


def test_hdl64_scan_geometry(full_seq, full_frame):
    points = full_frame['points']
    assert points.dtype == np.float32 and points.shape[1] == 4
    assert full_frame['labels'].dtype == np.uint32 and full_frame['labels'].shape == (points.shape[0],)
    assert 100_000 <= points.shape[0] <= 128_000  # a real seq-00 scan has ~124k
    el = _elevation_deg(points)
    beams = np.degrees(hdl64_elevations(64))
    assert beams[0] == pytest.approx(2.0) and beams[-1] == pytest.approx(-24.9)
    nearest = np.abs(el[:, None] - beams[None, :]).argmin(axis=1)
    np.testing.assert_allclose(el, beams[nearest], atol=0.01)
    assert np.unique(nearest).size == 64
    counts = np.bincount(nearest, minlength=64)
    assert counts[32:].min() > 1500  # lower block: every beam hits the ground all around
    r = np.linalg.norm(points[:, :3], axis=1)
    assert r.max() <= full_seq.config.max_range + 0.2 and r.min() > 2.0
    azimuth = np.arctan2(points[:, 1], points[:, 0])
    assert np.histogram(azimuth, bins=8, range=(-np.pi, np.pi))[0].min() > 5000  # full 360°


def test_points_lie_on_their_surfaces(full_seq, full_frame):
    points, cls = full_frame['points'], full_frame['labels'] & 0xFFFF
    h = full_seq.config.sensor_height
    z = points[:, 2]
    road = z[cls == ROAD]
    assert road.size > 10_000
    np.testing.assert_allclose(road, -h, atol=0.1)
    assert abs(road.mean() + h) < 0.005
    walk = z[cls == SIDEWALK]
    assert np.all((walk > -h - 0.1) & (walk < -h + 0.25))
    assert np.median(walk) == pytest.approx(-h + 0.15, abs=0.01)  # slab tops
    for c, top in ((10, 1.6), (30, 2.1), (18, 3.7), (40, 0.1), (72, 0.1)):
        assert z[cls == c].max() < -h + top + 0.1
    assert z[cls == 50].max() > -h + 5  # buildings are tall
    sign, road_i = points[cls == TRAFFIC_SIGN, 3], points[cls == ROAD, 3]
    assert points[:, 3].min() >= 0 and points[:, 3].max() <= 1
    assert np.median(sign) > 2 * np.median(road_i)


def test_range_noise_and_dropout_statistics():
    base = {'seed': 4, 'n_frames': 1, 'n_azimuth': 1000, 'render_image': False}
    exact_pts, exact_lab = SyntheticSequence(SceneConfig(noise_std=0.0, dropout=0.0, **base)).scan(0)
    assert np.abs(_road_residuals(exact_pts, exact_lab, 1.73)).max() < 2e-3
    noisy_pts, noisy_lab = SyntheticSequence(SceneConfig(noise_std=0.05, dropout=0.0, **base)).scan(0)
    res = _road_residuals(noisy_pts, noisy_lab, 1.73)
    assert res.std() == pytest.approx(0.05, rel=0.1) and abs(res.mean()) < 0.005
    dropped_pts, _ = SyntheticSequence(SceneConfig(noise_std=0.0, dropout=0.2, **base)).scan(0)
    assert dropped_pts.shape[0] / exact_pts.shape[0] == pytest.approx(0.8, abs=0.015)
    # a dropout removes points; it never moves the others
    kept = {tuple(p) for p in dropped_pts[:, :3].tolist()}
    assert kept <= {tuple(p) for p in exact_pts[:, :3].tolist()}


def test_cast_matches_unculled_twin():
    """Sector culling changes nothing: compare with every primitive tested against every ray."""
    seq = SyntheticSequence(SceneConfig(seed=1, n_frames=1, render_image=False))
    scene = seq._scene
    rng = np.random.default_rng(0)
    pose = seq.world_pose(0)
    el = rng.uniform(np.radians(-25), np.radians(10), 3000)
    az = rng.uniform(-np.pi, np.pi, 3000)
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
    o = pose[:3, 3]
    t, kind, index = scene.cast(o, dirs, 100.0)
    # naive: all primitives, one ray at a time
    for r in range(0, 3000, 10):
        d = dirs[r : r + 1]
        best = -o[2] / d[0, 2] if d[0, 2] < 0 else np.inf
        for kernel, n in ((scene._hit_box, len(scene.box_c)), (scene._hit_cyl, len(scene.cyl_r)),
                          (scene._hit_ell, len(scene.ell_r))):  # fmt: skip
            best = min(best, kernel(o, d, np.arange(n)).min())
        best = best if best <= 100.0 else np.inf
        assert t[r] == best
    hits = kind > 0
    p = o + t[hits, None] * dirs[hits]
    k, i = kind[hits], index[hits]
    np.testing.assert_allclose(p[k == 1, 2], 0.0, atol=1e-9)
    c = scene.cyl_xy[i[k == 3]]
    radial = np.linalg.norm(p[k == 3, :2] - c, axis=1)
    on_side = np.isclose(radial, scene.cyl_r[i[k == 3]], atol=1e-6)
    on_cap = np.isclose(p[k == 3, 2], scene.cyl_z1[i[k == 3]], atol=1e-6)
    assert np.all(on_side | on_cap)
    q = (p[k == 4] - scene.ell_c[i[k == 4]]) / scene.ell_r[i[k == 4]]
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)


# ----------------------------------------------------------------------------------------------- camera


def test_calibration_is_kitti_like(full_seq):
    calib = full_seq.calib
    assert (calib.width, calib.height) == (1242, 375)
    assert calib.P[0, 0] == pytest.approx(721.5) and calib.P[1, 1] == pytest.approx(721.5)
    R = calib.T_cam_lidar[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 0, 1], atol=0.01)  # velodyne forward = camera z
    np.testing.assert_allclose(R @ [0, 1, 0], [-1, 0, 0], atol=0.01)  # left = -x (x right)
    np.testing.assert_allclose(R @ [0, 0, 1], [0, -1, 0], atol=0.01)  # up = -y (y down)


def _colour_class(pixels):
    """Nearest class colour up to a brightness factor in [0.35, 1.1] (the renderer's shading range)."""
    keys = np.array(list(CLASS_COLORS))
    cols = np.array([CLASS_COLORS[k] for k in keys], np.float64)
    scale = np.clip(pixels @ cols.T / (cols**2).sum(1), 0.35, 1.1)
    residual = np.linalg.norm(pixels[:, None, :] - scale[:, :, None] * cols[None], axis=2)
    return keys[residual.argmin(axis=1)]


def test_projected_points_land_on_their_class_colour(full_seq, full_frame):
    image, image_labels = full_frame['image'], full_frame['image_labels'] & 0xFFFF
    assert image.shape == (375, 1242, 3) and image.dtype == np.uint8
    uv, _, inside = full_seq.calib.project(full_frame['points'])
    assert inside.sum() > 10_000
    col, row = np.rint(uv[inside]).astype(int).T
    col, row = col.clip(0, 1241), row.clip(0, 374)
    cls = full_frame['labels'][inside] & 0xFFFF
    # away from edges: the 5×5 neighbourhood of the pixel has one class
    pad = np.pad(image_labels, 2, mode='edge')
    uniform = np.ones_like(image_labels, bool)
    for dy in range(5):
        for dx in range(5):
            uniform &= pad[dy : dy + 375, dx : dx + 1242] == image_labels
    keep = uniform[row, col]
    assert keep.mean() > 0.7
    by_colour = _colour_class(image[row, col].astype(np.float64))
    assert (by_colour[keep] == cls[keep]).mean() > 0.9
    assert (image_labels[row, col][keep] == cls[keep]).mean() > 0.9
    # and the sky (no label) is at the top, never below the horizon in the middle of the road
    assert (image_labels[0] == 0).any() and image_labels[-1, 621] == ROAD


def test_image_disabled():
    f = SyntheticSequence(SceneConfig(**{**SMALL, 'render_image': False})).frame(0)
    assert f['image'] is None and f['image_labels'] is None and f['points'].shape[0] > 0


# ----------------------------------------------------------------------------------------------- poses


def test_poses_and_stamps(full_seq):
    np.testing.assert_allclose(full_seq.pose(0), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(full_seq.camera_pose(0), np.eye(4), atol=1e-12)
    step = full_seq.pose(1)[:3, 3] - full_seq.pose(0)[:3, 3]
    assert np.linalg.norm(step) == pytest.approx(1.0, abs=0.01)  # 10 m/s at 10 Hz
    assert step[0] > 0.99  # forward
    Tr = full_seq.matrices['Tr']
    np.testing.assert_allclose(full_seq.camera_pose(2), Tr @ full_seq.pose(2) @ np.linalg.inv(Tr))
    assert full_seq.stamp(2) == pytest.approx(0.2)


# ----------------------------------------------------------------------------------------------- writing


def _calib_lines(path):
    return {k.strip(): v.split() for k, _, v in (ln.partition(':') for ln in path.read_text().splitlines())}


def test_written_layout(tmp_path):
    from PIL import Image

    cfg = SceneConfig(seed=1, **SMALL)
    out = write_sequence(tmp_path / 'seq', cfg, progress=False)
    assert out == tmp_path / 'seq'
    seq = SyntheticSequence(cfg)
    for i in range(cfg.n_frames):
        bin_path, label_path = out / 'velodyne' / f'{i:06d}.bin', out / 'labels' / f'{i:06d}.label'
        n = bin_path.stat().st_size // 16
        assert bin_path.stat().st_size == 16 * n and label_path.stat().st_size == 4 * n and n > 1000
        points, labels = seq.scan(i)
        np.testing.assert_array_equal(np.fromfile(bin_path, '<f4').reshape(-1, 4), points)
        np.testing.assert_array_equal(np.fromfile(label_path, '<u4'), labels)
        with Image.open(out / 'image_2' / f'{i:06d}.png') as im:
            assert im.mode == 'RGB' and im.size == (320, 96)
    calib = _calib_lines(out / 'calib.txt')
    assert list(calib) == ['P0', 'P1', 'P2', 'P3', 'Tr']
    assert all(len(v) == 12 for v in calib.values())
    np.testing.assert_allclose(np.array(calib['P2'], float).reshape(3, 4), seq.calib.P)
    times = np.loadtxt(out / 'times.txt', ndmin=1)
    np.testing.assert_allclose(times, [0.0, 0.1])
    poses = np.loadtxt(out / 'poses.txt', ndmin=2)
    assert poses.shape == (2, 12)
    np.testing.assert_allclose(poses[1].reshape(3, 4), seq.camera_pose(1)[:3], atol=1e-9)


def test_written_without_images(tmp_path):
    out = write_sequence(tmp_path / 'seq', SceneConfig(**{**SMALL, 'render_image': False}), progress=False)
    assert not (out / 'image_2').exists() and len(list((out / 'velodyne').glob('*.bin'))) == 2


def test_open_kitti_reads_written_sequence_back(tmp_path):
    kitti = pytest.importorskip('pu_ros.data.kitti')
    cfg = SceneConfig(seed=7, **SMALL)
    out = write_sequence(tmp_path / 'seq', cfg, progress=False)
    seq = SyntheticSequence(cfg)
    read = kitti.open_kitti(out)
    assert read.layout == 'odometry' and len(read) == cfg.n_frames and read.camera == 'image_2'
    np.testing.assert_allclose(read.calib.P, seq.calib.P)
    np.testing.assert_allclose(read.calib.T_cam_lidar, seq.calib.T_cam_lidar, atol=1e-12)
    assert (read.calib.width, read.calib.height) == (seq.calib.width, seq.calib.height)
    for i in range(cfg.n_frames):
        frame, ref = read[i], seq.frame(i)
        np.testing.assert_array_equal(frame.points, ref['points'])
        np.testing.assert_array_equal(frame.labels, ref['labels'])
        np.testing.assert_array_equal(frame.image, ref['image'])
        assert frame.image_encoding == 'rgb8'
        np.testing.assert_allclose(frame.pose, ref['pose'], atol=1e-9)
        assert frame.stamp == pytest.approx(ref['stamp'])


def test_cli_synth(tmp_path, capsys):
    from pu_ros import cli

    out = tmp_path / 'cli_seq'
    assert cli.main(['synth', '-o', str(out), '--frames', '1', '--seed', '3', '--azimuth-steps', '200',
                     '--no-image']) == 0  # fmt: skip
    assert Path(out / 'velodyne' / '000000.bin').is_file() and not (out / 'image_2').exists()
    assert 'wrote 1' in capsys.readouterr().out
    assert cli.main(['synth', '-o', str(out), '--frames', '0']) == 2
