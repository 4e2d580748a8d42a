"""Scene mixing (LaserMix, PolarMix, instance paste): points and labels stay aligned, geometry is what it claims."""

import shutil

import numpy as np
import pytest

from pu_ros.data.labels import LabelMap
from pu_ros.data.mixing import (
    MixConfig,
    MixingDataset,
    extract_objects,
    inclination,
    lasermix_select,
    paste_objects,
    polarmix_select,
    rotate_each,
    rotate_paste_select,
)
from pu_ros.data.semantic_dataset import SemanticKittiDataset
from pu_ros.networks.segmentation import SegmentationConfig


def _scan(rng, n, tag_offset):
    """(n, 4) points around the sensor whose intensity is a tag (tag_offset + index); labels derived from tags."""
    r = rng.uniform(3.0, 40.0, n)
    az = rng.uniform(-np.pi, np.pi, n)
    z = rng.uniform(-3.0, 1.5, n)
    pts = np.stack([r * np.cos(az), r * np.sin(az), z, tag_offset + np.arange(n)], 1).astype(np.float32)
    return pts, _label_of(pts[:, 3])


def _label_of(tags):
    return (np.asarray(tags).astype(np.int64) * 7) % 19 + 1


def test_lasermix_bands_and_alignment():
    rng = np.random.default_rng(0)
    a, la = _scan(rng, 5000, 0)
    b, lb = _scan(rng, 4000, 100000)
    for bands in (2, 3, 6):
        ia, ib = lasermix_select(a, b, bands, (-25.0, 3.0), a_first=True)
        mixed = np.concatenate([a[ia], b[ib]])
        labels = np.concatenate([la[ia], lb[ib]])
        assert np.array_equal(labels, _label_of(mixed[:, 3]))  # every label still belongs to its point

        def band(p, k=bands):
            return np.clip(np.floor((inclination(p) + 25.0) / 28.0 * k), 0, k - 1)

        assert np.all(band(a[ia]) % 2 == 0) and np.all(band(b[ib]) % 2 == 1)
        # complementary: every band of a not taken is taken from b
        assert ia.size + np.count_nonzero(band(a) % 2 == 1) == a.shape[0]
        assert ib.size + np.count_nonzero(band(b) % 2 == 0) == b.shape[0]


def test_polarmix_sector_swap_and_rotate_paste():
    rng = np.random.default_rng(1)
    a, la = _scan(rng, 5000, 0)
    b, lb = _scan(rng, 4000, 100000)
    ia, ib = polarmix_select(a, b, start_deg=300.0, width_deg=90.0)  # the sector wraps through 0°
    az_a = np.degrees(np.arctan2(a[ia, 1], a[ia, 0])) % 360
    az_b = np.degrees(np.arctan2(b[ib, 1], b[ib, 0])) % 360
    in_sec = lambda az: (az >= 300) | (az < 30)  # noqa: E731
    assert not in_sec(az_a).any() and in_sec(az_b).all() and ib.size > 0
    assert ia.size + np.count_nonzero(in_sec(np.degrees(np.arctan2(a[:, 1], a[:, 0])) % 360)) == a.shape[0]
    # instance level: only thing classes are copied, each copy keeps range, height and tag
    jb, ang = rotate_paste_select(lb, (1, 2, 3), [0.5, 2.0])
    assert np.isin(lb[jb], (1, 2, 3)).all() and jb.size == 2 * np.isin(lb, (1, 2, 3)).sum()
    moved = rotate_each(b[jb], ang)
    assert np.allclose(np.hypot(moved[:, 0], moved[:, 1]), np.hypot(b[jb, 0], b[jb, 1]), atol=1e-4)
    assert np.array_equal(moved[:, 2:], b[jb, 2:]) and np.array_equal(_label_of(moved[:, 3]), lb[jb])
    assert not np.allclose(moved[:, :2], b[jb, :2])


def test_instance_bank_and_paste_on_ground():
    lm = LabelMap.load()
    rng = np.random.default_rng(2)
    # source scan: a car (raw 10, instance 3) of 200 points and a person (raw 30, instance 4) of 10 (too small)
    car = np.column_stack([rng.uniform(9, 13, 200), rng.uniform(-1, 1, 200), rng.uniform(-1.7, -0.3, 200),
                           np.full(200, 0.5)]).astype(np.float32)
    person = np.column_stack([rng.uniform(5, 5.5, 10), rng.uniform(3, 3.5, 10), rng.uniform(-1.7, 0, 10),
                              np.zeros(10)]).astype(np.float32)
    raw = np.concatenate([np.full(200, 10 | (3 << 16)), np.full(10, 30 | (4 << 16))]).astype(np.uint32)
    bank = extract_objects(np.concatenate([car, person]), raw, lm, min_points=30, name='x')
    assert len(bank) == 1 and bank[0].label == 1 and bank[0].points.shape == (200, 4)
    # target: flat ground at z = -2 (road, learning 9) everywhere, a wall (building, 13) in the +x half-plane
    gx, gy = np.meshgrid(np.arange(-30, 30, 0.5), np.arange(-30, 30, 0.5))
    ground = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, -2.0), np.zeros(gx.size)])
    wall = np.column_stack([rng.uniform(0, 30, 3000), rng.uniform(-30, 30, 3000), rng.uniform(-2, 3, 3000),
                            np.zeros(3000)])
    pts = np.concatenate([ground, wall]).astype(np.float32)
    labels = np.concatenate([np.full(gx.size, 9), np.full(3000, 13)])
    pieces, used = paste_objects(pts, labels, bank, 3, np.random.default_rng(3), tries=50)
    assert 1 <= len(pieces) <= 3 and used == [0] * len(pieces)
    for p in pieces:
        r_src = np.hypot(bank[0].points[:, 0], bank[0].points[:, 1])
        assert np.allclose(np.sort(np.hypot(p[:, 0], p[:, 1])), np.sort(r_src), atol=1e-3)  # range kept
        assert abs(p[:, 2].min() - (-2.0)) < 1e-4  # standing on the ground
        assert np.all(p[:, 0].mean() < 0)  # never inside the wall's half-plane (collision check)


@pytest.fixture(scope='module')
def tagged_root(tiny_root, tmp_path_factory):
    """Copy of the tiny synthetic root whose intensity channel is each point's learning id (a label tag)."""
    root = tmp_path_factory.mktemp('tagged')
    shutil.copytree(tiny_root / 'sequences', root / 'sequences')
    lm = LabelMap.load()
    for lab in sorted((root / 'sequences' / '00' / 'labels').glob('*.label')):
        scan = root / 'sequences' / '00' / 'velodyne' / f'{lab.stem}.bin'
        pts = np.fromfile(scan, np.float32).reshape(-1, 4)
        pts[:, 3] = lm.to_learning(np.fromfile(lab, np.uint32))
        pts.tofile(scan)
    return root


def test_mixing_dataset_keeps_labels_with_points(tagged_root):
    cfg = SegmentationConfig(hidden_size=8, image_size=(128, 256), use_image=True)
    base = SemanticKittiDataset(str(tagged_root), {'00': 'all'}, cfg, train=True, seed=5,
                                augment={'dropout': 0.2})
    mix = MixConfig.from_dict({'lasermix': 1.0, 'polarmix': 1.0, 'instance_paste': 1.0, 'paste_count': [3, 3],
                               'paste_min_points': 5})
    ds = MixingDataset(base, mix, [str(tagged_root)])
    assert len(ds.bank()) > 0
    ds.set_epoch(1)
    foreign = pixels = 0
    for i in range(len(ds)):
        s = ds[i]
        assert np.array_equal(s.points[:, 3].astype(np.int64), s.labels)  # the tag travelled with its label
        n = s.points.shape[0]
        assert s.keep.shape == (n,) and s.labels.shape == (n,)
        own = s.keep >= 0
        foreign += int((~own).sum())
        # pixels only for points of the scan that owns the image: the base sample's pairs of the points kept
        b = base[i]
        assert own[s.pix_point_idx].all() and s.pix_point_idx.size <= b.pix_point_idx.size
        pairs = {(int(k), int(u), int(v)) for k, (u, v) in zip(s.keep[s.pix_point_idx], s.pix_uv)}
        assert pairs <= {(int(k), int(u), int(v)) for k, (u, v) in zip(b.keep[b.pix_point_idx], b.pix_uv)}
        pixels += len(pairs)
        raw = tagged_root / 'sequences' / '00' / 'labels' / f'{s.name.split("/")[1]}.label'
        truth = LabelMap.load().to_learning(np.fromfile(raw, np.uint32)).astype(np.int64)
        assert np.array_equal(truth[s.keep[own]], s.labels[own])
        again = ds[i]  # deterministic for (seed, epoch, index)
        assert np.array_equal(again.points, s.points)
    assert foreign > 0 and pixels > 0


def test_mix_config_errors():
    with pytest.raises(ValueError, match='unknown mixing key'):
        MixConfig.from_dict({'laser_mix': 0.5})
    with pytest.raises(ValueError, match='probability'):
        MixConfig.from_dict({'polarmix': 1.5})
    with pytest.raises(ValueError, match='lo <= hi'):
        MixConfig.from_dict({'paste_count': [4, 1]})
    assert not MixConfig.from_dict({}).active and MixConfig.from_dict({'lasermix': 0.5}).active


@pytest.mark.slow
def test_mixing_and_init_from_under_torchrun(tiny_root, tmp_path):
    """The self-training recipe's options (train.mixing, train.init_from) under two Gloo processes (torchrun)."""
    import os
    import subprocess
    import sys

    import torch

    from pu_ros.networks.checkpoint import load_checkpoint, save_checkpoint
    from pu_ros.networks.segmentation import Segmentor2DPASS

    torch.manual_seed(0)
    cfg = SegmentationConfig(hidden_size=8, use_image=False)
    init = Segmentor2DPASS(cfg).state_dict()
    save_checkpoint(tmp_path / 'init.pt', init, {'model': cfg.to_dict(), 'train': {}}, {'step': 0})
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    for name in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(name, None)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'pu_ros.cli',
           'train', 'segmentation', '--data', str(tiny_root), '--out', str(tmp_path / 'ddp'), '--max-steps', '1',
           '--device', 'cpu', '--no-progress', '--set', 'model.hidden_size=8', '--set', 'model.use_image=false',
           '--set', 'train.batch_size=1', '--set', 'train.num_workers=0', '--set', 'train.warmup_steps=0',
           '--set', 'train.lr=0.0', '--set', "train.split={train: {'00': all}}",
           '--set', 'train.mixing={lasermix: 1.0, polarmix: 1.0, instance_paste: 1.0, paste_min_points: 5}',
           '--set', f'train.init_from={tmp_path / "init.pt"}']
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = load_checkpoint(tmp_path / 'ddp' / 'last.pt')
    assert out['meta']['world_size'] == 2 and out['config']['train']['mixing']['lasermix'] == 1.0
    # lr 0: the weights are the initial ones (init_from loaded on both ranks), BatchNorm buffers aside
    w = 'backbone_3d.classifier.weight' if 'backbone_3d.classifier.weight' in init else next(
        k for k in init if k.endswith('weight') and init[k].dim() == 2)
    assert torch.equal(out['state_dict'][w].float(), init[w].float())
