"""Training, resume and evaluation CLIs on a tiny synthetic sequence (a few steps of a small network)."""

import json

import numpy as np
import pytest
import torch

from pu_ros import cli
from pu_ros.networks.checkpoint import load_checkpoint
from pu_ros.training.train_segmentation import TrainConfigError, WarmupCosine, load_config

SPLIT = "train.split={train: {'00': ['000000', '000001']}, val: {'00': ['000002']}}"
SMALL = ['--set', 'model.hidden_size=8', '--set', 'model.image_size=[64,128]', '--set', 'train.batch_size=2',
         '--set', 'train.num_workers=0', '--set', 'train.warmup_steps=1', '--set', SPLIT, '--no-progress',
         '--device', 'cpu']


@pytest.fixture(scope='module')
def trained(tiny_root, tmp_path_factory):
    """Two training steps, then a resume to step three; returns (out dir, summaries)."""
    out = tmp_path_factory.mktemp('run')
    torch.set_num_threads(1)
    assert cli.main(['train', 'segmentation', '--data', str(tiny_root), '--out', str(out), '--max-steps', '2',
                     *SMALL]) == 0
    first = load_checkpoint(out / 'last.pt')
    assert cli.main(['train', 'segmentation', '--data', str(tiny_root), '--out', str(out), '--max-steps', '3',
                     '--resume', str(out / 'last.pt'), *SMALL]) == 0
    return out, first


def test_checkpoint_contents(trained):
    out, first = trained
    raw = torch.load(out / 'last.pt', weights_only=True)
    assert {'state_dict', 'config', 'meta', 'optimizer', 'scheduler', 'step'} <= set(raw)
    assert first['step'] == 2 and raw['step'] == 3  # the resume continued the count
    assert raw['scheduler']['step_count'] == 3
    assert raw['config']['model']['hidden_size'] == 8 and raw['config']['train']['max_steps'] == 3
    meta = raw['meta']
    for key in ('data', 'epoch', 'step', 'metrics', 'git_commit', 'time', 'train_class_counts', 'parameters'):
        assert key in meta, key
    assert 0.0 <= meta['metrics']['val_miou'] <= 1.0 and np.isfinite(meta['metrics']['total'])
    assert sum(meta['train_class_counts']) > 0
    assert any(k.startswith('backbone_2d.') for k in raw['state_dict'])  # the 2D branch was trained
    # the weights moved between step 2 and 3
    name = next(k for k in raw['state_dict'] if k.endswith('weight') and 'backbone_3d' in k)
    assert not torch.equal(first['state_dict'][name], raw['state_dict'][name])
    assert list((out / 'tb').glob('events.out.tfevents.*'))
    assert (out / 'config.yaml').is_file()


def test_eval_cli_prints_table_and_saves_confusion(trained, tiny_root, tmp_path, capsys):
    out, _ = trained
    capsys.readouterr()
    rc = cli.main(['eval', 'segmentation', '--checkpoint', str(out / 'last.pt'), '--data', str(tiny_root),
                   '--tta', '2', '--out', str(tmp_path), '--device', 'cpu', '--no-progress', '--save-labels'])
    assert rc == 0
    text = capsys.readouterr().out
    for word in ('road', 'mIoU', 'accuracy', 'majority', 'outside', 'ground truth or the predictions'):
        assert word in text, word
    conf = np.load(tmp_path / 'confusion.npy')
    assert conf.shape == (20, 20) and conf[0].sum() == 0 and conf.sum() > 1000
    lines = (tmp_path / 'confusion.csv').read_text().splitlines()
    assert len(lines) == 21 and lines[0].split(',')[1] == 'unlabeled'
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert metrics['frames'] == ['00/000002'] and metrics['evaluated_points'] == int(conf.sum())
    pred = np.fromfile(tmp_path / 'sequences' / '00' / 'predictions' / '000002.label', dtype='<u4')
    assert pred.shape == np.fromfile(tiny_root / 'sequences' / '00' / 'labels' / '000002.label', '<u4').shape


def test_eval_cli_errors(trained, tiny_root, tmp_path, capsys):
    out, _ = trained
    assert cli.main(['eval', 'segmentation', '--checkpoint', str(tmp_path / 'none.pt'), '--data', str(tiny_root),
                     '--device', 'cpu']) == 2
    assert 'none.pt' in capsys.readouterr().err
    assert cli.main(['eval', 'segmentation', '--checkpoint', str(out / 'last.pt'), '--data', str(tiny_root),
                     '--split', 'test', '--device', 'cpu']) == 2
    assert '--frames' in capsys.readouterr().err


def test_config_errors(tmp_path):
    with pytest.raises(TrainConfigError, match='unknown train key'):
        load_config(None, ['train.learning_rate=0.1'])
    with pytest.raises(TrainConfigError, match='optimizer'):
        load_config(None, ['train.optimizer=rmsprop'])
    with pytest.raises(TrainConfigError, match='train.lr=0.1'):
        load_config(None, ['lr=0.1'])
    cfg = load_config(None, ['model.hidden_size=32', 'train.lr=0.5'])
    assert cfg['model']['hidden_size'] == 32 and cfg['train']['lr'] == 0.5
    from pu_ros.networks.segmentation import SegmentationConfig

    assert set(load_config(None)['model']) == set(SegmentationConfig().to_dict())  # YAML keys = dataclass fields


def test_warmup_cosine_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = WarmupCosine(opt, total_steps=10, warmup_steps=2, min_lr=0.1)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(10):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    again = WarmupCosine(opt, total_steps=10, warmup_steps=2, min_lr=0.1)
    again.load_state_dict(sched.state_dict())
    assert again.get_last_lr()[0] == pytest.approx(0.1)
