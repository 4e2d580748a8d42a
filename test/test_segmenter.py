"""Segmenter: numpy in/out, range handling, checkpoint errors, fp16 3D-only weights, fused mode."""

import numpy as np
import pytest
import torch

from pu_ros.inference.segmenter import SegmentationResult, Segmenter
from pu_ros.networks.checkpoint import CheckpointError, export_weights, load_checkpoint, save_checkpoint
from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS


@pytest.fixture(scope='module')
def scene():
    """One synthetic frame (16 beams) with its colour image and calibration."""
    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

    seq = SyntheticSequence(SceneConfig(seed=4, n_frames=1, n_beams=16, n_azimuth=512, image_width=800,
                                        image_height=256))
    f = seq.frame(0)
    return f['points'], f['image'], seq.calib


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A full (3D + 2D) checkpoint of an untrained tiny network and its fp16 3D-only export."""
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp('seg_ckpt')
    cfg = SegmentationConfig(hidden_size=8)
    model = Segmentor2DPASS(cfg)
    with torch.no_grad():  # make BatchNorm statistics non-trivial so eval-mode outputs depend on them
        for name, buf in model.named_buffers():
            if name.endswith('running_var'):
                buf.uniform_(0.5, 2.0)
    full = save_checkpoint(tmp / 'full.pt', model.state_dict(), {'model': cfg.to_dict(), 'train': {}}, {'step': 0})
    w3d = export_weights(load_checkpoint(full), tmp / 'w3d.pt', keep=lambda k: k.startswith('backbone_3d.'),
                         dtype=torch.float16, meta_update={'branches': ['3d']})
    return full, w3d


def test_segment_shapes_and_range(checkpoints, scene):
    points, _, _ = scene
    pts = points.copy()
    pts[:5, 0] = 80.0  # beyond the 50 m range
    pts[5, 2] = np.nan
    seg = Segmenter(checkpoints[0], device='cpu')
    res = seg.segment(pts)
    assert isinstance(res, SegmentationResult)
    n = pts.shape[0]
    assert res.labels.shape == (n,) and res.labels.dtype == np.uint8
    assert res.probs.shape == (n, 20) and res.probs.dtype == np.float32
    assert res.in_range.dtype == bool and not res.in_range[:6].any() and res.in_range[6:].sum() > 0.9 * (n - 6)
    assert (res.labels[~res.in_range] == 0).all() and (res.probs[~res.in_range] == 0).all()
    np.testing.assert_allclose(res.probs[res.in_range].sum(1), 1.0, atol=1e-5)
    assert (res.labels[res.in_range] >= 1).all()  # the ignore class is never predicted
    np.testing.assert_array_equal(res.labels[res.in_range], res.probs[res.in_range][:, 1:].argmax(1) + 1)
    empty = seg.segment(np.zeros((0, 4), np.float32))
    assert empty.labels.shape == (0,) and empty.probs.shape == (0, 20)


def test_non_finite_intensity_is_left_out_like_out_of_range(checkpoints, scene):
    points, _, _ = scene
    pts = points.copy()
    bad = np.array([3, 50, 700, 1500])
    pts[bad[:2], 3] = np.nan
    pts[bad[2], 3] = np.inf
    pts[bad[3], 3] = -np.inf
    seg = Segmenter(checkpoints[0], device='cpu')
    res = seg.segment(pts)
    assert not res.in_range[bad].any() and (res.labels[bad] == 0).all() and (res.probs[bad] == 0).all()
    assert np.isfinite(res.probs).all()
    # the other points are labelled exactly as if the bad ones had never been in the cloud
    ok = np.ones(len(pts), bool)
    ok[bad] = False
    alone = seg.segment(pts[ok])
    np.testing.assert_array_equal(res.in_range[ok], alone.in_range)
    np.testing.assert_array_equal(res.labels[ok], alone.labels)
    np.testing.assert_allclose(res.probs[ok], alone.probs, atol=1e-6)


def test_labels_only_skips_probabilities(checkpoints, scene):
    points, image, calib = scene
    for fused in (False, True):
        seg = Segmenter(checkpoints[0], device='cpu', fused=fused)
        full = seg.segment(points, image=image, calib=calib)
        lean = seg.segment(points, image=image, calib=calib, probs=False)
        assert lean.probs is None and full.probs is not None
        assert lean.labels.dtype == np.uint8
        np.testing.assert_array_equal(lean.labels, full.labels)
        np.testing.assert_array_equal(lean.in_range, full.in_range)
    assert seg.segment(np.zeros((0, 4), np.float32), image=image, calib=calib, probs=False).probs is None


def test_fp16_3d_only_matches_full(checkpoints, scene):
    points, _, _ = scene
    full = Segmenter(checkpoints[0], device='cpu').segment(points)
    half = Segmenter(checkpoints[1], device='cpu')
    assert next(half.model.parameters()).dtype == torch.float32
    assert not hasattr(half.model, 'backbone_2d')
    res = half.segment(points)
    assert np.mean(res.labels == full.labels) > 0.97
    np.testing.assert_allclose(res.probs, full.probs, atol=2e-2)


def test_fused_mode(checkpoints, scene):
    points, image, calib = scene
    seg = Segmenter(checkpoints[0], device='cpu', fused=True)
    res = seg.segment(points, image=image, calib=calib)
    plain = Segmenter(checkpoints[0], device='cpu').segment(points)
    _, _, vis = calib.project(points[:, :3])
    seen = vis & res.in_range
    assert seen.sum() > 50
    np.testing.assert_allclose(res.probs[~seen], plain.probs[~seen], atol=1e-5)  # 3D head outside the camera
    assert not np.allclose(res.probs[seen], plain.probs[seen], atol=1e-4)  # fused head inside it
    with pytest.raises(ValueError, match='image and calib'):
        seg.segment(points)
    with pytest.raises(ValueError, match='3D branch'):
        Segmenter(checkpoints[1], device='cpu', fused=True)


def test_bad_points_and_checkpoints(checkpoints, tmp_path):
    seg = Segmenter(checkpoints[1], device='cpu')
    for bad in (np.zeros((5, 3), np.float32), np.zeros(8, np.float32), np.array([['a'] * 4])):
        with pytest.raises(ValueError, match=r'\(N, 4\)'):
            seg.segment(bad)
    with pytest.raises(FileNotFoundError, match='missing.pt'):
        Segmenter(tmp_path / 'missing.pt', device='cpu')
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(checkpoints[1].read_bytes()[:1000])
    with pytest.raises(ValueError, match='corrupt.pt'):
        Segmenter(corrupt, device='cpu')
    ck = load_checkpoint(checkpoints[1])
    wrong = save_checkpoint(tmp_path / 'wrong.pt', ck['state_dict'],
                            {'model': {**ck['config']['model'], 'hidden_size': 16}}, ck['meta'])
    with pytest.raises(CheckpointError, match='wrong.pt.*does not fit'):
        Segmenter(wrong, device='cpu')


def test_matches_evaluation_path(checkpoints, scene):
    from pu_ros.inference.segmenter import argmax_valid
    from pu_ros.training.eval_segmentation import predict_probs

    points, _, _ = scene
    seg = Segmenter(checkpoints[1], device='cpu')
    res = seg.segment(points)
    inside = points[res.in_range]
    batch = {'points': torch.from_numpy(inside), 'batch_idx': torch.zeros(len(inside), dtype=torch.int64),
             'batch_size': 1}
    with torch.inference_mode():
        pred = argmax_valid(predict_probs(seg.model, batch, seg.cfg, tta=1), 0).numpy()
    np.testing.assert_array_equal(pred, res.labels[res.in_range])


def test_packaged_model_if_present():
    from pu_ros.resources import share_dirs

    path = share_dirs()[0] / 'models' / 'segmentation_2dpass_3d.pt'
    if not path.is_file():
        pytest.skip('models/segmentation_2dpass_3d.pt not present')
    assert path.stat().st_size < 5 * 2**20
    seg = Segmenter(device='cpu')
    assert seg.meta['branches'] == ['3d'] and seg.meta['weights_dtype'] == 'float16'
    pts = np.random.default_rng(0).uniform(-20, 20, (2000, 4)).astype(np.float32)
    pts[:, 2] = np.abs(pts[:, 2]) % 2 - 1.5
    assert seg.segment(pts).labels.shape == (2000,)


@pytest.mark.data
def test_packaged_model_on_real_validation_scan(seq00):
    """The shipped weights segment the held-out real scan 000002 far better than the majority class."""
    from pu_ros.data.kitti import read_labels, read_points
    from pu_ros.data.labels import LabelMap
    from pu_ros.resources import share_dirs

    if not (share_dirs()[0] / 'models' / 'segmentation_2dpass_3d.pt').is_file():
        pytest.skip('models/segmentation_2dpass_3d.pt not present')
    points = read_points(seq00 / 'velodyne' / '000002.bin')
    labels = LabelMap.load().to_learning(read_labels(seq00 / 'labels' / '000002.label'))
    res = Segmenter(device='cpu').segment(points)
    keep = res.in_range & (labels != 0)
    accuracy = np.mean(res.labels[keep] == labels[keep])
    majority = np.bincount(labels[keep]).max() / keep.sum()
    assert accuracy > 0.8 > majority
