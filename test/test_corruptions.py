"""LiDAR corruptions: determinism, severity order, labels aligned with points, ring recovery, CE/RR formulas, CLI."""

import numpy as np
import pytest

from pu_ros.data.corruptions import CORRUPTIONS, corrupt, ground_mask, parse_corruption, ring_index
from pu_ros.data.synthetic import SceneConfig, SyntheticSequence, hdl64_elevations


@pytest.fixture(scope='module')
def scan():
    """A basic synthetic scan (64 exact beams, 400 azimuth steps); labels = point index + 1 (a tag, 0 = added)."""
    points, raw = SyntheticSequence(SceneConfig(seed=2, n_frames=1, n_azimuth=400, render_image=False)).scan(0)
    return points, np.arange(1, points.shape[0] + 1, dtype=np.int64), raw


def _distortion(points, c):
    """Dropped share + added share + mean displacement (m) + mean |remission change| of the survivors."""
    src = c.source[c.source >= 0]
    surv = c.points[: src.size]
    return (1 - src.size / len(points) + c.num_added / len(points)
            + np.abs(surv[:, :3] - points[src, :3]).sum(1).mean() + np.abs(surv[:, 3] - points[src, 3]).mean())


def test_parse_corruption():
    assert parse_corruption('fog') == ('fog', 2)
    assert parse_corruption('Cross-Sensor:3') == ('cross_sensor', 3)
    for bad in ('haze', 'fog:4', 'fog:x'):
        with pytest.raises(ValueError):
            parse_corruption(bad)


@pytest.mark.parametrize('name', CORRUPTIONS)
def test_corruption_properties(scan, name):
    points, tags, _ = scan
    prev = -1.0
    for level in (1, 2, 3):
        c = corrupt(points, tags, name, level, seed=5)
        again = corrupt(points, tags, name, level, seed=5)
        np.testing.assert_array_equal(c.points, again.points)  # deterministic for a seed
        np.testing.assert_array_equal(c.labels, again.labels)
        assert c.points.dtype == np.float32 and c.points.shape[1] == 4
        assert c.labels.shape == c.source.shape == (c.points.shape[0],)
        # labels aligned: a survivor carries its own tag, an added point the ignore label; survivors first
        surv = c.source >= 0
        assert np.all(c.labels[surv] == tags[c.source[surv]]) and np.all(c.labels[~surv] == 0)
        k = int(surv.sum())
        assert surv[:k].all() and not surv[k:].any()
        assert np.unique(c.source[surv]).size == surv.sum() and np.all(np.diff(c.source[surv]) > 0)
        if name not in ('motion_blur', 'snow'):  # these move points; the others keep their positions
            np.testing.assert_array_equal(c.points[surv, :3], points[c.source[surv], :3])
        assert np.all(np.isfinite(c.points)) and c.points[:, 3].min() >= 0
        d = _distortion(points, c)
        assert d > prev, (name, level, d, prev)  # higher level, stronger corruption
        prev = d
    if name != 'cross_sensor':  # the only corruption without randomness
        other = corrupt(points, tags, name, 3, seed=6)
        assert other.points.shape != c.points.shape or not np.array_equal(other.points, c.points)


def test_added_points_lie_on_the_rays_they_replace(scan):
    points, tags, _ = scan
    for name in ('fog', 'snow', 'crosstalk'):
        c = corrupt(points, tags, name, 3, seed=1)
        added = c.points[c.source < 0, :3]
        assert added.shape[0] > 0
        lost = np.setdiff1d(np.arange(len(points)), c.source[c.source >= 0])
        d_added = added / np.linalg.norm(added, axis=1, keepdims=True)
        d_lost = points[lost, :3] / np.linalg.norm(points[lost, :3], axis=1, keepdims=True)
        # every added point shares its direction with a lost point
        cos = (d_added[:200] @ d_lost.T).max(axis=1)
        assert cos.min() > 1 - 1e-6


def test_ring_index_recovers_the_beams(scan):
    points = scan[0]
    el = np.degrees(np.arctan2(points[:, 2], np.linalg.norm(points[:, :2], axis=1)))
    true = np.abs(el[:, None] - np.degrees(hdl64_elevations(64))[None]).argmin(1)
    assert (ring_index(points) == true).mean() > 0.99
    sparse = corrupt(points, scan[1], 'cross_sensor', 1)
    assert np.unique(true[sparse.source]).size == 32
    sixteen = corrupt(points, scan[1], 'cross_sensor', 2)
    assert np.unique(true[sixteen.source]).size == 16


def test_ground_mask_finds_the_road(scan):
    points, _, raw = scan
    cls = raw & 0xFFFF
    g = ground_mask(points)
    assert g[cls == 40].mean() > 0.98 and g[cls == 50].mean() < 0.15 and g[cls == 10].mean() < 0.15


def test_ce_and_rr_formulas():
    from pu_ros.training.robustness import summarise

    model = {'clean': {'miou': 0.6}, 'runs': {('fog', 1): {'miou': 0.5}, ('fog', 2): {'miou': 0.4},
                                              ('fog', 3): {'miou': 0.3}}}
    base = {'clean': {'miou': 0.5}, 'runs': {('fog', 1): {'miou': 0.4}, ('fog', 2): {'miou': 0.3},
                                             ('fog', 3): {'miou': 0.2}}}
    s = summarise(model, base)
    assert s['rows']['fog']['ce'] == pytest.approx(100 * (0.5 + 0.6 + 0.7) / (0.6 + 0.7 + 0.8))
    assert s['rows']['fog']['rr'] == pytest.approx(100 * 1.2 / 1.8)
    assert summarise(model, model)['mce'] == pytest.approx(100.0)


def test_cli_rejects_bad_corruption(tmp_path, capsys):
    from pu_ros import cli

    ckpt = tmp_path / 'none.pt'
    assert cli.main(['eval', 'robustness', '--checkpoint', str(ckpt), '--data', str(tmp_path)]) == 2
    assert 'no such checkpoint' in capsys.readouterr().err
    assert cli.main(['eval', 'robustness', '--checkpoint', str(ckpt), '--data', str(tmp_path),
                     '--corruptions', 'haze']) == 2
    assert 'unknown corruption' in capsys.readouterr().err


@pytest.mark.slow
def test_eval_segmentation_with_corruption(tmp_path):
    """The packaged model on a small synthetic sequence, clean and with crosstalk: fewer scored points, same scan."""
    import json
    from pathlib import Path

    from pu_ros import cli
    from pu_ros.data.synthetic import write_sequence

    ckpt = Path(__file__).resolve().parents[1] / 'models' / 'segmentation_2dpass_3d.pt'
    if not ckpt.is_file():
        pytest.skip('packaged model missing')
    write_sequence(tmp_path / 'd' / 'sequences' / '90', SceneConfig(seed=1, n_frames=1, n_azimuth=300,
                                                                     render_image=False), progress=False)
    common = ['eval', 'segmentation', '--checkpoint', str(ckpt), '--data', str(tmp_path / 'd'), '--frames', '90',
              '--device', 'cpu', '--no-progress']
    assert cli.main(common + ['--out', str(tmp_path / 'clean')]) == 0
    assert cli.main(common + ['--out', str(tmp_path / 'ct'), '--corruption', 'crosstalk:3']) == 0
    clean = json.loads((tmp_path / 'clean' / 'metrics.json').read_text())
    ct = json.loads((tmp_path / 'ct' / 'metrics.json').read_text())
    assert clean['corruption'] is None and ct['corruption'] == 'crosstalk:3'
    # 6 % of the returns replaced by ghosts: the ghosts are ignored, the replaced points are not scored
    assert ct['evaluated_points'] == pytest.approx(0.94 * clean['evaluated_points'], rel=0.02)


def test_stored_baseline_results(tmp_path):
    import json

    from pu_ros.training.robustness import load_results

    path = tmp_path / 'robustness.json'
    path.write_text(json.dumps({'checkpoint': 'old.pt', 'frames': '00/000002', 'seed': 0, 'clean': {'miou': 0.5},
                                'runs': {'fog:1': {'miou': 0.4}, 'fog:2': {'miou': 0.3}}}))
    base = load_results(path, '00/000002', 0, [('fog', 1), ('fog', 2)])
    assert base['runs'][('fog', 2)]['miou'] == 0.3 and base['checkpoint'] == 'old.pt'
    with pytest.raises(ValueError, match='seed'):
        load_results(path, '00/000002', 1, [('fog', 1)])
    with pytest.raises(ValueError, match='fog:3'):
        load_results(path, '00/000002', 0, [('fog', 3)])
