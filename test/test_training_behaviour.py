"""Behaviour of training and evaluation, each against an expectation derived independently of the code under test.

- the loss is the documented sum with its λs (hand-computed terms, a loop twin of Lovász, an explicit KL);
- test-time augmentation is the mean of the individual votes (a fake model, transforms written here);
- ``eval --save-labels`` writes raw SemanticKITTI ids (an oracle model; the label map read from the YAML here);
  the full-scan metrics count out-of-range labelled points as wrong (counted here with numpy);
- point/label/pixel alignment through every dataset transform (points tagged with their index in the intensity);
- BatchNorm recalibration is the plain mean of the batch statistics (forward hooks) and leaves unused norms alone;
- gradient accumulation and clipping equal one hand-made SGD step (a slow twin of the trainer's step);
- a resumed run ends with the weights and losses of an uninterrupted one (mid-epoch);
- ``best.pt`` holds the best validated step, also with ``val_interval: 0``.
"""

import math
from pathlib import Path
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from pu_ros.networks.checkpoint import load_checkpoint, save_checkpoint
from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS

LABEL_YAML = Path(__file__).resolve().parents[1] / 'config' / 'semantic_kitti.yaml'
SMALL_MODEL = ['model.hidden_size=8', 'model.image_size=[64,128]']


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(*overrides):
    from pu_ros.training.train_segmentation import load_config

    base = [*SMALL_MODEL, 'train.batch_size=1', 'train.num_workers=0', 'train.log_interval=1',
            'train.checkpoint_interval=1000', 'train.warmup_steps=1']
    return load_config(None, base + list(overrides))


def _train(cfg, root, out, resume=None):
    from pu_ros.training.train_segmentation import train

    return train(cfg, [str(root)], out, resume=resume, device='cpu', progress=False)


def _scalars(out, tag):
    """{step: value} of a TensorBoard scalar written by the trainer."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / 'tb'))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def _inverse_map():
    doc = yaml.safe_load(LABEL_YAML.read_text())
    return doc['learning_map'], doc['learning_map_inv']


# ------------------------------------------------------------------------------------------------ loss


def _lovasz_loop(probs, labels, ignore=0):
    """Lovász-softmax written from the paper, one class and one rank at a time (present classes only)."""
    keep = labels != ignore
    probs, labels = probs[keep].double(), labels[keep]
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).double()
        if fg.sum() == 0:
            continue
        err = (fg - probs[:, c]).abs()
        order = torch.argsort(err, descending=True)
        fg_s, err_s = fg[order], err[order]
        total, prev, loss = fg.sum(), 0.0, 0.0
        for k in range(1, len(order) + 1):
            inter = total - fg_s[:k].sum()
            union = total + (1 - fg_s[:k]).sum()
            jac = 1.0 - inter / union
            loss += err_s[k - 1] * (jac - prev)
            prev = jac
        losses.append(loss)
    return torch.stack(losses).mean()


def _seg_hand(logits, labels, lam_lovasz):
    keep = labels != 0
    ce = F.cross_entropy(logits[keep].double(), labels[keep])
    return ce + lam_lovasz * _lovasz_loop(torch.softmax(logits.double(), 1), labels)


def _kl_hand(student, teacher):
    """Mean over rows of sum_c p_t (log p_t - log p_s)."""
    pt = torch.softmax(teacher.double(), 1)
    return (pt * (pt.log() - torch.log_softmax(student.double(), 1))).sum(1).mean()


def test_loss_is_the_documented_sum_with_its_lambdas():
    from pu_ros.networks.losses import SegmentationLoss

    g = torch.Generator().manual_seed(0)
    p, m, c = 40, 15, 20
    labels = torch.randint(0, c, (p,), generator=g)
    pix = torch.randperm(p, generator=g)[:m]
    outputs = {
        'logits': torch.randn(p, c, generator=g),
        'logits_3d_scales': [torch.randn(p, c, generator=g) for _ in range(2)],
        'logits_fused_scales': [torch.randn(m, c, generator=g) for _ in range(2)],
        'logits_fused': torch.randn(m, c, generator=g),
        'logits_2d': torch.randn(m, c, generator=g),
    }
    batch = {'labels': labels, 'pix_point_idx': pix}
    lam = {'lambda_lovasz': 0.7, 'lambda_seg2d': 0.3, 'lambda_xm': 2.5}
    got = SegmentationLoss(SegmentationConfig(hidden_size=8, **lam))(outputs, batch)

    ll = lam['lambda_lovasz']
    y2 = labels[pix]
    seg3d = sum(_seg_hand(s, labels, ll) for s in outputs['logits_3d_scales']) / 2
    seg2d = (_seg_hand(outputs['logits_fused'], y2, ll) + _seg_hand(outputs['logits_2d'], y2, ll)
             + sum(_seg_hand(s, y2, ll) for s in outputs['logits_fused_scales']) / 2)
    xm = sum(_kl_hand(s3[pix], sf) for s3, sf in zip(outputs['logits_3d_scales'], outputs['logits_fused_scales'])) / 2
    expected = (_seg_hand(outputs['logits'], labels, ll) + seg3d + lam['lambda_seg2d'] * seg2d
                + lam['lambda_xm'] * xm)
    assert float(got['xm']) == pytest.approx(float(xm), rel=1e-5) and float(xm) > 0.1
    assert float(got['seg2d']) == pytest.approx(float(seg2d), rel=1e-5)
    assert float(got['total']) == pytest.approx(float(expected), rel=1e-5)
    # the distillation term enters the total with exactly λ_xm
    no_xm = SegmentationLoss(SegmentationConfig(hidden_size=8, **{**lam, 'lambda_xm': 0.0}))(outputs, batch)
    assert float(got['total'] - no_xm['total']) == pytest.approx(2.5 * float(xm), rel=1e-4)


# ------------------------------------------------------------------------------------------------ TTA


class _LinearModel:
    """Stands in for the segmentor: logits = [x, y, z, 1] @ W of each point it is given (a rotation-dependent map)."""

    def __init__(self, c=20):
        self.w = torch.randn(4, c, generator=torch.Generator().manual_seed(1))
        self.calls = []

    def predict(self, batch, fused=False):
        pts = batch['points']
        self.calls.append(pts.shape[0])
        return torch.cat([pts[:, :3], torch.ones(pts.shape[0], 1)], 1) @ self.w


def test_tta_is_the_mean_of_the_votes_of_the_variants_that_see_the_point():
    from pu_ros.training.eval_segmentation import predict_probs

    cfg = SegmentationConfig(hidden_size=8, point_range=[-5.0, -30.0, -4.0, 30.0, 30.0, 2.0])
    pts = torch.tensor([[1.0, 2.0, 0.0, 0.5], [3.0, -1.0, -1.0, 0.2], [20.0, 4.0, 1.0, 0.1], [-2.0, 10.0, 0.5, 0.0]])
    batch = {'points': pts, 'batch_idx': torch.zeros(4, dtype=torch.int64), 'batch_size': 1,
             'labels': torch.ones(4, dtype=torch.int64)}
    model = _LinearModel()
    got = predict_probs(model, batch, cfg, tta=4)
    # the four documented variants: identity, y mirrored, half turn, half turn of the y-mirrored scan
    xyz = pts[:, :3].numpy().astype(np.float64)
    variants = [xyz, xyz * [1, -1, 1], xyz * [-1, -1, 1], xyz * [-1, 1, 1]]
    lo, hi = np.array(cfg.point_range[:3]), np.array(cfg.point_range[3:])
    votes = [[] for _ in range(4)]
    for v in variants:
        inside = np.all((v >= lo) & (v < hi), axis=1)
        logits = np.concatenate([v, np.ones((4, 1))], 1) @ model.w.numpy().astype(np.float64)
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        for i in np.flatnonzero(inside):
            votes[i].append(prob[i])
    assert [len(v) for v in votes] == [4, 4, 2, 4]  # the point at x=20 leaves the range when turned
    expected = np.stack([np.mean(v, axis=0) for v in votes])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert sorted(model.calls) == [3, 3, 4, 4]  # out-of-range points are not fed to the network


# ------------------------------------------------------------------------------------------------ eval CLI


def _oracle(model, batch, cfg, tta=1, fused=False):
    """predict_probs stand-in that returns the ground truth as one-hot probabilities."""
    return F.one_hot(batch['labels'], cfg.num_classes).float()


@pytest.fixture(scope='module')
def untrained_ckpt(tmp_path_factory):
    """An untrained tiny checkpoint with a small point range (so some labelled points fall outside it)."""
    torch.manual_seed(0)
    cfg = SegmentationConfig(hidden_size=8, use_image=False, point_range=[-20.0, -20.0, -4.0, 20.0, 20.0, 2.0])
    path = tmp_path_factory.mktemp('oracle') / 'ckpt.pt'
    save_checkpoint(path, Segmentor2DPASS(cfg).state_dict(), {'model': cfg.to_dict(), 'train': {}}, {'step': 0})
    return path, cfg


def test_eval_saves_raw_ids_and_full_scan_metrics_count_the_range(untrained_ckpt, tiny_root, tmp_path, monkeypatch):
    import json

    from pu_ros import cli
    from pu_ros.training import eval_segmentation

    ckpt, cfg = untrained_ckpt
    monkeypatch.setattr(eval_segmentation, 'predict_probs', _oracle)
    frames = ['000000', '000001']
    assert cli.main(['eval', 'segmentation', '--checkpoint', str(ckpt), '--data', str(tiny_root), '--frames',
                     ','.join(f'00/{f}' for f in frames), '--out', str(tmp_path), '--device', 'cpu',
                     '--no-progress', '--save-labels']) == 0
    learning_map, inverse = _inverse_map()
    lo, hi = np.array(cfg.point_range[:3]), np.array(cfg.point_range[3:])
    tp = np.zeros(20, np.int64)
    fn = np.zeros(20, np.int64)
    for f in frames:
        seq = tiny_root / 'sequences' / '00'
        raw = np.fromfile(seq / 'labels' / f'{f}.label', '<u4')
        pts = np.fromfile(seq / 'velodyne' / f'{f}.bin', '<f4').reshape(-1, 4)
        saved = np.fromfile(tmp_path / 'sequences' / '00' / 'predictions' / f'{f}.label', '<u4')
        learn = np.array([learning_map[int(r)] for r in raw & 0xFFFF])
        inside = np.all((pts[:, :3] >= lo) & (pts[:, :3] < hi), axis=1)
        labelled = learn != 0
        assert 0 < np.count_nonzero(~inside & labelled) and np.count_nonzero(inside & labelled) > 100
        canonical = np.array([inverse[int(k)] for k in learn])
        # the oracle's predictions come back as the raw ids of the ground truth (instance bits dropped)
        np.testing.assert_array_equal(saved[inside & labelled], canonical[inside & labelled])
        assert np.all(saved[~inside] == 0)
        np.add.at(tp, learn[inside & labelled], 1)
        np.add.at(fn, learn[~inside & labelled], 1)
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert metrics['miou'] == pytest.approx(1.0) and metrics['accuracy'] == pytest.approx(1.0)
    present = np.flatnonzero((tp + fn)[1:] > 0) + 1
    assert metrics['full_scan']['accuracy'] == pytest.approx(tp.sum() / (tp.sum() + fn.sum()))
    assert metrics['full_scan']['miou'] == pytest.approx(np.mean(tp[present] / (tp[present] + fn[present])))
    assert metrics['points']['out_of_range_labelled'] == int(fn.sum())


# ------------------------------------------------------------------------------------------------ dataset


@pytest.fixture(scope='module')
def tagged_root(tiny_root, tmp_path_factory):
    """A copy of the tiny root whose intensities are the point indices and whose labels are a known function of them."""
    _, inverse = _inverse_map()
    root = tmp_path_factory.mktemp('tagged')
    shutil.copytree(tiny_root / 'sequences' / '00', root / 'sequences' / '00')
    seq = root / 'sequences' / '00'
    for path in sorted((seq / 'velodyne').glob('*.bin')):
        pts = np.fromfile(path, '<f4').reshape(-1, 4)
        idx = np.arange(pts.shape[0])
        pts[:, 3] = idx
        pts.tofile(path)
        raw = np.array([inverse[int(k)] for k in idx % 20], np.uint32) | ((idx % 5).astype(np.uint32) << 16)
        raw.astype('<u4').tofile(seq / 'labels' / f'{path.stem}.label')
    return root


@pytest.mark.parametrize('train', [False, True])
def test_points_labels_and_pixels_stay_aligned_through_every_transform(tagged_root, train):
    from pu_ros.data.kitti import open_kitti
    from pu_ros.data.semantic_dataset import SemanticKittiDataset
    from pu_ros.geometry.projection import pixels_in_image

    cfg = SegmentationConfig(hidden_size=8, image_size=[200, 600],
                             point_range=[-15.0, -15.0, -4.0, 15.0, 15.0, 2.0])
    augment = {'dropout': 0.6, 'image_hflip': 0.0, 'color_jitter': 0.0}
    ds = SemanticKittiDataset([tagged_root], {'00': ['000000', '000001']}, cfg, train=train, augment=augment)
    calib = open_kitti(tagged_root / 'sequences' / '00', camera='image_2').calib_for(0)
    dropped = 0
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            seq = ds.refs[i].folder
            orig = np.fromfile(seq / 'velodyne' / f'{ds.refs[i].frame_id}.bin', '<f4').reshape(-1, 4)
            tag = s.points[:, 3].astype(np.int64)
            np.testing.assert_array_equal(tag, s.keep)  # each point is the one `keep` names
            np.testing.assert_array_equal(s.labels, tag % 20)  # and carries its own label
            assert s.num_out_of_range_labelled == np.count_nonzero(s.out_of_range_labels)
            if train:
                dropped += s.num_total - s.num_out_of_range - s.points.shape[0]
                # the augmentation is rigid up to scale: pairwise distances scale by one common factor
                a, b = s.points[:50, :3], orig[tag[:50], :3]
                da = np.linalg.norm(a[1:] - a[:-1], axis=1)
                db = np.linalg.norm(b[1:] - b[:-1], axis=1)
                ratio = da[db > 0.5] / db[db > 0.5]
                assert np.ptp(ratio) < 1e-3 and 0.9 < ratio.mean() < 1.1
            else:
                np.testing.assert_array_equal(s.points, orig[tag])
                assert s.num_out_of_range + s.points.shape[0] == orig.shape[0]
            # every point-pixel pair is the projection of that same original point (shifted by the crop)
            full_idx, full_uv = pixels_in_image(orig, calib, 10**6, 10**6)
            uv_of = dict(zip(full_idx.tolist(), map(tuple, full_uv)))
            src = s.keep[s.pix_point_idx]
            shift = {tuple(np.subtract(uv_of[j], uv)) for j, uv in zip(src.tolist(), s.pix_uv)}
            assert len(src) > 10 and len(shift) == 1
            if not train:
                assert shift == {(0, 0)}
    assert (dropped > 0) == train  # dropout removed points in training only


# ------------------------------------------------------------------------------------------------ BN recalibration


def test_bn_recalibration_is_the_plain_mean_of_batch_statistics(tiny_root):
    from pu_ros.data.semantic_dataset import SemanticKittiDataset
    from pu_ros.training.train_segmentation import recalibrate_batchnorm

    torch.manual_seed(0)
    cfg = SegmentationConfig(hidden_size=8, image_size=[64, 128])
    model = Segmentor2DPASS(cfg)
    model.eval()
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    with torch.no_grad():
        for m in norms.values():
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {n: [] for n in norms}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: seen[n].append(inp[0].detach().double()))
             for n, m in norms.items()]
    ds = SemanticKittiDataset([tiny_root], {'00': ['000000', '000001']}, cfg, train=False, use_image=False)
    n_done = recalibrate_batchnorm(model, ds, torch.device('cpu'), scans=3)
    for h in hooks:
        h.remove()
    assert not model.training  # mode restored
    used = [n for n in norms if seen[n]]
    assert n_done == len(used) and 0 < len(used) < len(norms)  # the image branch is not reached by 3D passes
    for n, m in norms.items():
        assert m.momentum == 0.1  # restored
        if not seen[n]:  # untouched statistics
            assert torch.equal(m.running_mean, before[f'{n}.running_mean'])
            assert torch.equal(m.running_var, before[f'{n}.running_var'])
            continue
        assert len(seen[n]) == 3
        feats = [x.transpose(0, 1).reshape(x.shape[1], -1) for x in seen[n]]  # (C, values) per pass
        mean = torch.stack([f.mean(1) for f in feats]).mean(0)
        var = torch.stack([f.var(1, unbiased=True) for f in feats]).mean(0)
        np.testing.assert_allclose(m.running_mean.double(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(m.running_var.double(), var, rtol=1e-4, atol=1e-5)
    for k, v in model.state_dict().items():  # weights and biases unchanged
        if not any(k.endswith(s) for s in ('running_mean', 'running_var', 'num_batches_tracked')):
            assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------------------------------------ one SGD step


def _twin_step(root, cfg, frames, clip=None):
    """(parameters after, before) one plain-SGD optimizer step over ``frames`` (one micro-batch each), by hand."""
    from pu_ros.data.semantic_dataset import SemanticKittiDataset, collate
    from pu_ros.networks.losses import SegmentationLoss

    t = cfg['train']
    model_cfg = SegmentationConfig.from_dict(dict(cfg['model']))
    torch.manual_seed(int(t['seed']))
    model = Segmentor2DPASS(model_cfg)
    model.train()
    ds = SemanticKittiDataset([root], {'00': frames}, model_cfg, train=True, augment=t['augmentation'],
                              seed=int(t['seed']))
    ds.set_epoch(0)
    params = dict(model.named_parameters())
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(len(frames)):
        batch = collate([ds[i]])
        batch.pop('meta')
        loss = SegmentationLoss(model_cfg)(model(batch), batch)['total']
        for (n, _), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                grads[n] += g / len(frames)
    scale = 1.0
    if clip is not None:
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
        scale = min(1.0, clip / (float(norm) + 1e-6))
        assert scale < 0.01  # the clip is active
    lr = float(t['lr'])
    init = {n: p.detach() for n, p in params.items()}
    return {n: p - lr * scale * grads[n] for n, p in init.items()}, init


SGD = ['train.optimizer=sgd', 'train.momentum=0.0', 'train.weight_decay=0.0', 'train.schedule=constant',
       'train.warmup_steps=0', 'train.lr=0.05', 'train.max_steps=1']


@pytest.mark.parametrize('mode', ['accumulate', 'clip'])
def test_one_step_equals_a_hand_made_sgd_step(tiny_root, tmp_path, mode):
    if mode == 'accumulate':
        frames, extra, clip = ['000000', '000001'], ['train.grad_accum=2'], None
    else:
        frames, extra, clip = ['000001'], ['train.clip_grad_norm=0.01', 'train.lr=1.0'], 0.01
    cfg = _cfg(*SGD, *extra, f'train.split={{train: {{"00": {frames}}}}}')
    summary = _train(cfg, tiny_root, tmp_path)
    state = load_checkpoint(tmp_path / 'last.pt')
    assert state['step'] == 1 and state['batches_in_epoch'] == len(frames)
    expected, init = _twin_step(tiny_root, cfg, frames, clip)
    worst = max(float((state['state_dict'][n] - v).abs().max()) for n, v in expected.items())
    moved = max(float((v - init[n]).abs().max()) for n, v in expected.items())
    assert moved > 0 and worst < 1e-3 * moved, (worst, moved)
    if clip:  # the update has norm lr * clip
        delta = torch.sqrt(sum(((state['state_dict'][n] - init[n]).double() ** 2).sum() for n in expected))
        assert float(delta) == pytest.approx(float(cfg['train']['lr']) * clip, rel=1e-3)
    assert summary['step'] == 1


# ------------------------------------------------------------------------------------------------ resume, best.pt


def test_resume_mid_epoch_matches_an_uninterrupted_run(tiny_root, tmp_path):
    split = 'train.split={train: {"00": ["000000", "000001"]}}'
    full = _cfg('train.max_steps=3', split)
    _train(full, tiny_root, tmp_path / 'full')
    _train(_cfg('train.max_steps=1', split), tiny_root, tmp_path / 'part')
    part = load_checkpoint(tmp_path / 'part' / 'last.pt')
    assert part['epoch'] == 0 and part['batches_in_epoch'] == 1  # stopped in the middle of the first epoch
    _train(full, tiny_root, tmp_path / 'resumed', resume=tmp_path / 'part' / 'last.pt')
    a = load_checkpoint(tmp_path / 'full' / 'last.pt')
    b = load_checkpoint(tmp_path / 'resumed' / 'last.pt')
    assert a['step'] == b['step'] == 3 and a['epoch'] == b['epoch'] == 1
    for k, v in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][k], v, rtol=1e-4, atol=1e-6, msg=k)
    la, lb = _scalars(tmp_path / 'full', 'train/total'), _scalars(tmp_path / 'resumed', 'train/total')
    assert sorted(lb) == [2, 3]
    for step in (2, 3):  # the next-step losses are those of the uninterrupted run
        assert lb[step] == pytest.approx(la[step], rel=1e-4)
    assert b['meta']['train_class_counts'] == a['meta']['train_class_counts']


def test_best_checkpoint_is_the_best_validated_step(tiny_root, tmp_path):
    from pu_ros.data.semantic_dataset import SemanticKittiDataset
    from pu_ros.inference.segmenter import load_segmentor
    from pu_ros.training.eval_segmentation import evaluate

    split = 'train.split={train: {"00": ["000000", "000001"]}, val: {"00": ["000002"]}}'
    _train(_cfg('train.max_steps=4', 'train.val_interval=1', 'train.lr=0.5', split), tiny_root, tmp_path)
    mious = _scalars(tmp_path, 'val/miou')
    assert sorted(mious) == [1, 2, 3, 4]  # the last step was validated once, not twice
    best_step = max(mious, key=lambda s: (mious[s], -s))  # the first of the best
    best = load_checkpoint(tmp_path / 'best.pt')
    last = load_checkpoint(tmp_path / 'last.pt')
    assert best['step'] == best_step
    assert best['meta']['metrics']['val_miou'] == pytest.approx(mious[best_step], abs=1e-6)
    assert last['meta']['best_miou'] == pytest.approx(max(mious.values()), abs=1e-6)
    # the weights in best.pt are the ones that scored it
    model, cfg, _ = load_segmentor(tmp_path / 'best.pt', torch.device('cpu'))
    val = SemanticKittiDataset([tiny_root], {'00': ['000002']}, cfg, train=False, use_image=False)
    again = evaluate(model, val, torch.device('cpu'), progress=False)['confusion'].miou()
    assert again == pytest.approx(mious[best_step], abs=1e-5)


def test_best_checkpoint_with_final_validation_only_and_bn_recalibration(tiny_root, tmp_path):
    split = 'train.split={train: {"00": ["000000"]}, val: {"00": ["000002"]}}'
    recal = "train.bn_recalibration={split: {'00': ['000001']}, scans: 2}"
    summary = _train(_cfg('train.max_steps=2', split, recal), tiny_root, tmp_path)
    assert summary['metrics']['bn_recalibrated']['layers'] > 0
    best = load_checkpoint(tmp_path / 'best.pt')
    last = load_checkpoint(tmp_path / 'last.pt')
    assert best['step'] == last['step'] == 2
    assert best['meta']['metrics']['val_miou'] == last['meta']['metrics']['val_miou']
    for k, v in last['state_dict'].items():
        assert torch.equal(best['state_dict'][k], v), k
    assert math.isfinite(last['meta']['metrics']['total'])
