"""SampleNet: soft/hard projection, completion, losses, patches, the Sampler API, a tiny training run, CLI errors."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from pu_ros.inference.sampler import Sampler, SamplerConfig  # noqa: E402
from pu_ros.networks.sampling.losses import SamplingLossWeights, simplification_loss  # noqa: E402
from pu_ros.networks.sampling.patches import PatchSampleNet, allocate, make_patches  # noqa: E402
from pu_ros.networks.sampling.projection import dedupe_keep_first, match_and_complete  # noqa: E402
from pu_ros.networks.sampling.samplenet import SampleNetConfig, SoftProjection  # noqa: E402


def test_soft_projection_weights_and_hard_limit():
    rng = np.random.default_rng(0)
    pts = torch.from_numpy(rng.normal(size=(2, 50, 3)).astype(np.float32))
    q = torch.from_numpy(rng.normal(size=(2, 7, 3)).astype(np.float32))
    proj = SoftProjection(group_size=5, initial_temperature=1.0)
    _, w, _ = proj.weights(pts, q)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 7))
    assert bool((w > 0).all())
    soft = proj(pts, q)
    sharp = SoftProjection(group_size=5, initial_temperature=1e-4, min_sigma=1e-8)
    hard = sharp(pts, q)
    nearest = ((q[:, :, None] - pts[:, None]) ** 2).sum(-1).argmin(-1)
    torch.testing.assert_close(hard, torch.gather(pts, 1, nearest[..., None].expand(-1, -1, 3)))
    assert float((soft - hard).detach().abs().max()) > 1e-3  # sigma = 1 really averages
    assert float(SoftProjection(initial_temperature=0.0, min_sigma=0.05).sigma().detach()) == pytest.approx(0.05)


def _naive_match(points, generated, m):
    """Published algorithm, obvious form: nearest point, keep first occurrences, FPS completion."""
    p, g = np.asarray(points, np.float64), np.asarray(generated, np.float64)
    idx = [int(((p - x) ** 2).sum(1).argmin()) for x in g[:m]]
    chosen = list(dict.fromkeys(idx))
    while len(chosen) < m:
        d = np.min(((p[:, None] - p[chosen][None]) ** 2).sum(-1), axis=1)
        chosen.append(int(d.argmax()))
    return np.array(chosen[:m])


def test_fps_anchor_starts_as_fps_and_learns_offsets():
    """anchor='fps': the untrained network returns the input's farthest points; its head gets gradients."""
    from pu_ros.networks.sampling.samplenet import SampleNet
    from pu_ros.ops.neighbors import farthest_point_sample

    torch.manual_seed(0)
    pts = torch.randn(3, 200, 3)
    net = SampleNet(SampleNetConfig(num_out_points=16, anchor='fps')).eval()
    simp = net.simplify(pts)
    want = torch.gather(pts, 1, farthest_point_sample(pts, 16)[..., None].expand(-1, -1, 3))
    assert torch.equal(simp, want)
    idx = match_and_complete(pts, simp, 16)  # hard projection of FPS points = those very points
    assert torch.equal(idx, farthest_point_sample(pts, 16))
    net.train()
    net(pts)['projected'].pow(2).sum().backward()
    assert float(net.head.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match='anchor'):
        SampleNetConfig(anchor='grid')


def test_match_and_complete_exact_distinct_and_matches_naive():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(3, 40, 3)).astype(np.float32)
    gen = rng.normal(size=(3, 12, 3)).astype(np.float32) * 0.3  # clustered: many duplicates
    gen[1] = gen[1, :1]  # every generated point identical: one distinct index
    out = match_and_complete(torch.from_numpy(pts), torch.from_numpy(gen), 10).numpy()
    assert out.shape == (3, 10)
    for b in range(3):
        assert len(set(out[b].tolist())) == 10 and out[b].min() >= 0 and out[b].max() < 40
        np.testing.assert_array_equal(out[b], _naive_match(pts[b], gen[b], 10))


def test_dedupe_keeps_first_occurrence_order():
    idx = torch.tensor([[4, 2, 4, 7, 2, 1]])
    compact, counts = dedupe_keep_first(idx)
    assert counts.tolist() == [4]
    assert compact[0, :4].tolist() == [4, 2, 7, 1]


def test_simplification_loss_hand_computed():
    p = torch.tensor([[[0.0, 0, 0], [2.0, 0, 0]]])
    q = torch.tensor([[[0.0, 0, 0], [0.0, 1, 0]]])
    w = SamplingLossWeights(alpha=2.0, beta=3.0, gamma=1.0, delta=0.5, lmbda=0.1)
    # q->p squared NN: 0, 1 -> mean 0.5, max 1; p->q: 0, 4 -> mean 2; M = 2
    expected = 2.0 * (0.5 + 3.0 * 1.0 + (1.0 + 0.5 * 2) * 2.0)
    assert float(simplification_loss(q, p, w)) == pytest.approx(expected)


def test_patches_partition_and_allocation():
    rng = np.random.default_rng(2)
    xyz = torch.from_numpy(rng.normal(size=(1000, 3)).astype(np.float32))
    index, sizes = make_patches(xyz, 64)
    assert index.shape == (16, 64) and int(sizes.sum()) == 1000
    firsts = torch.cat([index[g, :int(s)] for g, s in enumerate(sizes)])
    assert sorted(firsts.tolist()) == list(range(1000))
    counts = allocate(301, sizes)
    assert int(counts.sum()) == 301 and bool((counts <= sizes).all())
    net = PatchSampleNet(SampleNetConfig(num_out_points=16, progressive=True), patch_size=64).eval()
    for m in (1, 37, 301, 990):
        idx = net.sample_indices(xyz, m)
        assert idx.shape == (m,) and len(set(idx.tolist())) == m and int(idx.max()) < 1000


def _save_lidar_weights(path):
    from pu_ros.networks.checkpoint import save_checkpoint

    net = PatchSampleNet(SampleNetConfig(num_out_points=8, progressive=True), patch_size=32)
    cfg = {'model': {'kind': 'patch', 'patch_size': 32, **net.net.cfg.to_dict()}, 'train': {}}
    save_checkpoint(path, net.state_dict(), cfg, {'data': []})
    return path


def test_sampler_methods(tmp_path):
    rng = np.random.default_rng(4)
    pts = (rng.normal(size=(500, 4)) * 5).astype(np.float32)
    pts[7, 0] = np.nan
    ckpt = _save_lidar_weights(tmp_path / 'w.pt')
    for method in ('fps', 'random', 'voxel', 'samplenet'):
        s = Sampler(method=method, ratio=0.2, checkpoint=str(ckpt), device='cpu')
        res = s.sample(pts)
        assert res.indices.dtype == np.int64 and len(res.indices) == round(0.2 * 499)
        assert len(set(res.indices.tolist())) == len(res.indices) and 7 not in res.indices
        np.testing.assert_array_equal(res.points, pts[res.indices])
        t = s.sample_indices(torch.from_numpy(pts[8:]))
        assert t.dtype == torch.int64 and len(t) == round(0.2 * 492)
    assert len(Sampler(method='fps', num_points=33, device='cpu').sample(pts).indices) == 33
    assert len(Sampler(method='random', device='cpu').sample(pts[:0]).indices) == 0
    a = Sampler(method='random', seed=3, device='cpu').sample(pts).indices
    np.testing.assert_array_equal(a, Sampler(method='random', seed=3, device='cpu').sample(pts).indices)
    with pytest.raises(FileNotFoundError):
        Sampler(method='samplenet', checkpoint=str(tmp_path / 'missing.pt'))
    with pytest.raises(ValueError):
        SamplerConfig(method='poisson')
    with pytest.raises(ValueError):
        Sampler(method='fps', ratio=0.0)
    for f in SamplerConfig.__dataclass_fields__.values():
        assert 'help' in f.metadata


def _fake_modelnet(root: Path):
    (root / 'splits').mkdir(parents=True)
    (root / 'splits' / 'modelnet40_shape_names.txt').write_text('airplane\nbathtub\n')
    rng = np.random.default_rng(5)
    for cls in ('airplane', 'bathtub'):
        d = root / 'ModelNet40' / cls / 'train'
        d.mkdir(parents=True)
        for i in range(2):
            np.savetxt(d / f'{cls}_{i:04d}.txt', rng.normal(size=(1100, 6)), delimiter=',', fmt='%.4f')


def test_tiny_training_and_resume(tmp_path):
    from pu_ros.networks.checkpoint import load_checkpoint
    from pu_ros.networks.sampling.pointnet import PointNetCls
    from pu_ros.training.train_sampling import load_config, train

    _fake_modelnet(tmp_path / 'mn')
    torch.save(PointNetCls(num_classes=2).state_dict(), tmp_path / 'pn.t7')
    over = [f'train.task_weights={tmp_path / "pn.t7"}', 'train.batch_size=2', 'train.num_in_points=128',
            'model.num_out_points=8', 'train.synthetic_shapes=2', 'train.val_shapes=1', 'train.checkpoint_interval=1',
            'train.max_steps=2', 'train.log_interval=1', 'train.warmup_steps=0']
    cfg = load_config('train/sampling_cls.yaml', over)
    summary = train(cfg, str(tmp_path / 'mn'), tmp_path / 'run', device='cpu', progress=False)
    assert summary['step'] == 2 and np.isfinite(summary['losses']['loss'])
    cfg3 = load_config('train/sampling_cls.yaml', [*over[:-2], 'train.max_steps=3'])
    summary = train(cfg3, str(tmp_path / 'mn'), tmp_path / 'run', resume=str(tmp_path / 'run' / 'last.pt'),
                    device='cpu', progress=False)
    assert summary['step'] == 3 and load_checkpoint(tmp_path / 'run' / 'last.pt')['step'] == 3
    res = Sampler(method='samplenet', checkpoint=str(tmp_path / 'run' / 'weights.pt'), num_points=10,
                  device='cpu').sample(np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32))
    assert len(set(res.indices.tolist())) == 10


def test_feature_targets_vanish_on_the_full_cloud_only(tmp_path):
    from pu_ros.networks.sampling.pointnet import PointNetCls
    from pu_ros.training.sampling_tasks import ClsTask
    from pu_ros.training.train_sampling import load_config

    _fake_modelnet(tmp_path / 'mn')
    torch.manual_seed(0)
    torch.save(PointNetCls(num_classes=2).state_dict(), tmp_path / 'pn.t7')
    cfg = load_config('train/sampling_cls.yaml', [f'train.task_weights={tmp_path / "pn.t7"}', 'train.batch_size=3',
                                                 'train.num_in_points=128', 'model.num_out_points=8',
                                                 'train.targets=feature', f'train.modelnet_root={tmp_path / "mn"}'])
    task = ClsTask(cfg['model'], cfg['train'], 'cpu')
    batch = task.batch(np.random.default_rng(0))
    assert batch['features'].shape == (3, 1024)
    full = float(task._task_loss(batch['points'], batch))
    part = float(task._task_loss(batch['points'][:, :8], batch))
    assert abs(full) < 1e-5 and part > 1e-3
    # the feature term adds to the KL of plain distillation
    task.t['targets'] = 'distill'
    assert float(task._task_loss(batch['points'][:, :8], batch)) < part
    with pytest.raises(ValueError, match='distill, label or feature'):
        ClsTask(cfg['model'], {**cfg['train'], 'targets': 'logits'}, 'cpu')


@pytest.mark.parametrize('argv', [
    ['train', 'sampling', '--config', '/nonexistent.yaml'],
    ['train', 'sampling', '--set', 'train.task=segmentation'],
    ['eval', 'sampling', '--data', '/nonexistent'],
    ['eval', 'sampling', '--data', '.', '--ratios', '2'],
    ['eval', 'sampling', '--data', '.', '--methods', 'poisson'],
    ['eval', 'sampling-cls', '--data', '.', '--task-weights', '/nonexistent.t7'],
])
def test_cli_errors(argv, capsys):
    from pu_ros.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('pu-ros ')


def test_pointnet_eval_fold_matches_batchnorm():
    from pu_ros.networks.sampling.pointnet import PointNetFeatures

    torch.manual_seed(0)
    net = PointNetFeatures(emb=32)
    net.train()
    for _ in range(3):  # give the BatchNorms non-trivial running statistics
        net(torch.randn(4, 50, 3) * 2 + 1)
    net.eval()
    x = torch.randn(3, 40, 3)
    y = x.transpose(1, 2)
    for i in range(1, 6):
        y = torch.relu(getattr(net, f'bn{i}')(getattr(net, f'conv{i}')(y)))
    assert torch.allclose(net(x), y.max(dim=2).values, atol=1e-5)


def test_eval_cls_table_has_spread(tmp_path, capsys):
    from pu_ros.cli import main
    from pu_ros.networks.sampling.pointnet import PointNetCls

    mn = tmp_path / 'mn'
    _fake_modelnet(mn)
    for cls in ('airplane', 'bathtub'):  # the fake shapes double as a "test" split
        (mn / 'ModelNet40' / cls / 'train').rename(mn / 'ModelNet40' / cls / 'test')
    torch.save(PointNetCls(num_classes=2).state_dict(), tmp_path / 'pn.t7')
    rc = main(['eval', 'sampling-cls', '--data', str(mn), '--task-weights', str(tmp_path / 'pn.t7'), '--sizes', '8',
               '--draws', '3', '--csv', str(tmp_path / 't.csv'), '--device', 'cpu'])
    assert rc == 0
    out = capsys.readouterr().out
    assert '4 test shapes x 3 draws = 12 clouds' in out and '±' in out
    rows = (tmp_path / 't.csv').read_text().splitlines()
    assert rows[0].startswith('M,samplenet,samplenet_std,fps') and len(rows) == 3
