"""PU-Flow upsampling latency and peak memory (``Upsampler.upsample``), with references measured beside it.

Prints JSON lines: ``what`` (case), ``n`` (input points), ``ratio``, ``device`` (CPU model or GPU name),
``threads``, ``median_ms``, ``peak_mem_mb``, ``baseline``, ``baseline_ms``, ``baseline_peak_mem_mb`` and ``ratio_ms``
(baseline_ms / median_ms: above 1 means the upsampler is faster than that reference). Both sides run in the same
process on the same cloud.

Cases: a 2048-point object (the PU-GAN ``fandisk`` input when ``../shared/data`` is present, else a synthetic
surface) ×4 and ×16, and a ~35k-point 32-beam synthetic LiDAR scan (``pu_ros.data.synthetic``) ×2 and ×4.
The references:
- ``midpoint``: the naive baseline, input points plus midpoints of edges to their nearest neighbours (no network);
- ``unbatched``: the same upsampler run patch by patch (``batch_size=1``): what batching buys;
- ``no_relax`` (object ×4 only, the FPS merge): the same upsampler without the Lloyd steps (``fps_relax=0``), the
  reference's merge: what those steps cost;
- ``no_rotations`` (object ×4 only): the same without the rotated copies (``fps_relax_rotations=1``): what the
  test-time rotations cost.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset before each measurement); on the CPU the process's
resident-set high-water mark (VmHWM, reset through ``/proc/self/clear_refs`` before each measurement).
Weights: ``../shared/weights/puflow/puflow-x4-pugan.pt`` when present, else an untrained network of the same
architecture (latency does not depend on the weight values).

    python bench/upsampling.py [--device cpu|cuda|all] [--repeats N] [--threads T] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('PU_ROS_SHARED_DATA', ROOT.parent / 'shared' / 'data')).parent
PUBLISHED = SHARED / 'weights' / 'puflow' / 'puflow-x4-pugan.pt'
OBJECT = SHARED / 'data' / 'upsampling' / 'pugan' / 'input' / 'fandisk.xyz'


def load_clouds() -> list[tuple[str, np.ndarray]]:
    """[(name, (N, 3 or 4) float32)]: the 2048-point object and a ~35k-point 32-beam scan."""
    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

    if OBJECT.is_file():
        obj = np.loadtxt(OBJECT, dtype=np.float32)[:, :3]
        obj_name = 'object_fandisk'
    else:
        rng = np.random.default_rng(0)
        uv = rng.uniform(-1, 1, size=(2048, 2))
        obj = np.column_stack([uv, 0.2 * np.sin(3 * uv[:, 0])]).astype(np.float32)
        obj_name = 'object_synthetic'
    scan = SyntheticSequence(SceneConfig(seed=0, n_frames=1, n_beams=32, n_azimuth=1150,
                                         render_image=False)).scan(0)[0]
    return [(obj_name, obj), ('scan_32beam', scan)]


def _reset_peak(device) -> None:
    import torch

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open('/proc/self/clear_refs', 'w') as fh:
            fh.write('5')
    except OSError:
        pass


def _peak_mb(device) -> float:
    import torch

    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def _measure(fn, repeats: int, device) -> tuple[float, float]:
    """(median ms, peak MB) of ``fn`` after one warm-up call."""
    import torch

    from bench.timing import median_ms

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else None
    fn()  # warm-up, before the peak is reset
    if sync:
        sync()
    _reset_peak(device)
    return median_ms(fn, repeats, warmup=0, sync=sync), _peak_mb(device)


def bench_device(device_str: str, repeats: int, clouds, weights: Path, quick: bool) -> list[dict]:
    """Measure every case on one device; returns the JSON records."""
    import torch

    from pu_ros.inference.patching import midpoint_upsample
    from pu_ros.inference.upsampler import Upsampler
    from pu_ros.ops.device import device_name

    device = torch.device(device_str)
    name, threads = device_name(device), torch.get_num_threads()
    cases = [(0, 4), (0, 16), (1, 2), (1, 4)]
    if quick:
        cases = [(0, 4), (1, 2)]
    records = []
    for ci, ratio in cases:
        cloud_name, cloud = clouds[ci]
        batched = Upsampler(weights=str(weights), ratio=ratio, device=device_str)
        single = Upsampler(weights=str(weights), ratio=ratio, device=device_str, batch_size=1)
        pts = torch.from_numpy(cloud).to(device)

        def run(up=batched, cloud=cloud):
            up.upsample(cloud)

        def naive(r=ratio, pts=pts):
            with torch.inference_mode():
                midpoint_upsample(pts[:, :3], r).cpu()

        ms, peak = _measure(run, repeats, device)
        refs = [('midpoint', *_measure(naive, repeats, device))]
        refs.append(('unbatched', *_measure(lambda up=single: run(up), max(1, repeats // 2), device)))
        if ci == 0 and ratio == 4:
            plain = Upsampler(weights=str(weights), ratio=ratio, device=device_str, fps_relax=0)
            refs.append(('no_relax', *_measure(lambda up=plain: run(up), repeats, device)))
            one = Upsampler(weights=str(weights), ratio=ratio, device=device_str, fps_relax_rotations=1)
            refs.append(('no_rotations', *_measure(lambda up=one: run(up), repeats, device)))
        for ref, ref_ms, ref_peak in refs:
            records.append({
                'what': f'upsample_{cloud_name}_x{ratio}', 'n': int(cloud.shape[0]), 'ratio': ratio,
                'device': name, 'threads': threads, 'repeats': repeats, 'median_ms': round(ms, 1),
                'peak_mem_mb': round(peak, 1), 'batch_size': batched.config.batch_size,
                'strategy': batched.passes(ratio), 'weights': weights.name, 'baseline': ref,
                'baseline_ms': round(ref_ms, 1), 'baseline_peak_mem_mb': round(ref_peak, 1),
                'ratio_ms': round(ref_ms / ms, 3),
            })
    return records


def main(argv=None) -> int:
    """Run the benchmark and print one JSON line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='all', choices=['cpu', 'cuda', 'all'])
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per measurement (median reported)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    parser.add_argument('--quick', action='store_true', help='only object x4 and scan x2')
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    weights = PUBLISHED
    if not weights.is_file():
        import tempfile

        from pu_ros.networks.checkpoint import save_checkpoint
        from pu_ros.networks.upsampling import PUFlow, PUFlowConfig

        weights = Path(tempfile.mkdtemp()) / 'untrained_puflow.pt'
        save_checkpoint(weights, PUFlow().state_dict(), {'model': PUFlowConfig().to_dict()}, {'trained_ratio': 4})
    clouds = load_clouds()
    devices = ['cpu'] if args.device == 'cpu' else ['cuda'] if args.device == 'cuda' else (
        ['cpu'] + (['cuda'] if torch.cuda.is_available() else []))
    for dev in devices:
        for rec in bench_device(dev, args.repeats, clouds, weights, args.quick):
            print(json.dumps(rec), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
