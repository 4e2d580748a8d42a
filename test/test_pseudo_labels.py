"""Self-training pseudo-labels: class-balanced thresholds, box labels, SemanticKITTI-layout output the dataset reads."""

import json

import numpy as np
import pytest
import torch

from pu_ros import cli
from pu_ros.data.kitti import ObjectLabel
from pu_ros.data.labels import LabelMap
from pu_ros.data.semantic_dataset import SemanticKittiDataset
from pu_ros.geometry.calibration import Calibration
from pu_ros.networks.checkpoint import save_checkpoint
from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS
from pu_ros.training.pseudo_labels import (
    _teacher_probs,
    apply_thresholds,
    class_thresholds,
    parse_frames,
    points_in_boxes,
)


def test_class_thresholds_keep_a_fraction_per_class():
    pred = np.array([1] * 10 + [2] * 4)
    conf = np.concatenate([np.linspace(0.1, 1.0, 10), [0.2, 0.3, 0.35, 0.4]])
    thr = class_thresholds(pred, conf, 4, keep_fraction=0.5, min_confidence=0.25, max_confidence=0.9)
    assert thr[1] == pytest.approx(np.quantile(conf[:10], 0.5))  # half of class 1 kept
    assert thr[2] == pytest.approx(0.325)  # the quantile of the rare, unsure class, above the floor
    assert thr[0] == thr[3] == 0.9  # never predicted: the cap
    out = apply_thresholds(pred, conf, thr)
    assert np.count_nonzero(out[:10]) == 5 and np.count_nonzero(out[10:]) == 2
    assert set(np.unique(out)) <= {0, 1, 2}
    floor = class_thresholds(pred, conf, 4, keep_fraction=1.0, min_confidence=0.25)
    assert floor[2] == 0.25  # the floor wins over a lower quantile
    with pytest.raises(ValueError):
        class_thresholds(pred, conf, 4, keep_fraction=0.0, min_confidence=0.5)


def test_points_in_boxes_camera_convention():
    # LiDAR frame = rectified camera frame here (identity); box 4 m long along camera z after ry = pi/2
    calib = Calibration(np.hstack([np.eye(3), np.zeros((3, 1))]), np.eye(4), 100, 100)
    box = ObjectLabel('Car', 0.0, 0, 0.0, np.zeros(4), np.array([1.5, 2.0, 4.0]), np.array([0.0, 1.5, 10.0]),
                      np.pi / 2)
    ped = ObjectLabel('Pedestrian', 0.0, 0, 0.0, np.zeros(4), np.array([1.8, 0.6, 0.6]), np.array([5.0, 1.5, 5.0]),
                      0.0)
    dont = ObjectLabel('DontCare', 0.0, 0, 0.0, np.zeros(4), np.ones(3), np.array([0.0, 1.5, 10.0]), 0.0)
    pts = np.array([[0.0, 0.75, 11.8], [1.8, 0.75, 10.0], [0.0, 1.45, 10.0], [0.0, -0.1, 10.0], [5.1, 0.5, 5.1],
                    [0.3, 1.0, 8.5]], np.float32)
    ids = points_in_boxes(pts, calib, [box, ped, dont])
    assert ids.tolist() == [10, 0, 0, 0, 30, 10]  # inside, beside, ground margin, above, pedestrian, inside


def test_parse_frames():
    have = ['000001', '000003', '000004']
    assert parse_frames('3-4', have) == ['000003', '000004']
    assert parse_frames(None, have) == have and parse_frames('1,4', have) == ['000001', '000004']
    with pytest.raises(ValueError, match='not found'):
        parse_frames('2', have)


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    cfg = SegmentationConfig(hidden_size=8, use_image=False)
    model = Segmentor2DPASS(cfg)
    path = tmp_path_factory.mktemp('teacher') / 'teacher.pt'
    save_checkpoint(path, model.state_dict(), {'model': cfg.to_dict(), 'train': {}}, {'step': 0})
    return path


def test_pseudo_label_cli_writes_a_dataset(teacher, tiny_root, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / 'pseudo'
    seq = tiny_root / 'sequences' / '00'
    assert cli.main(['train', 'pseudo-labels', '--checkpoint', str(teacher), '--data', str(seq), '--frames', '0-1',
                     '--sequence', '50', '--out', str(out), '--keep-fraction', '0.5', '--min-confidence', '0.0',
                     '--no-progress', '--device', 'cpu']) == 0
    summary = json.loads(capsys.readouterr().out)
    folder = out / 'sequences' / '50'
    assert sorted(p.name for p in (folder / 'labels').glob('*.label')) == ['000000.label', '000001.label']
    assert (folder / 'velodyne' / '000000.bin').is_symlink() and (folder / 'image_2' / '000000.png').exists()
    assert json.loads((folder / 'pseudo_labels.json').read_text())['thresholds'] == summary['thresholds']
    # the ordinary dataset reads it; labelled points carry the teacher's prediction, about half are left out
    cfg = SegmentationConfig(hidden_size=8, use_image=False)
    ds = SemanticKittiDataset(str(out), {'50': 'all'}, cfg, train=False)
    assert len(ds) == 2
    from pu_ros.inference.segmenter import load_segmentor

    model, mcfg, _ = load_segmentor(teacher, 'cpu')
    lm = LabelMap.load()
    for i, fid in enumerate(('000000', '000001')):
        pts = np.fromfile(seq / 'velodyne' / f'{fid}.bin', np.float32).reshape(-1, 4)
        raw = np.fromfile(folder / 'labels' / f'{fid}.label', np.uint32)
        assert raw.shape == (pts.shape[0],) and np.all(raw >> 16 == 0)
        learn = lm.to_learning(raw)
        probs, inside = _teacher_probs(model, mcfg, pts, 'cpu', 1)
        lab = learn != 0
        assert not lab[~inside].any() and 0.3 < lab[inside].mean() < 0.7
        probs[:, 0] = -1
        assert np.array_equal(learn[lab], probs.argmax(1)[lab])
        assert np.array_equal(ds[i].labels, learn[ds[i].keep])
    # the synthetic scans have ground truth: the labels are scored; a second run can reuse the thresholds
    gt = summary['ground_truth']
    assert gt['kept'] < gt['points'] and 0.0 <= gt['accuracy_kept'] <= 1.0 and 0.0 <= gt['accuracy_all'] <= 1.0
    assert cli.main(['train', 'pseudo-labels', '--checkpoint', str(teacher), '--data', str(seq), '--frames', '2',
                     '--sequence', '52', '--out', str(out), '--thresholds', str(folder / 'pseudo_labels.json'),
                     '--no-progress', '--device', 'cpu']) == 0
    assert json.loads(capsys.readouterr().out)['thresholds'] == summary['thresholds']
    assert cli.main(['train', 'pseudo-labels', '--checkpoint', str(teacher), '--data', str(seq), '--frames', '7',
                     '--sequence', '50', '--out', str(out), '--device', 'cpu']) == 2
    assert 'not found' in capsys.readouterr().err


@pytest.mark.data
def test_object_frames_with_boxes(teacher, shared_data, tmp_path, capsys):
    torch.set_num_threads(1)
    src = shared_data / 'kitti_object' / 'training'
    assert cli.main(['train', 'pseudo-labels', '--checkpoint', str(teacher), '--data', str(src), '--frames', '8',
                     '--sequence', '51', '--out', str(tmp_path), '--boxes', '--no-progress', '--device', 'cpu']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['box_points'] > 100  # the six cars of frame 000008
    folder = tmp_path / 'sequences' / '51'
    raw = np.fromfile(folder / 'labels' / '000008.label', np.uint32)
    assert np.count_nonzero(raw == 10) >= summary['box_points']
    # the converted calibration projects like the object layout's P2 · R0_rect · Tr_velo_to_cam
    from pu_ros.data.kitti import open_kitti

    obj = open_kitti(src, camera='image_2')
    odo = open_kitti(folder, camera='image_2')
    pts = odo[0].points[:50, :3]
    assert np.allclose(odo.calib_for(0).project(pts)[0], obj.calib_for(1).project(pts)[0], atol=1e-3)
