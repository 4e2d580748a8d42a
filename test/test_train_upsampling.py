"""PU-Flow training: synthetic shapes, patch pairs, one tiny training step, resume, LiDAR mode, config errors."""

import numpy as np
import pytest

from pu_ros.data.meshes import point_to_mesh_distance
from pu_ros.data.shapes import random_shape, superquadric, torus


def test_shapes_are_closed_unit_meshes():
    assert superquadric().area() == pytest.approx(4 * np.pi, rel=0.01)
    assert torus(1.0, 0.3).area() == pytest.approx(4 * np.pi ** 2 * 0.3, rel=0.01)
    a, b = random_shape(3), random_shape(3)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    r = np.linalg.norm(a.vertices - a.vertices.mean(0), axis=1)
    assert r.max() == pytest.approx(1.0)
    assert not np.array_equal(random_shape(4).vertices[:10], a.vertices[:10])


def test_patch_pairs_share_a_region():
    import torch

    from pu_ros.training.upsampling_data import mesh_pool, sample_batch

    mesh = random_shape(1)
    pool = mesh_pool([mesh], [4], 1024, seed=0)
    assert pool.items[0]['gt'].shape == (1024, 3) and pool.items[0]['inputs'][4].shape == (256, 3)
    inp, gt = sample_batch(pool, 3, 4, 32, np.random.default_rng(0), {'rotate': False})
    assert inp.shape == (3, 32, 3) and gt.shape == (3, 128, 3)
    assert torch.allclose(inp.mean(1), torch.zeros(3, 3), atol=1e-5)
    assert float(inp.norm(dim=-1).amax()) == pytest.approx(1.0, abs=1e-5)
    assert float(gt.norm(dim=-1).amax()) < 2.0  # the same neighbourhood, same normalisation


def _args(tmp_path, *extra):
    return ['train', 'upsampling', '--out', str(tmp_path / 'run'), '--device', 'cpu', '--no-progress',
            '--set', 'train.mesh.shapes=1', '--set', 'train.mesh.gt_points=512', '--set', 'train.batch_size=2',
            '--set', 'train.patch_size=32', '--set', 'train.log_interval=1', '--set', 'train.warmup_steps=0',
            '--set', 'model.num_blocks=2', '--set', 'model.feat_channels=[8,8]', '--set', 'model.growth=[4,4]',
            '--set', 'model.cond_channels=[8,8]', '--set', 'model.hidden=8', *extra]


def test_one_step_then_resume_and_export(tmp_path, capsys):
    import json

    from pu_ros.cli import main
    from pu_ros.networks.checkpoint import load_checkpoint

    assert main(_args(tmp_path, '--max-steps', '1')) == 0
    first = load_checkpoint(tmp_path / 'run' / 'last.pt')
    assert first['step'] == 1 and 'optimizer' in first and (tmp_path / 'run' / 'pool.npz').exists()
    assert np.isfinite(first['meta']['metrics']['total'])
    capsys.readouterr()
    out = tmp_path / 'w.pt'
    assert main(_args(tmp_path, '--max-steps', '2', '--resume', str(tmp_path / 'run' / 'last.pt'),
                      '--export', str(out))) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['step'] == 2
    second = load_checkpoint(tmp_path / 'run' / 'last.pt')
    assert second['scheduler']['step_count'] == 2
    changed = [k for k in first['state_dict'] if not np.array_equal(first['state_dict'][k].numpy(),
                                                                     second['state_dict'][k].numpy())]
    assert changed  # the resumed step trained
    exported = load_checkpoint(out)
    assert 'optimizer' not in exported and exported['config']['model']['num_blocks'] == 2
    from pu_ros.networks.upsampling import load_puflow

    net, _ = load_puflow(out)
    import torch

    with torch.no_grad():
        dense = net.upsample(torch.rand(1, 40, 3), 4)
    assert dense.shape == (1, 160, 3) and torch.isfinite(dense).all()


def test_lidar_pool_decimates_synthetic_scans():
    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence
    from pu_ros.training.upsampling_data import lidar_pool, sample_batch

    pts, _ = SyntheticSequence(SceneConfig(n_beams=64, n_azimuth=300, n_frames=1, render_image=False)).scan(0)
    pool = lidar_pool([('s', pts)], [2, 4], max_range=50.0)
    full = len(pool.items[0]['gt'])
    assert 0.4 < len(pool.items[0]['inputs'][2]) / full < 0.6
    assert 0.15 < len(pool.items[0]['inputs'][4]) / full < 0.35
    inp, gt = sample_batch(pool, 2, 4, 64, np.random.default_rng(1), {'rotate': True})
    assert inp.shape == (2, 64, 3) and gt.shape == (2, 256, 3)


def test_bad_config_is_one_line_exit_2(tmp_path, capsys):
    from pu_ros.cli import main

    assert main(_args(tmp_path, '--set', 'train.mode=voxels')) == 2
    assert 'train.mode' in capsys.readouterr().err
    assert main(_args(tmp_path, '--set', 'train.ratios=[40]')) == 2


def test_poisson_points_are_on_the_shape():
    from pu_ros.data.meshes import sample_poisson_disk

    mesh = random_shape(2)
    assert point_to_mesh_distance(sample_poisson_disk(mesh, 300, seed=1), mesh).max() < 1e-5
