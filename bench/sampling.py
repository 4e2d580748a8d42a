"""SampleNet inference at LiDAR scale: our batched device path against the published code's path, plus FPS.

Prints JSON lines (``what``, ``n``, ``m``, ``device``, ``threads``, ``median_ms``, ``peak_mem_mb``, ``baseline``,
``baseline_ms``, ``ratio`` = baseline_ms / median_ms: above 1 means ours is faster). Both sides run in one process on
the same scan and, for SampleNet, on the same generated points.

- ``samplenet_120k_to_M`` (M = 16384 and 4096): ours = ``PatchSampleNet.sample_indices``: z-order patches, the shared
  head, hard projection, de-duplication and FPS completion inside every patch, all batched torch on the device.
  Reference = what the published code does after its network: nearest input point of every generated point in
  torch (here over the whole scan, as the published code has no patches), then ``.cpu().numpy()``, ``np.unique``
  and FPS completion over the whole cloud in numpy with Python loops (distances initialised one given point at a
  time, then one new point per iteration). Both get the head's generated points (de-normalised to the scan).
- ``fps_120k_to_4096``: :func:`pu_ros.ops.neighbors.farthest_point_sample` against a naive numpy FPS (a loop of
  distance updates).

Weights: ``models/sampling_samplenet_lidar.pt`` when present, else an untrained head (timing barely depends on the
weights, but an untrained head produces more duplicates and so more completion work on both sides).
Data: scan 000000 of ``$PU_ROS_SHARED_DATA/semantickitti/sequences/00`` (default ``../shared/data``) when present,
else a synthetic scan.

Timing: ours gets one warm-up call then ``--repeats`` timed calls (median); the numpy baselines need no warm-up and
get ``--baseline-repeats`` timed calls (default 1: the published path at 16k takes tens of seconds per call on one
CPU thread). ``repeats`` and ``baseline_repeats`` are in every line.

    python bench/sampling.py [--device cpu|cuda|all] [--repeats N] [--baseline-repeats N] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('PU_ROS_SHARED_DATA', ROOT.parent / 'shared' / 'data'))
REAL_SCAN = SHARED_DATA / 'semantickitti' / 'sequences' / '00' / 'velodyne' / '000000.bin'
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_scan() -> tuple[np.ndarray, str]:
    """(N, 4) float32 scan and where it came from."""
    if REAL_SCAN.is_file():
        return np.fromfile(REAL_SCAN, np.float32).reshape(-1, 4), 'semantickitti 00/000000'
    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

    return SyntheticSequence(SceneConfig(seed=0, n_frames=1, render_image=False)).scan(0)[0], 'synthetic seed 0'


def naive_fps_from(pts: np.ndarray, k: int, given: np.ndarray) -> np.ndarray:
    """The published completion: indices of ``given`` then farthest points up to ``k`` (numpy, Python loops)."""
    out = np.zeros(k, np.int64)
    t = len(given)
    out[:t] = given
    dist = ((pts - pts[out[0]]) ** 2).sum(1)
    for i in range(1, t):
        dist = np.minimum(dist, ((pts - pts[out[i]]) ** 2).sum(1))
    for i in range(t, k):
        out[i] = int(np.argmax(dist))
        dist = np.minimum(dist, ((pts - pts[out[i]]) ** 2).sum(1))
    return out


def published_path(xyz, generated, m: int) -> np.ndarray:
    """Reference: torch nearest neighbours, then numpy de-duplication and FPS completion on the host."""
    from pu_ros.ops.neighbors import knn_points

    idx = knn_points(generated, xyz, 1)[1][:, 0].cpu().numpy()
    pts = xyz.cpu().numpy()
    _, first = np.unique(idx, return_index=True)
    best = idx[np.sort(first)][:m]
    return naive_fps_from(pts, m, best)


def generated_points(model, xyz, m: int):
    """The head's generated points for an ``m``-point request, in scan coordinates ((G * m_g, 3))."""
    from pu_ros.networks.sampling.patches import allocate, make_patches, normalise_patches

    index, sizes = make_patches(xyz, model.patch_size)
    counts = allocate(m, sizes)
    local, centre, scale = normalise_patches(xyz, index)
    gen = model.net.simplify(local)[:, :int(counts.max())] * scale + centre
    keep = np.arange(gen.shape[1])[None, :] < counts.cpu().numpy()[:, None]
    return gen[torch_bool(keep, gen.device)]


def torch_bool(mask: np.ndarray, device):
    """Boolean numpy mask -> torch bool tensor on ``device``."""
    import torch

    return torch.from_numpy(mask).to(device)


def bench_device(dev: str, scan: np.ndarray, source: str, sizes: list[int], repeats: int, threads: int,
                 baseline_repeats: int = 1) -> None:
    """All measurements on one device."""
    import torch

    from bench.timing import median_ms, process_peak_mb
    from pu_ros.inference.sampler import load_samplenet
    from pu_ros.networks.sampling.patches import PatchSampleNet
    from pu_ros.ops.device import device_name
    from pu_ros.ops.neighbors import farthest_point_sample

    weights = ROOT / 'models' / 'sampling_samplenet_lidar.pt'
    if weights.is_file():
        model, _ = load_samplenet(str(weights), dev)
        wsrc = 'models/sampling_samplenet_lidar.pt'
    else:
        model, wsrc = PatchSampleNet().to(dev).eval(), 'untrained'
    xyz = torch.from_numpy(scan[:, :3].copy()).to(dev)

    def sync():
        if dev == 'cuda':
            torch.cuda.synchronize()

    def median(fn, n=repeats, warm=True):
        return median_ms(fn, n, warmup=1 if warm else 0, sync=sync)

    common = {'n': int(xyz.shape[0]), 'device': device_name(dev), 'threads': threads, 'data': source,
              'weights': wsrc, 'repeats': repeats, 'baseline_repeats': baseline_repeats}
    with torch.no_grad():
        for m in sizes:
            if dev == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            ours = median(lambda m=m: model.sample_indices(xyz, m))
            peak = (torch.cuda.max_memory_allocated() / 2**20 if dev == 'cuda'
                    else process_peak_mb())
            gen = generated_points(model, xyz, m)
            got = []
            ref = median(lambda m=m, gen=gen, got=got: got.append(published_path(xyz, gen, m)), baseline_repeats, False)
            check = got[-1]
            mine = model.sample_indices(xyz, m)
            print(json.dumps({'what': f'samplenet_120k_to_{m}', **common, 'm': m, 'median_ms': round(ours, 2),
                              'peak_mem_mb': round(peak, 1), 'baseline': 'published path (torch kNN, numpy '
                              'unique + FPS completion loop)', 'baseline_ms': round(ref, 2),
                              'ratio': round(ref / ours, 2), 'distinct': int(len(set(mine.tolist()))),
                              'baseline_distinct': int(len(set(check.tolist())))}),
                  flush=True)
        m = 4096
        ours = median(lambda: farthest_point_sample(xyz, m))
        pts = scan[:, :3].astype(np.float32)
        ref = median(lambda: naive_fps_from(pts, m, np.zeros(1, np.int64)), baseline_repeats, False)
        print(json.dumps({'what': f'fps_120k_to_{m}', **common, 'm': m, 'median_ms': round(ours, 2),
                          'baseline': 'naive numpy FPS loop', 'baseline_ms': round(ref, 2),
                          'ratio': round(ref / ours, 2)}), flush=True)


def main(argv=None) -> int:
    """Run the benchmark; one JSON line per measurement."""
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='all', choices=['cpu', 'cuda', 'all'])
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--baseline-repeats', type=int, default=1)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--sizes', default='16384,4096')
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    scan, source = load_scan()
    devices = ['cpu', 'cuda'] if args.device == 'all' else [args.device]
    for dev in devices:
        if dev == 'cuda' and not torch.cuda.is_available():
            continue
        bench_device(dev, scan, source, [int(s) for s in args.sizes.split(',')], args.repeats, args.threads,
                     args.baseline_repeats)
    return 0


if __name__ == '__main__':
    sys.exit(main())
