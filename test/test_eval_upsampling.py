"""pu-ros eval upsampling / eval densify on tiny inputs: tables written, rows and models present, bad input exit 2."""

import csv

import numpy as np
import pytest


@pytest.fixture(scope='module')
def tiny_weights(tmp_path_factory):
    import torch

    from pu_ros.networks.checkpoint import save_checkpoint
    from pu_ros.networks.upsampling import PUFlow, PUFlowConfig

    torch.manual_seed(0)
    cfg = PUFlowConfig(num_blocks=2, feat_channels=(8, 8), growth=(4, 4), cond_channels=(8, 8), hidden=8)
    net = PUFlow(cfg).eval()
    path = tmp_path_factory.mktemp('w') / 'tiny.pt'
    save_checkpoint(path, net.state_dict(), {'model': cfg.to_dict(), 'train': {}}, {'note': 'untrained, tests'})
    return path


@pytest.mark.slow
def test_eval_upsampling_tiny(tmp_path, tiny_weights, capsys):
    from pu_ros.cli import main
    from pu_ros.data.meshes import write_off
    from pu_ros.data.shapes import random_shape

    meshes = tmp_path / 'mesh'
    write_off(meshes / 'a.off', random_shape(0))
    out = tmp_path / 'out'
    rc = main(['eval', 'upsampling', '--weights', str(tiny_weights), '--meshes', str(meshes), '--out', str(out),
               '--device', 'cpu', '--no-progress', '--only', 'x4', '--only', 'noise 1.0%', '--patch-overlap', '1'])
    assert rc == 0
    with open(out / 'table.csv') as fh:
        recs = list(csv.DictReader(fh))
    means = {(r['model'], r['row']): r for r in recs if r['mesh'] == 'mean'}
    assert set(means) == {('tiny', 'x4'), ('tiny', 'noise 1.0%'), ('midpoint baseline', 'x4'),
                          ('midpoint baseline', 'noise 1.0%')}
    for r in means.values():
        assert int(r['n_out']) == 4 * int(r['n_in']) == 8192
        assert float(r['cd']) > 0 and float(r['p2f']) > 0
    # the noisy input is farther from the surface than the clean one (the baseline keeps input points)
    assert float(means[('midpoint baseline', 'noise 1.0%')]['p2f']) > float(means[('midpoint baseline', 'x4')]['p2f'])
    md = (out / 'table.md').read_text()
    assert '| x4 |' in md and 'midpoint baseline' in md
    assert (out / 'renders' / 'a_x4.png').stat().st_size > 1000
    assert main(['eval', 'upsampling', '--weights', str(tmp_path / 'nope.pt'), '--meshes', str(meshes)]) == 2
    assert 'weights not found' in capsys.readouterr().err


def test_nonuniform_inputs_are_skewed():
    from pu_ros.data.shapes import superquadric
    from pu_ros.training.eval_upsampling import nonuniform_subset

    pts = nonuniform_subset(superquadric(), 2000, seed=1)
    assert pts.shape == (2000, 3)
    # density differs between the two halves along some axis far more than for a uniform sample
    spread = max(abs(np.mean(pts[:, i] > 0) - 0.5) for i in range(3))
    assert spread > 0.1


def test_densify_helpers():
    from pu_ros.training.eval_densify import chamfer_m, labels_to

    a = np.zeros((5, 4), np.float32)
    b = np.zeros((7, 4), np.float32)
    b[:, 0] = 1.0
    assert chamfer_m(a, b, 100) == pytest.approx(2.0)
    assert chamfer_m(a, a, 100) == 0.0
    src = np.array([[0, 0, 0], [10, 0, 0]], np.float32)
    np.testing.assert_array_equal(labels_to(src, np.array([3, 7]), np.array([[1, 0, 0], [9, 1, 0]], np.float32)),
                                  [3, 7])


def test_merge_tables(tmp_path, capsys):
    from pu_ros.cli import main
    from pu_ros.training.eval_upsampling import KEYS

    def write(path, model, cd):
        rows = [dict(zip(KEYS, [model, 'x4', m, 2048, 8192, cd, 1.0, 2.0, 0.5, 0.1, 10.0])) for m in ('a', 'mean')]
        with open(path, 'w', newline='') as fh:
            w = csv.DictWriter(fh, fieldnames=KEYS)
            w.writeheader()
            w.writerows(rows)

    write(tmp_path / 'one.csv', 'flow', 0.25)
    write(tmp_path / 'two.csv', 'mlp', 0.75)
    assert main(['eval', 'upsampling', '--merge', str(tmp_path / 'one.csv'), str(tmp_path / 'two.csv'),
                 '--out', str(tmp_path / 'm')]) == 0
    md = (tmp_path / 'm' / 'table.md').read_text()
    assert '| condition | flow | mlp |' in md and '0.250 / 1.00 / 2.00' in md and '0.750 / 1.00 / 2.00' in md
    assert main(['eval', 'upsampling', '--merge', str(tmp_path / 'missing.csv')]) == 2
    assert main(['eval', 'upsampling', '--weights', 'x.pt']) == 2
