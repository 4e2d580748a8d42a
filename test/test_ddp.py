"""DDP with spconv layers: two Gloo CPU processes under torchrun evaluate and train like a single process."""

import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from pu_ros import cli
from pu_ros.networks.checkpoint import load_checkpoint
from pu_ros.training.distributed import DistInfo, env_world, init_distributed

ROOT = Path(__file__).resolve().parents[1]
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


def _eval_checkpoint(path):
    """An untrained 3D-only checkpoint with non-trivial BatchNorm statistics (predictions vary per point)."""
    from pu_ros.networks.checkpoint import save_checkpoint
    from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS

    torch.manual_seed(0)
    cfg = SegmentationConfig(hidden_size=8, use_image=False)
    model = Segmentor2DPASS(cfg)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith('running_var'):
                buf.uniform_(0.5, 2.0)
            elif name.endswith('running_mean'):
                buf.uniform_(-0.5, 0.5)
    return save_checkpoint(path, model.state_dict(), {'model': cfg.to_dict(), 'train': {}}, {'step': 0}), cfg


@pytest.mark.slow
def test_two_gloo_processes_match_single_process(tiny_root, tmp_path):
    """One torchrun launch: distributed evaluation equals a single process; DDP ranks stay identical.

    DDP training also writes the same checkpoint format as a single process.
    """
    from pu_ros.data.semantic_dataset import SemanticKittiDataset
    from pu_ros.inference.segmenter import load_segmentor
    from pu_ros.training.eval_segmentation import evaluate

    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    for name in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(name, None)
    ckpt, _ = _eval_checkpoint(tmp_path / 'eval.pt')
    work = tmp_path / 'work'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
           str(ROOT / 'test' / 'ddp_worker.py'), str(work), str(ckpt), str(tiny_root), '--',
           '--data', str(tiny_root), '--out', str(tmp_path / 'ddp'), *ARGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the all-reduced confusion matrices of two ranks (frames 0, 2 and 1) equal one process over the 3 frames
    dist_eval = torch.load(work / 'dist_eval.pt', weights_only=True)
    model, cfg, _ = load_segmentor(ckpt, torch.device('cpu'))
    val = SemanticKittiDataset([tiny_root], {'00': ['000000', '000001', '000002']}, cfg, train=False, use_image=False)
    torch.set_num_threads(1)
    one = evaluate(model, val, torch.device('cpu'), progress=False)
    assert np.array_equal(dist_eval['confusion'].numpy(), one['confusion'].conf)
    assert np.array_equal(dist_eval['confusion_full'].numpy(), one['confusion_full'].conf)
    assert dist_eval['counters'] == {k: one[k] for k in ('points', 'in_range', 'out_of_range', 'frames')}
    assert dist_eval['counters']['frames'] == 3

    # after two DDP steps both ranks hold the same weights, and they moved away from the initial ones
    p0 = torch.load(work / 'params_rank0.pt', weights_only=True)
    p1 = torch.load(work / 'params_rank1.pt', weights_only=True)
    assert p0.keys() == p1.keys()
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
    ddp = load_checkpoint(tmp_path / 'ddp' / 'last.pt')
    assert all(torch.equal(ddp['state_dict'][k], v) for k, v in p0.items())  # rank 0 saved its weights
    assert ddp['step'] == 2 and ddp['meta']['world_size'] == 2
    assert not any(k.startswith('module.') for k in ddp['state_dict'])
    assert (tmp_path / 'ddp' / 'tb').is_dir()

    assert cli.main(['train', 'segmentation', '--data', str(tiny_root), '--out', str(tmp_path / 'one'), *ARGS]) == 0
    single = load_checkpoint(tmp_path / 'one' / 'last.pt')
    assert _structure(ddp) == _structure(single)
    assert single['meta']['world_size'] == 1
    # both ranks' samples were counted: 2 steps x 2 processes x 1 scan vs 2 steps x 1 scan
    assert sum(ddp['meta']['train_class_counts']) > 1.5 * sum(single['meta']['train_class_counts'])
    # a single process starting from the same weights ends elsewhere: the ranks really shared gradients
    assert any(not torch.equal(single['state_dict'][k], v) for k, v in p0.items())
