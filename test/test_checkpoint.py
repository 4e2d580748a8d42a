"""Checkpoints: weights_only round trip, atomic writes, clear errors for missing and corrupt files."""

import numpy as np
import pytest
import torch

from pu_ros.networks.checkpoint import (
    CheckpointError,
    export_weights,
    load_checkpoint,
    save_checkpoint,
    state_dict_to_float32,
    to_plain,
)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_round_trip_weights_only(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / 'sub' / 'c.pt', model.state_dict(), {'model': {'hidden': 4, 'range': (1.0, 2.0)}, 'train': {}},
        {'step': np.int64(3), 'counts': np.arange(3), 'data': [tmp_path]}, optimizer=opt.state_dict(), step=3,
    )
    raw = torch.load(path, weights_only=True)  # the contract: loads without allowing code
    assert raw['format'].startswith('pu_ros.checkpoint')
    ck = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(ck['state_dict'][k], v)
    assert ck['meta']['step'] == 3 and isinstance(ck['meta']['step'], int)
    assert ck['meta']['data'] == [str(tmp_path)]
    assert 'time' in ck['meta'] and 'git_commit' in ck['meta']
    opt2 = torch.optim.SGD(_model().parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ck['optimizer'])
    assert ck['step'] == 3
    assert not list(path.parent.glob('.*.tmp'))


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pt'):
        load_checkpoint(tmp_path / 'nope.pt')
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint at all')
    with pytest.raises(CheckpointError, match='bad.pt'):
        load_checkpoint(bad)
    good = save_checkpoint(tmp_path / 'good.pt', _model().state_dict(), {}, {})
    trunc = tmp_path / 'trunc.pt'
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match='trunc.pt'):
        load_checkpoint(trunc)
    torch.save({'state_dict': {}}, tmp_path / 'partial.pt')
    with pytest.raises(CheckpointError, match='lacks'):
        load_checkpoint(tmp_path / 'partial.pt')


class _Evil:
    def __reduce__(self):
        return (print, ('code ran',))


def test_code_is_refused(tmp_path):
    torch.save({'state_dict': {}, 'config': {}, 'meta': {'x': _Evil()}}, tmp_path / 'evil.pt')
    with pytest.raises(CheckpointError, match='evil.pt'):
        load_checkpoint(tmp_path / 'evil.pt')
    with pytest.raises(TypeError, match='meta.f'):
        to_plain({'f': lambda: 0}, 'meta')


def test_export_fp16_and_filter(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / 'c.pt', model.state_dict(), {'model': {}}, {'step': 1},
                           optimizer={'state': {}, 'param_groups': []})
    ck = load_checkpoint(path)
    out = export_weights(ck, tmp_path / 'w.pt', keep=lambda k: k.startswith('1.'), dtype=torch.float16,
                         meta_update={'branches': ['3d']})
    w = load_checkpoint(out)
    assert 'optimizer' not in w and set(w['state_dict']) == {k for k in model.state_dict() if k.startswith('1.')}
    assert w['state_dict']['1.weight'].dtype == torch.float16
    assert w['state_dict']['1.num_batches_tracked'].dtype == torch.int64
    assert w['meta']['weights_dtype'] == 'float16' and w['meta']['branches'] == ['3d']
    back = state_dict_to_float32(w['state_dict'])
    assert back['1.weight'].dtype == torch.float32
    torch.testing.assert_close(back['1.weight'], model.state_dict()['1.weight'], atol=1e-3, rtol=1e-3)
