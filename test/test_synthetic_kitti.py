"""KITTI-style synthetic scenes, the material remission model, the parallel writer and the scan statistics."""

import numpy as np
import pytest

from pu_ros.data import remission as rem
from pu_ros.data.scan_stats import compare_statistics, ground_plane, ring_elevations, scan_statistics
from pu_ros.data.synthetic import SceneConfig, SyntheticSequence
from pu_ros.data.synthetic_writer import write_dataset

TINY = {'n_frames': 2, 'n_azimuth': 500, 'render_image': False, 'frame_period': 1.0}


@pytest.fixture(scope='module')
def kitti_scans():
    """Two KITTI-style frames of three drives (500 azimuth steps)."""
    out = []
    for seed in range(3):
        seq = SyntheticSequence(SceneConfig(seed=seed, style='kitti', **TINY))
        out += [seq.scan(i) for i in range(2)]
    return out


def test_style_is_validated():
    with pytest.raises(ValueError, match='style'):
        SceneConfig(style='carla')


def test_kitti_style_is_deterministic_and_differs_from_basic():
    a = SyntheticSequence(SceneConfig(seed=4, style='kitti', **TINY)).scan(1)
    b = SyntheticSequence(SceneConfig(seed=4, style='kitti', **TINY)).scan(1)
    c = SyntheticSequence(SceneConfig(seed=4, style='basic', **TINY)).scan(1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])
    longer = SyntheticSequence(SceneConfig(seed=4, style='kitti', **{**TINY, 'n_frames': 6})).scan(1)
    np.testing.assert_array_equal(a[0], longer[0])  # a frame does not depend on the sequence length


def test_kitti_scans_content(kitti_scans):
    cls = np.concatenate([lab & 0xFFFF for _, lab in kitti_scans])
    found = set(np.unique(cls).tolist())
    assert {10, 40, 48, 50, 70, 71, 72, 80} <= found, found
    assert found & {252, 253, 254, 258}, 'no moving object in six frames'
    for points, labels in kitti_scans:
        assert points.dtype == np.float32 and labels.shape == (points.shape[0],)
        i = points[:, 3]
        assert i.min() >= 0 and i.max() <= 1
        np.testing.assert_allclose(i * 100, np.round(i * 100), atol=1e-3)  # quantised like KITTI
        assert 0.01 < (i == 0).mean() < 0.2  # zero returns exist, not dominant
    # the class shares move towards the real seq-00 ones (vegetation and sidewalk large, cars a few %)
    share = {c: float((cls == c).mean()) for c in (10, 48, 70)}
    assert share[70] > 0.04 and share[48] > 0.05 and share[10] < 0.12, share


def test_remission_model_properties():
    rng = np.random.default_rng(0)
    n = 20000
    cls = np.full(n, 40)
    near = rem.remission(cls, np.ones(n), np.full(n, 0.3), np.full(n, 5.0), rng)
    far = rem.remission(cls, np.ones(n), np.full(n, 0.3), np.full(n, 50.0), rng)
    assert near.mean() > 1.4 * far.mean()  # range fall-off
    grazing = rem.remission(np.full(n, 50), np.ones(n), np.full(n, 0.05), np.full(n, 10.0), rng)
    facing = rem.remission(np.full(n, 50), np.ones(n), np.full(n, 1.0), np.full(n, 10.0), rng)
    assert facing.mean() > 1.3 * grazing.mean()  # incidence
    car = rem.remission(np.full(n, 10), np.ones(n), np.full(n, 1.0), np.full(n, 10.0), rng)
    assert (car == 0).mean() == pytest.approx(rem.MATERIALS[10][1], abs=0.02)
    assert np.median(car[car > 0]) < np.median(facing)  # dark cars, bright facades
    marked = rem.lane_marking(np.array([1.0, 5.0, 1.0]), np.array([0.0, 0.0, 0.5]), [(0.0, True)])
    assert marked.tolist() == [True, False, False]


def test_sensor_tilt_shows_as_ground_slope(kitti_scans):
    seq = SyntheticSequence(SceneConfig(seed=0, style='kitti', **TINY))
    tilt = np.degrees(np.hypot(seq._street['pitch'], seq._street['roll']))
    slope, height = ground_plane(*kitti_scans[0])
    assert slope == pytest.approx(tilt, abs=0.4)
    assert height == pytest.approx(1.73 + seq._street['dh'], abs=0.1)


def test_statistics_and_comparison():
    basic = SyntheticSequence(SceneConfig(seed=1, **TINY))
    scans = [basic.scan(i) for i in range(2)]
    rings = ring_elevations(scans[0][0])
    assert len(rings) == 64
    stats = scan_statistics(scans)
    assert stats['ground_slope_deg'] < 0.05 and stats['n_rings'] == 64
    assert sum(stats['share'].values()) == pytest.approx(1.0, abs=1e-6)
    same = compare_statistics(stats, stats)
    assert same['range_w1_mean'] == 0 and same['remission_w1_mean'] == 0 and not same['missing']
    other = compare_statistics(scan_statistics([SyntheticSequence(SceneConfig(seed=1, style='kitti',
                                                                               **TINY)).scan(0)]), stats)
    assert other['remission_w1_mean'] > 0.01


def test_parallel_writer_matches_serial(tmp_path):
    from pu_ros.data.semantic_dataset import index_frames

    cfg = SceneConfig(n_azimuth=300, render_image=False, style='kitti')
    a = write_dataset(tmp_path / 'a', 5, seed=7, frames_per_sequence=2, workers=0, progress=False, config=cfg)
    b = write_dataset(tmp_path / 'b', 5, seed=7, frames_per_sequence=2, workers=2, progress=False, config=cfg)
    assert a['sequences'] == ['100', '101', '102'] and a['scans'] == 5 and a['points'] == b['points'] > 0
    files = sorted(p.relative_to(tmp_path / 'a') for p in (tmp_path / 'a').rglob('*') if p.is_file())
    assert len(files) == 3 * 3 + 2 * 5
    for rel in files:
        assert (tmp_path / 'a' / rel).read_bytes() == (tmp_path / 'b' / rel).read_bytes(), rel
    refs = index_frames(tmp_path / 'a', ['100', '101', '102'])
    assert [r.name for r in refs] == ['100/000000', '100/000001', '101/000000', '101/000001', '102/000000']
