"""2DPASS-style segmentor: config, spconv CPU backward, 3D/2D branches, fusion, losses, predict (CPU, tiny data)."""

import numpy as np
import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('spconv')
pytest.importorskip('torchvision')

import torch.nn.functional as F  # noqa: E402

from pu_ros.networks import sparse  # noqa: E402
from pu_ros.networks.losses import (  # noqa: E402
    SegmentationLoss,
    cross_entropy,
    kl_distillation,
    lovasz_softmax,
)
from pu_ros.networks.segmentation import (  # noqa: E402
    SegmentationConfig,
    SegmentationConfigError,
    Segmentor2DPASS,
    gather_pixel_features,
)

NUM_CLASSES = 20


def small_cfg(**kw):
    base = dict(hidden_size=16, scale_list=(2, 4, 8, 16), use_image=False)
    base.update(kw)
    return SegmentationConfig(**base)


def make_batch(n=1500, batch_size=2, image_hw=None, m=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([15.0, 15.0, 1.5]) - torch.tensor([0, 0, 1.0])
    points = torch.cat([xyz, torch.rand(n, 1, generator=g)], dim=1)
    batch_idx = torch.sort(torch.randint(0, batch_size, (n,), generator=g)).values
    batch = {
        'points': points,
        'batch_idx': batch_idx,
        'batch_size': batch_size,
        'labels': torch.randint(0, NUM_CLASSES, (n,), generator=g),
    }
    if image_hw is not None:
        h, w = image_hw
        batch['images'] = torch.randn(batch_size, 3, h, w, generator=g)
        batch['pix_point_idx'] = torch.randperm(n, generator=g)[:m]
        batch['pix_uv'] = torch.stack(
            [torch.randint(0, w, (m,), generator=g), torch.randint(0, h, (m,), generator=g)], dim=1
        )
    return batch


# ------------------------------------------------------------------------------------------------- config


def test_config_round_trip_and_defaults():
    cfg = SegmentationConfig(class_weights=[1.0] * NUM_CLASSES, scale_list=[2, 4, 8])
    d = cfg.to_dict()
    assert isinstance(d['point_range'], list) and isinstance(d['class_weights'], list)
    again = SegmentationConfig.from_dict(d)
    assert again == cfg
    assert again.scale_list == (2, 4, 8) and isinstance(again.point_range, tuple)
    assert SegmentationConfig.from_dict({}) == SegmentationConfig()
    assert SegmentationConfig().grid_shape() == (1000, 1000, 60)


def test_config_unknown_key_and_bad_values():
    with pytest.raises(SegmentationConfigError, match='unknown key.*hiden_size'):
        SegmentationConfig.from_dict({'hiden_size': 64})
    with pytest.raises(ValueError, match='class_weights'):
        SegmentationConfig(class_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match='scale_list'):
        SegmentationConfig(scale_list=(4, 2))
    with pytest.raises(ValueError, match='sparse_backend'):
        SegmentationConfig(sparse_backend='torchsparse')
    with pytest.raises(ValueError, match='point_range'):
        SegmentationConfig(point_range=(0, 0, 0, -1, 1, 1))


# ---------------------------------------------------------------------------------------- sparse backend


def test_spconv_cpu_backward_matches_dense_conv():
    """SubMConv3d forward and backward on CPU (through the CPU-backward workaround) equal a dense conv3d."""
    sp = sparse.sparse_backend('spconv')
    g = torch.Generator().manual_seed(0)
    shape = (6, 5, 4)
    occupied = torch.rand(shape, generator=g) < 0.4
    coords = torch.nonzero(occupied).int()
    coords = torch.cat([torch.zeros(len(coords), 1, dtype=torch.int32), coords], dim=1)
    feats = torch.randn(len(coords), 3, generator=g, requires_grad=True)
    conv = sp.SubMConv3d(3, 4, 3, bias=False, indice_key='t')
    out = conv(sp.SparseConvTensor(feats, coords, list(shape), 1)).features
    upstream = torch.randn(out.shape, generator=g)
    (out * upstream).sum().backward()

    feats_d = feats.detach().clone().requires_grad_(True)
    weight_d = conv.weight.detach().clone().requires_grad_(True)  # (out, k, k, k, in)
    idx = coords[:, 1:].long()
    dense = torch.zeros(*shape, 3)
    dense[idx[:, 0], idx[:, 1], idx[:, 2]] = feats_d
    dense = dense.permute(3, 0, 1, 2).unsqueeze(0)  # (1, 3, X, Y, Z)
    ref = F.conv3d(dense, weight_d.permute(0, 4, 1, 2, 3), padding=1)[0][:, idx[:, 0], idx[:, 1], idx[:, 2]].T
    (ref * upstream).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(feats.grad, feats_d.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, weight_d.grad, rtol=1e-4, atol=1e-5)


def test_cpu_workarounds_are_pass_throughs_for_cuda(monkeypatch):
    import spconv.pytorch.ops as ops

    sparse.sparse_backend('spconv')
    for name in ('get_current_stream', 'get_indice_pairs', 'indice_conv', 'indice_conv_backward'):
        assert getattr(getattr(ops, name), '_pu_ros_cpu_safe', False), name
    assert sparse._install_cpu_workarounds(ops) == []  # idempotent

    calls = []

    class FakeOps:
        @staticmethod
        def get_current_stream():
            calls.append('stream')
            return 1234

        @staticmethod
        def indice_conv(features):
            calls.append(torch.get_num_threads())
            return features

    assert sparse._install_cpu_workarounds(FakeOps) == ['get_current_stream', 'indice_conv']
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert FakeOps.get_current_stream() == 0 and not calls
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert FakeOps.get_current_stream() == 1234 and calls == ['stream']

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        FakeOps.indice_conv(torch.zeros(1))  # CPU tensor: single-threaded inside, restored after
        assert calls[-1] == 1 and torch.get_num_threads() == 2
        FakeOps.indice_conv(torch.zeros(1, device='meta'))  # not a CPU tensor: untouched
        assert calls[-1] == 2
    finally:
        torch.set_num_threads(before)


def test_spconv_cpu_conv_is_deterministic_with_two_threads():
    """The CPU scatter-add of spconv drops rows on 2+ threads; with the workaround, repeated runs agree exactly."""
    sp = sparse.sparse_backend('spconv')
    g = torch.Generator().manual_seed(1)
    coords = torch.unique(torch.randint(0, 60, (20000, 3), generator=g), dim=0)  # ~19k voxels: the race shows
    coords = torch.cat([torch.zeros(len(coords), 1, dtype=torch.int64), coords], dim=1).int()
    feats = torch.randn(len(coords), 16, generator=g, requires_grad=True)
    conv = sp.SubMConv3d(16, 16, 3, bias=False, indice_key='d')
    x = sp.SparseConvTensor(feats, coords, [60, 60, 60], 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first = conv(x).features
        (first * first.detach()).sum().backward()
        grad0 = feats.grad.clone()
        for _ in range(20):
            feats.grad = None
            out = conv(x).features
            assert torch.equal(out, first)
            (out * first.detach()).sum().backward()
            assert torch.equal(feats.grad, grad0)
    finally:
        torch.set_num_threads(before)


def test_sparse_backend_errors():
    with pytest.raises(ValueError, match='unknown sparse_backend'):
        sparse.sparse_backend('minkowski')
    try:
        import spconv_triton  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match='spconv_triton'):
            sparse.sparse_backend('spconv-triton')


# ---------------------------------------------------------------------------------------------- networks


def test_parameter_count_3d_matches_published_size():
    model = Segmentor2DPASS(SegmentationConfig(use_image=False))
    count = model.parameter_count_3d()
    print(f'3D branch parameters (4 scales, 64 channels): {count:,}')
    assert abs(count - 1.9e6) <= 0.1 * 1.9e6
    assert count == sum(p.numel() for p in model.parameters())  # without the 2D branch, all of it is 3D


def test_3d_forward_backward_shapes_and_gradients():
    torch.manual_seed(0)
    model = Segmentor2DPASS(small_cfg())
    batch = make_batch()
    out = model(batch)
    assert set(out) == {'logits'}
    assert out['logits'].shape == (1500, NUM_CLASSES) and out['logits'].dtype == torch.float32
    losses = SegmentationLoss(model.cfg)(out, batch)
    assert float(losses['xm']) == 0.0 and float(losses['seg2d']) == 0.0
    losses['total'].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(float(p.grad.abs().sum()) > 0 for n, p in model.named_parameters() if 'conv' in n)


def test_3d_output_depends_on_sample_only():
    """Points of one sample give the same logits whether batched with another sample or alone (eval mode)."""
    torch.manual_seed(0)
    model = Segmentor2DPASS(small_cfg()).eval()
    batch = make_batch(batch_size=2)
    both = model.predict(batch)
    first = batch['batch_idx'] == 0
    alone = {'points': batch['points'][first], 'batch_idx': batch['batch_idx'][first], 'batch_size': 1}
    torch.testing.assert_close(model.predict(alone), both[first], rtol=1e-4, atol=1e-4)


def test_gather_pixel_features_is_bilinear_upsampling():
    g = torch.Generator().manual_seed(1)
    fmap = torch.randn(2, 5, 4, 6, generator=g)
    stride = 4
    up = F.interpolate(fmap, scale_factor=stride, mode='bilinear', align_corners=False)  # (2, 5, 16, 24)
    sample = torch.randint(0, 2, (50,), generator=g)
    uv = torch.stack([torch.randint(0, 24, (50,), generator=g), torch.randint(0, 16, (50,), generator=g)], dim=1)
    got = gather_pixel_features(fmap, stride, sample, uv)
    torch.testing.assert_close(got, up[sample, :, uv[:, 1], uv[:, 0]], rtol=1e-5, atol=1e-5)
    uv_map = uv % torch.tensor([6, 4])  # stride 1: exactly the map's cells
    torch.testing.assert_close(
        gather_pixel_features(fmap, 1, sample, uv_map), fmap[sample, :, uv_map[:, 1], uv_map[:, 0]]
    )


def test_2d_branch_and_fusion_forward_backward():
    torch.manual_seed(0)
    cfg = small_cfg(use_image=True)
    model = Segmentor2DPASS(cfg)
    batch = make_batch(image_hw=(32, 48))
    out = model(batch)
    m, s = 300, len(cfg.scale_list)
    assert out['logits'].shape == (1500, NUM_CLASSES)
    assert out['logits_fused'].shape == (m, NUM_CLASSES) and out['logits_2d'].shape == (m, NUM_CLASSES)
    assert len(out['logits_fused_scales']) == s and all(t.shape == (m, NUM_CLASSES) for t in out['logits_fused_scales'])
    assert len(out['logits_3d_scales']) == s and all(t.shape == (1500, NUM_CLASSES) for t in out['logits_3d_scales'])
    losses = SegmentationLoss(cfg)(out, batch)
    for key in ('total', 'ce', 'lovasz', 'seg3d_scales', 'seg2d', 'xm'):
        assert torch.isfinite(losses[key]), key
    assert float(losses['seg2d']) > 0 and float(losses['xm']) >= 0
    losses['total'].backward()
    for prefix in ('backbone_3d.', 'backbone_2d.', 'fusion.', 'head_fused.', 'head_2d.'):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), prefix
    assert float(model.backbone_2d.stem[0].weight.grad.abs().sum()) > 0


def test_predict_fused_and_3d_only():
    torch.manual_seed(0)
    model = Segmentor2DPASS(small_cfg(use_image=True)).train()
    batch = make_batch(image_hw=(32, 48))
    only_3d = model.predict(batch)
    fused = model.predict(batch, fused=True)
    assert model.training  # state restored
    assert only_3d.shape == fused.shape == (1500, NUM_CLASSES)
    outside = torch.ones(1500, dtype=torch.bool)
    outside[batch['pix_point_idx']] = False
    torch.testing.assert_close(fused[outside], only_3d[outside])
    assert not torch.allclose(fused[~outside], only_3d[~outside])
    no_image = {k: v for k, v in batch.items() if k not in ('images', 'pix_point_idx', 'pix_uv')}
    assert model.predict(no_image).shape == (1500, NUM_CLASSES)
    with pytest.raises(ValueError, match='images'):
        model.predict(no_image, fused=True)
    with pytest.raises(ValueError, match='use_image=True'):
        Segmentor2DPASS(small_cfg()).predict(batch, fused=True)


def test_bad_batches_are_rejected():
    model = Segmentor2DPASS(small_cfg(use_image=True))
    batch = make_batch(image_hw=(32, 48))
    bad_uv = dict(batch, pix_uv=batch['pix_uv'] + torch.tensor([48, 0]))
    with pytest.raises(ValueError, match='pix_uv outside'):
        model(bad_uv)
    with pytest.raises(ValueError, match='pix_point_idx'):
        model(dict(batch, pix_point_idx=batch['pix_point_idx'] + 5000))
    with pytest.raises(ValueError, match='points'):
        model({'batch_idx': batch['batch_idx'], 'batch_size': 2})
    outside = dict(batch, points=batch['points'] + torch.tensor([100.0, 0, 0, 0]))
    with pytest.raises(ValueError, match='outside point_range'):
        model(outside)


# ------------------------------------------------------------------------------------------------ losses


def _lovasz_twin(probs, labels, ignore):
    """Per-class loop, following the paper's algorithm step by step (numpy, float64)."""
    keep = labels != ignore
    probs, labels = probs[keep].astype(np.float64), labels[keep]
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).astype(np.float64)
        if fg.sum() == 0:
            continue
        errors = np.abs(fg - probs[:, c])
        order = np.argsort(-errors, kind='stable')
        e, f = errors[order], fg[order]
        jac = []
        for k in range(1, len(f) + 1):
            inter = f.sum() - f[:k].sum()
            union = f.sum() + (1 - f[:k]).sum()
            jac.append(1 - inter / union)
        grad = np.diff(np.concatenate([[0.0], jac]))
        losses.append(float((e * grad).sum()))
    return float(np.mean(losses))


def test_lovasz_matches_loop_twin_and_is_zero_when_perfect():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(200, 6, generator=g)
    labels = torch.randint(0, 6, (200,), generator=g)
    probs = logits.softmax(1)
    got = float(lovasz_softmax(probs, labels, ignore_index=0))
    assert got == pytest.approx(_lovasz_twin(probs.numpy(), labels.numpy(), 0), rel=1e-5, abs=1e-6)
    perfect = F.one_hot(labels, 6).float()
    assert float(lovasz_softmax(perfect, labels, ignore_index=0)) == pytest.approx(0.0, abs=1e-7)
    wrong = F.one_hot((labels + 1) % 6, 6).float()
    assert float(lovasz_softmax(wrong, labels, ignore_index=0)) == pytest.approx(1.0, abs=1e-6)


def test_cross_entropy_weights_and_ignore():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(100, 4, generator=g)
    labels = torch.randint(0, 4, (100,), generator=g)
    weight = torch.tensor([0.0, 1.0, 2.0, 5.0])
    nll = -logits.log_softmax(1)[torch.arange(100), labels]
    keep = labels != 0
    expected = (weight[labels] * nll)[keep].sum() / weight[labels][keep].sum()
    torch.testing.assert_close(cross_entropy(logits, labels, weight, ignore_index=0), expected)
    unweighted = cross_entropy(logits, labels, None, ignore_index=0)
    torch.testing.assert_close(unweighted, nll[keep].mean())
    all_ignored = cross_entropy(logits.requires_grad_(True), torch.zeros(100, dtype=torch.long), None, 0)
    assert float(all_ignored.detach()) == 0.0
    all_ignored.backward()
    assert torch.isfinite(logits.grad).all()


def test_kl_distillation_non_negative_and_teacher_detached():
    g = torch.Generator().manual_seed(4)
    student = torch.randn(50, 5, generator=g, requires_grad=True)
    teacher = torch.randn(50, 5, generator=g, requires_grad=True)
    kl = kl_distillation(student, teacher)
    p = teacher.detach().softmax(1)
    expected = (p * (p.log() - student.detach().log_softmax(1))).sum(1).mean()
    torch.testing.assert_close(kl.detach(), expected)
    assert float(kl.detach()) >= 0
    assert float(kl_distillation(teacher.detach(), teacher.detach())) == pytest.approx(0.0, abs=1e-6)
    kl.backward()
    assert teacher.grad is None and torch.isfinite(student.grad).all()


def test_segmentation_loss_class_weights_change_ce():
    cfg_plain = small_cfg()
    weights = [0.0] + [1.0] * 18 + [10.0]
    cfg_weighted = small_cfg(class_weights=weights)
    g = torch.Generator().manual_seed(5)
    outputs = {'logits': torch.randn(400, NUM_CLASSES, generator=g)}
    batch = {'labels': torch.randint(0, NUM_CLASSES, (400,), generator=g)}
    plain = SegmentationLoss(cfg_plain)(outputs, batch)
    weighted = SegmentationLoss(cfg_weighted)(outputs, batch)
    assert float(plain['ce']) != pytest.approx(float(weighted['ce']))
    torch.testing.assert_close(plain['lovasz'], weighted['lovasz'])
    torch.testing.assert_close(
        weighted['ce'], F.cross_entropy(outputs['logits'], batch['labels'], torch.tensor(weights), ignore_index=0)
    )


def test_batch_with_no_point_in_the_image():
    cfg = small_cfg(use_image=True)
    model = Segmentor2DPASS(cfg)
    batch = make_batch(image_hw=(32, 48), m=0)
    out = model(batch)
    assert out['logits_fused'].shape == (0, NUM_CLASSES)
    losses = SegmentationLoss(cfg)(out, batch)
    assert float(losses['seg2d']) == 0.0 and float(losses['xm']) == 0.0
    losses['total'].backward()
    assert model.predict(batch, fused=True).shape == (1500, NUM_CLASSES)
