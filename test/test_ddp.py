"""DDP training with spconv layers: two Gloo CPU processes under torchrun write a checkpoint like a single process."""

import os
import subprocess
import sys

import pytest
import torch

from pu_ros import cli
from pu_ros.networks.checkpoint import load_checkpoint
from pu_ros.training.distributed import DistInfo, env_world, init_distributed

SPLIT = "train.split={train: {'00': ['000000', '000001', '000002']}}"
ARGS = ['--set', 'model.hidden_size=8', '--set', 'model.image_size=[64,128]', '--set', 'train.batch_size=1',
        '--set', 'train.num_workers=0', '--set', SPLIT, '--device', 'cpu', '--max-steps', '2', '--no-progress']


def test_single_process_without_torchrun(monkeypatch):
    for name in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK'):
        monkeypatch.delenv(name, raising=False)
    assert env_world() == (0, 0, 1)
    info = init_distributed('cpu')
    assert info == DistInfo() and info.is_main and not info.distributed
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', '5')
    with pytest.raises(ValueError, match='RANK=5'):
        env_world()


def _structure(ckpt):
    return {
        'top': sorted(ckpt),
        'state': {k: (tuple(v.shape), v.dtype) for k, v in ckpt['state_dict'].items()},
        'model': ckpt['config']['model'],
        'train': sorted(ckpt['config']['train']),
        'meta': sorted(ckpt['meta']),
        'optimizer': sorted(ckpt['optimizer']),
    }


@pytest.mark.slow
def test_two_gloo_processes_match_single_process_format(tiny_root, tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    for name in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(name, None)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'pu_ros.cli',
           'train', 'segmentation', '--data', str(tiny_root), '--out', str(tmp_path / 'ddp'), *ARGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_checkpoint(tmp_path / 'ddp' / 'last.pt')
    assert ddp['step'] == 2 and ddp['meta']['world_size'] == 2
    assert not any(k.startswith('module.') for k in ddp['state_dict'])
    assert (tmp_path / 'ddp' / 'tb').is_dir()

    torch.set_num_threads(1)
    assert cli.main(['train', 'segmentation', '--data', str(tiny_root), '--out', str(tmp_path / 'one'), *ARGS]) == 0
    one = load_checkpoint(tmp_path / 'one' / 'last.pt')
    assert _structure(ddp) == _structure(one)
    assert one['meta']['world_size'] == 1
    # both ranks' samples were counted: 2 steps x 2 processes x 1 scan vs 2 steps x 1 scan
    assert sum(ddp['meta']['train_class_counts']) > 1.5 * sum(one['meta']['train_class_counts'])
