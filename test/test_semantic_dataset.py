"""SemanticKITTI-layout dataset: splits, determinism, image correspondences, augmentation, collate."""

import shutil

import numpy as np
import pytest

from pu_ros.data.semantic_dataset import (
    AugmentConfig,
    SemanticKittiDataset,
    SplitError,
    collate,
    index_frames,
    parse_split,
    select_pixel_points,
    transform_points,
)
from pu_ros.geometry.projection import normalize_image, pixels_in_image
from pu_ros.networks.segmentation import SegmentationConfig

CFG = SegmentationConfig(hidden_size=8, image_size=(64, 128))


def test_parse_split_forms():
    assert parse_split(['0', '08']) == {'00': None, '08': None}
    assert parse_split({'00': ['1', 2], 1: 'all'}) == {'00': ['000001', '000002'], '01': None}
    assert parse_split('00/000002,00/000001,05') == {'00': ['000001', '000002'], '05': None}
    with pytest.raises(SplitError):
        parse_split('x1')
    with pytest.raises(SplitError):
        parse_split([])


def test_index_frames_errors(tiny_root):
    assert [r.name for r in index_frames(tiny_root, ['00'])] == ['00/000000', '00/000001', '00/000002']
    with pytest.raises(SplitError, match='000007'):
        index_frames(tiny_root, {'00': ['000007']})
    with pytest.raises(SplitError, match='05'):
        index_frames(tiny_root, ['05'])
    with pytest.raises(SplitError, match='sequences'):
        index_frames(tiny_root / 'sequences' / '00' / 'velodyne', ['00'])


def test_eval_sample_keeps_every_in_range_point(tiny_root):
    ds = SemanticKittiDataset(tiny_root, '00/000001', CFG, train=False)
    s = ds[0]
    lo, hi = np.array(CFG.point_range[:3]), np.array(CFG.point_range[3:])
    assert s.points.dtype == np.float32 and s.points.shape[1] == 4
    assert np.all(s.points[:, :3] >= lo) and np.all(s.points[:, :3] < hi)
    assert s.points.shape[0] + s.num_out_of_range == s.num_total
    assert s.out_of_range_labels.shape == (s.num_out_of_range,)
    assert s.image.shape == (3, 256, 800)  # full image in evaluation
    assert s.pix_point_idx.size > 100
    assert s.pix_uv[:, 0].max() < 800 and s.pix_uv[:, 1].max() < 256 and s.pix_uv.min() >= 0
    assert np.all(np.diff(s.keep) > 0)  # original order preserved


def test_training_sample_is_deterministic_and_augmented(tiny_root):
    ds = SemanticKittiDataset(tiny_root, ['00'], CFG, train=True, seed=5, augment={'dropout': 0.2})
    a, b = ds[1], ds[1]
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.pix_uv, b.pix_uv)
    assert a.image.shape == (3, 64, 128)
    assert a.pix_uv[:, 0].max() < 128 and a.pix_uv[:, 1].max() < 64
    ds.set_epoch(1)
    c = ds[1]
    assert c.points.shape != a.points.shape or not np.array_equal(c.points, a.points)
    ev = SemanticKittiDataset(tiny_root, ['00'], CFG, train=False)[1]
    assert a.points.shape[0] < ev.points.shape[0]  # dropout removed points
    # the augmented points are a rigid+scale transform of the originals: pairwise distances scale uniformly
    orig = ev.points[np.searchsorted(ev.keep, a.keep[:50])]
    d_aug = np.linalg.norm(a.points[:50, None, :3] - a.points[None, :50, :3], axis=-1)
    d_org = np.linalg.norm(orig[:, None, :3] - orig[None, :, :3], axis=-1)
    ratio = d_aug[d_org > 1] / d_org[d_org > 1]
    assert ratio.std() < 1e-3 and 0.94 < ratio.mean() < 1.06


def test_image_flip_moves_correspondences_with_the_image(tiny_root):
    base = {'color_jitter': 0.0}
    cfg = SegmentationConfig(hidden_size=8, image_size=(200, 400))
    plain = SemanticKittiDataset(tiny_root, ['00'], cfg, train=True, seed=1, augment={**base, 'image_hflip': 0.0})[0]
    flip = SemanticKittiDataset(tiny_root, ['00'], cfg, train=True, seed=1, augment={**base, 'image_hflip': 1.0})[0]
    np.testing.assert_array_equal(plain.pix_point_idx, flip.pix_point_idx)
    assert plain.pix_uv.shape[0] > 50
    np.testing.assert_array_equal(flip.pix_uv[:, 0], 399 - plain.pix_uv[:, 0])
    px_plain = plain.image[:, plain.pix_uv[:, 1], plain.pix_uv[:, 0]]
    px_flip = flip.image[:, flip.pix_uv[:, 1], flip.pix_uv[:, 0]]
    np.testing.assert_array_equal(px_plain, px_flip)


def test_grey_image_fallback_and_no_image(tiny_root, tmp_path):
    from PIL import Image

    seq = tmp_path / 'sequences' / '07'
    shutil.copytree(tiny_root / 'sequences' / '00', seq)
    (seq / 'image_0').mkdir()
    for p in sorted((seq / 'image_2').glob('*.png')):
        Image.open(p).convert('L').save(seq / 'image_0' / p.name)
    (seq / 'image_2' / '000001.png').unlink()  # frame 1: grey only
    ds = SemanticKittiDataset(tmp_path, ['07'], CFG, train=False)
    assert ds[0].image_source == 'image_2'
    s = ds[1]
    assert s.image_source == 'image_0'
    np.testing.assert_allclose(s.image[0] * 0.229 + 0.485, s.image[1] * 0.224 + 0.456, atol=1e-5)
    no_img = SemanticKittiDataset(tmp_path, ['07'], CFG, train=False, use_image=False)[1]
    assert no_img.image is None and no_img.pix_point_idx.size == 0
    batch = collate([no_img])
    assert 'images' not in batch


def test_collate_offsets(tiny_root):
    ds = SemanticKittiDataset(tiny_root, ['00'], CFG, train=True)
    s0, s1 = ds[0], ds[1]
    b = collate([s0, s1])
    n0 = s0.points.shape[0]
    assert b['batch_size'] == 2 and b['points'].shape[0] == n0 + s1.points.shape[0]
    assert (b['batch_idx'][:n0] == 0).all() and (b['batch_idx'][n0:] == 1).all()
    m0 = s0.pix_point_idx.size
    np.testing.assert_array_equal(b['pix_point_idx'][m0:].numpy(), s1.pix_point_idx + n0)
    assert tuple(b['images'].shape) == (2, 3, 64, 128)
    assert b['labels'].dtype.is_floating_point is False


def test_augment_config_validation_and_transform():
    with pytest.raises(ValueError, match='rotat'):
        AugmentConfig.from_dict({'rotation': True})
    with pytest.raises(ValueError):
        AugmentConfig.from_dict({'flip_x': 2})
    pts = np.array([[1.0, 2.0, 3.0, 0.5]], np.float32)
    out = transform_points(pts, angle=np.pi / 2, flip_x=True, scale=2.0, translation=(1, 0, 0))
    np.testing.assert_allclose(out, [[1 - 4.0, -2.0, 6.0, 0.5]], atol=1e-5)


@pytest.mark.data
def test_real_scans_colour_then_grey(seq00):
    root = seq00.parent.parent
    ds = SemanticKittiDataset(root, '00/000000,00/000001', SegmentationConfig(), train=False)
    s0, s1 = ds[0], ds[1]
    assert (s0.image_source, s1.image_source) == ('image_2', 'image_0')
    assert s0.image.shape == (3, 376, 1241) and s0.pix_point_idx.size > 10000
    assert s0.num_out_of_range > 0 and s0.points.shape[0] + s0.num_out_of_range == s0.num_total
    assert np.bincount(s0.labels, minlength=20)[9] > 10000  # plenty of road


def test_pixels_in_image_window_and_normalize_image():
    from pu_ros.geometry.calibration import Calibration

    # camera looking along LiDAR +x: u = 10 * (-y / x) + 20, v = 10 * (-z / x) + 10, image 40 x 20
    T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    calib = Calibration(P=np.array([[10, 0, 20, 0], [0, 10, 10, 0], [0, 0, 1, 0]], float), T_cam_lidar=T,
                        width=40, height=20)
    pts = np.array([[1, 0, 0, 0], [-1, 0, 0, 0], [1, -1.05, 0, 0], [1, 0.05, 0.05, 0], [1, -1.95, -0.95, 0]],
                   np.float32)  # centre, behind, right, up-left (floor of 19.5, 9.5), far corner
    idx, uv = pixels_in_image(pts, calib, 20, 40)
    np.testing.assert_array_equal(idx, [0, 2, 3, 4])
    np.testing.assert_array_equal(uv, [[20, 10], [30, 10], [19, 9], [39, 19]])
    assert idx.dtype == np.int64 and uv.dtype == np.int64
    idx, uv = pixels_in_image(pts, calib, 5, 15, origin=(20, 10))  # crop: columns 20..34, rows 10..14
    np.testing.assert_array_equal(idx, [0, 2])
    np.testing.assert_array_equal(uv, [[0, 0], [10, 0]])
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 1] = [255, 0, 51]
    norm = normalize_image(img)
    assert norm.shape == (3, 2, 3) and norm.dtype == np.float32 and norm.flags.c_contiguous
    np.testing.assert_allclose(norm[:, 0, 1], (np.array([1.0, 0.0, 0.2]) - [0.485, 0.456, 0.406])
                               / [0.229, 0.224, 0.225], rtol=1e-5)
    np.testing.assert_allclose(normalize_image(img.astype(np.float32) / 255.0), norm, rtol=1e-6)
    with pytest.raises(ValueError, match='H, W, 3'):
        normalize_image(np.zeros((4, 4), np.uint8))


def test_select_pixel_points_numpy_and_torch():
    import torch

    pix = np.array([0, 2, 3, 5], np.int64)
    uv = np.arange(8, dtype=np.int64).reshape(4, 2)
    kept = np.array([1, 3, 5], np.int64)  # points 1, 3, 5 remain as 0, 1, 2
    idx, sel = select_pixel_points(pix, uv, kept, 6)
    np.testing.assert_array_equal(idx, [1, 2])
    np.testing.assert_array_equal(sel, [[4, 5], [6, 7]])
    t_idx, t_sel = select_pixel_points(torch.from_numpy(pix), torch.from_numpy(uv), torch.from_numpy(kept), 6)
    assert isinstance(t_idx, torch.Tensor)
    np.testing.assert_array_equal(t_idx.numpy(), idx)
    np.testing.assert_array_equal(t_sel.numpy(), sel)
    empty, _ = select_pixel_points(np.zeros(0, np.int64), np.zeros((0, 2), np.int64), kept, 6)
    assert empty.shape == (0,)
