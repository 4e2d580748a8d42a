"""No memory growth (issue 6, item 8): 200 inference calls and 50 training steps keep RSS (and CUDA memory) flat.

The seed code grew GPU memory by ~2.2 MB per iteration; here the growth between an early and the final measurement
must stay below a few MB in total, i.e. well under 100 kB per iteration.
"""

import gc

import numpy as np
import pytest
import torch

from pu_ros.inference.upsampler import Upsampler
from pu_ros.networks.checkpoint import save_checkpoint
from pu_ros.networks.upsampling import PUFlow, PUFlowConfig

TINY = PUFlowConfig(k=8, interp_k=4, hidden=16, feat_channels=(8, 8, 16, 16, 16, 16), growth=(4, 4, 8, 8, 8, 8),
                    cond_channels=(8, 8, 16, 16, 16, 16))


def _rss_bytes() -> int:
    with open('/proc/self/statm') as fh:
        return int(fh.read().split()[1]) * 4096


def _measure():
    gc.collect()
    cuda = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
    return _rss_bytes(), cuda


@pytest.mark.slow
def test_memory_flat_over_inference_and_training(tmp_path):
    torch.manual_seed(0)
    model = PUFlow(TINY)
    path = save_checkpoint(tmp_path / 'tiny.pt', model.state_dict(), {'model': TINY.to_dict()}, {'trained_ratio': 4})
    up = Upsampler(weights=str(path), ratio=4, patch_size=32, batch_size=8, merge='parent', patch_overlap=1.0)
    rng = np.random.default_rng(0)
    clouds = [rng.normal(size=(64, 4)).astype(np.float32) for _ in range(4)]

    def infer(i):
        out = up.upsample(clouds[i % 4])
        assert out.shape == (256, 4)

    for i in range(10):  # warm-up: allocator pools, lazy inits
        infer(i)
    rss0, cuda0 = _measure()
    for i in range(200):
        infer(i)
    rss1, cuda1 = _measure()

    device = up.device
    net = PUFlow(TINY).to(device).train()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(4, 32, 3, device=device)
    x = x / x.norm(dim=-1).amax()

    def step():
        dense, nll = net.upsample_with_nll(x, 2)
        loss = nll + (dense.view(4, 32, 2, 3) - x[:, :, None]).pow(2).mean()  # a simple NLL + reconstruction step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    losses = [step() for _ in range(10)]  # warm-up (Adam state is allocated on the first step)
    rss2, cuda2 = _measure()
    losses += [step() for _ in range(50)]
    rss3, cuda3 = _measure()

    mb = 1024 * 1024
    assert np.isfinite(losses).all()
    assert rss1 - rss0 < 8 * mb, f'inference RSS grew {(rss1 - rss0) / mb:.1f} MB over 200 calls'
    assert rss3 - rss2 < 8 * mb, f'training RSS grew {(rss3 - rss2) / mb:.1f} MB over 50 steps'
    if torch.cuda.is_available():
        assert cuda1 - cuda0 < mb and cuda3 - cuda2 < mb
