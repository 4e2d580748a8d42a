"""CUDA paths (``gpu`` marker; ``make test-gpu`` runs just these): each compared with the CPU or a dense twin.

Without CUDA every test here is skipped by test/conftest.py. ``PU_ROS_GPU_DRY_RUN=1`` runs them on the CPU
instead (both sides on the CPU): that checks the tests themselves, not CUDA, and is how they were written on a
machine without a GPU.
"""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pu_ros.networks import sparse
from pu_ros.networks.checkpoint import save_checkpoint
from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS

pytestmark = pytest.mark.gpu

DEVICE = 'cpu' if os.environ.get('PU_ROS_GPU_DRY_RUN') else 'cuda'


@pytest.fixture(scope='module')
def seg_checkpoint(tmp_path_factory):
    """Untrained tiny 3D+2D checkpoint with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    cfg = SegmentationConfig(hidden_size=8)
    model = Segmentor2DPASS(cfg)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith('running_var'):
                buf.uniform_(0.5, 2.0)
            elif name.endswith('running_mean'):
                buf.uniform_(-0.3, 0.3)
    path = tmp_path_factory.mktemp('gpu') / 'seg.pt'
    return save_checkpoint(path, model.state_dict(), {'model': cfg.to_dict(), 'train': {}}, {'step': 0})


@pytest.fixture(scope='module')
def scene():
    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

    seq = SyntheticSequence(SceneConfig(seed=4, n_frames=1, n_beams=16, n_azimuth=512, image_width=800,
                                        image_height=256))
    f = seq.frame(0)
    return f['points'], f['image'], seq.calib


@pytest.mark.parametrize('fused', [False, True])
def test_segmenter_on_cuda_matches_cpu(seg_checkpoint, scene, fused):
    from pu_ros.inference.segmenter import Segmenter

    points, image, calib = scene
    kw = {'image': image, 'calib': calib} if fused else {}
    cpu = Segmenter(seg_checkpoint, device='cpu', fused=fused).segment(points, probs=True, **kw)
    gpu_seg = Segmenter(seg_checkpoint, device=DEVICE, fused=fused)
    assert gpu_seg.device.type == torch.device(DEVICE).type
    gpu = gpu_seg.segment(points, probs=True, **kw)
    np.testing.assert_array_equal(gpu.in_range, cpu.in_range)
    np.testing.assert_allclose(gpu.probs, cpu.probs, atol=2e-3)
    assert np.mean(gpu.labels == cpu.labels) > 0.995  # near-ties may flip a handful of points
    labels_only = gpu_seg.segment(points, probs=False, **kw)
    np.testing.assert_array_equal(labels_only.labels, gpu.labels)


def _dense_subm_twin(coords, feats, weight, shape):
    """Submanifold 3x3x3 convolution done densely with conv3d, read back at the occupied sites."""
    idx = coords[:, 1:].long()
    dense = torch.zeros(*shape, feats.shape[1], dtype=feats.dtype, device=feats.device)
    dense[idx[:, 0], idx[:, 1], idx[:, 2]] = feats
    out = F.conv3d(dense.permute(3, 0, 1, 2).unsqueeze(0), weight.permute(0, 4, 1, 2, 3), padding=1)
    return out[0][:, idx[:, 0], idx[:, 1], idx[:, 2]].T


@pytest.mark.parametrize('backend', ['spconv', 'spconv-triton'])
def test_sparse_backend_on_cuda_matches_dense_conv(backend):
    if backend == 'spconv-triton':
        pytest.importorskip('spconv_triton', reason='spconv_triton is not installed')
    sp = sparse.sparse_backend(backend)
    g = torch.Generator().manual_seed(0)
    shape = (12, 10, 8)
    coords = torch.nonzero(torch.rand(shape, generator=g) < 0.3).int()
    coords = torch.cat([torch.zeros(len(coords), 1, dtype=torch.int32), coords], dim=1)
    feats = torch.randn(len(coords), 16, generator=g)
    conv = sp.SubMConv3d(16, 32, 3, bias=False, indice_key='g').to(DEVICE)
    x = feats.clone().to(DEVICE).requires_grad_(True)
    out = conv(sp.SparseConvTensor(x, coords.to(DEVICE), list(shape), 1)).features
    upstream = torch.randn(out.shape, generator=g).to(DEVICE)
    (out * upstream).sum().backward()

    xd = feats.detach().clone().requires_grad_(True)
    wd = conv.weight.detach().cpu().clone().requires_grad_(True)
    ref = _dense_subm_twin(coords, xd, wd, shape)
    (ref * upstream.cpu()).sum().backward()
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(x.grad.cpu(), xd.grad, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(conv.weight.grad.cpu(), wd.grad, rtol=1e-3, atol=1e-2)
    if DEVICE == 'cuda':  # the half-precision kernels autocast uses
        with torch.autocast('cuda', dtype=torch.float16):
            half = conv(sp.SparseConvTensor(feats.to(DEVICE), coords.to(DEVICE), list(shape), 1)).features
        torch.testing.assert_close(half.float().cpu(), ref.detach(), rtol=2e-2, atol=2e-2)


def test_one_amp_training_step(tiny_root, tmp_path):
    from pu_ros.networks.checkpoint import load_checkpoint
    from pu_ros.training.train_segmentation import load_config, train

    cfg = load_config(None, ['model.hidden_size=8', 'model.image_size=[64,128]', 'train.batch_size=2',
                             'train.num_workers=0', 'train.warmup_steps=1', 'train.max_steps=2', 'train.amp=true',
                             'train.log_interval=1',
                             "train.split={train: {'00': ['000000', '000001']}, val: {'00': ['000002']}}"])
    summary = train(cfg, [str(tiny_root)], tmp_path, device=DEVICE, progress=False)
    assert summary['step'] == 2 and np.isfinite(summary['losses']['total'])
    ckpt = load_checkpoint(tmp_path / 'last.pt')
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values() if v.is_floating_point())
    if DEVICE == 'cuda':
        assert ckpt['scaler'] and ckpt['scaler']['scale'] > 0  # the GradScaler ran
        assert ckpt['meta']['device'] != 'cpu'
    assert 0.0 <= ckpt['meta']['metrics']['val_miou'] <= 1.0
    assert (tmp_path / 'best.pt').is_file()


def test_neighbours_on_cuda_match_cpu():
    from pu_ros.ops.neighbors import farthest_point_sample, knn_points

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 3000, 3, generator=g) * 20 + 30
    query = torch.randn(2, 500, 3, generator=g) * 20 + 30
    d_cpu, i_cpu = knn_points(query, ref, 8)
    d_gpu, i_gpu = knn_points(query.to(DEVICE), ref.to(DEVICE), 8)
    torch.testing.assert_close(d_gpu.cpu(), d_cpu, rtol=1e-4, atol=1e-4)
    assert (i_gpu.cpu() == i_cpu).float().mean() > 0.999
    f_cpu = farthest_point_sample(ref, 256)
    f_gpu = farthest_point_sample(ref.to(DEVICE), 256)
    assert torch.equal(f_gpu.cpu(), f_cpu)


def test_sampler_on_cuda_matches_cpu():
    mod = pytest.importorskip('pu_ros.inference.sampler', reason='pu_ros.inference.sampler is not in this tree')
    rng = np.random.default_rng(0)
    points = (rng.standard_normal((4000, 4)) * [20, 20, 1, 0.2]).astype(np.float32)
    cpu = mod.Sampler(mod.SamplerConfig(method='fps', num_points=512, device='cpu')).sample(points)
    gpu = mod.Sampler(mod.SamplerConfig(method='fps', num_points=512, device=DEVICE)).sample(points)
    np.testing.assert_array_equal(gpu.indices, cpu.indices)


def test_upsampler_on_cuda_matches_cpu():
    mod = pytest.importorskip('pu_ros.inference.upsampler', reason='pu_ros.inference.upsampler is not in this tree')
    try:
        cpu_up = mod.Upsampler(mod.UpsamplerConfig(device='cpu'))
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f'no packaged upsampler weights: {exc}')
    rng = np.random.default_rng(0)
    points = (rng.standard_normal((600, 3)) * [5, 5, 0.5]).astype(np.float32)
    cpu = cpu_up.upsample(points)
    gpu = mod.Upsampler(mod.UpsamplerConfig(device=DEVICE)).upsample(points)
    assert gpu.shape == cpu.shape and gpu.shape[0] >= 2 * points.shape[0]
    assert np.isfinite(gpu).all()
    # same cloud up to the flow's numerics (and any sampling): the bounding boxes agree
    np.testing.assert_allclose(gpu.min(0), cpu.min(0), atol=0.5)
    np.testing.assert_allclose(gpu.max(0), cpu.max(0), atol=0.5)
