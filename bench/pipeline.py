"""Per-stage and end-to-end latency and drops of the ROS 2 pipeline at 10 Hz over the real seq 00 bag.

Runs ``pu-ros pipeline``'s engine (:func:`pu_ros.ros.pipeline_runner.run_pipeline`: the stage nodes in one process,
the bag played by the player node in its own thread, every message through DDS) for segmentation only,
sampler + segmentation and upsampler + segmentation, on the CPU and on CUDA when present. A configuration whose
stage is not available in this version is reported as a JSON line with ``skipped`` and the reason.

Prints JSON lines: ``what`` (``pipeline/<stages>``), ``n`` (clouds fed), ``device`` (CPU model or GPU name),
``rate_hz``, ``frames_in`` / ``frames_out`` / ``frames_dropped``, ``stages`` (per stage: ``latency_ms`` = publish of
its output minus publish of its input, p50/p90/max, and the node's own processing time ``node_ms``),
``median_ms`` / ``p90_ms`` / ``max_ms`` (end to end: labelled cloud published minus bag cloud published),
``baseline`` = ``Segmenter.segment`` called directly on the same scans (no ROS), ``baseline_ms`` its median,
``ratio`` = baseline_ms / median_ms (below 1: the pipeline, with its waiting and transport, costs more than the bare
network call), ``peak_mem_mb`` (resident, whole process).

At 10 Hz a stage slower than 100 ms drops frames by design (sensor-data QoS, keep last 1): ``frames_dropped`` says
how many; latencies are those of the frames that came out.

    python bench/pipeline.py [--bag BAG] [--device cpu|cuda|all] [--rate 1.0] [--frames N] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('PU_ROS_SHARED_DATA', ROOT.parent / 'shared' / 'data'))
SEQ00 = SHARED_DATA / 'semantickitti' / 'sequences' / '00'
CONFIGS = (('segmentation',), ('sampler', 'segmentation'), ('upsampler', 'segmentation'))


def _emit(rec: dict) -> None:
    print(json.dumps(rec), flush=True)


def _scans(bag: Path, count: int) -> list[np.ndarray]:
    from pu_ros.data import bag as bagio

    out = []
    for _, msgtype, _, raw in bagio.read_bag(bag, topics=['/kitti/velo/pointcloud']):
        arr = bagio.pointcloud2_to_array(bagio.deserialize(raw, msgtype))
        out.append(np.stack([arr['x'], arr['y'], arr['z'], arr['intensity']], axis=1).astype(np.float32))
        if len(out) == count:
            break
    return out


def direct_ms(device: str, scans: list[np.ndarray]) -> float:
    """Median ms of ``Segmenter.segment(scan, probs=False)`` over ``scans`` (after one warm-up call)."""
    import torch

    from bench.timing import median_ms
    from pu_ros.inference import Segmenter

    seg = Segmenter(device=device)
    sync = torch.cuda.synchronize if seg.device.type == 'cuda' else None
    seg.segment(scans[0], probs=False)
    each = iter(scans)
    return median_ms(lambda: seg.segment(next(each), probs=False), len(scans), warmup=0, sync=sync)


def _stat(values) -> dict | None:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None
    return {'n': int(v.size), 'p50': round(float(np.median(v)), 1), 'p90': round(float(np.percentile(v, 90)), 1),
            'max': round(float(v.max()), 1)}


def bench_config(bag: Path, stages: tuple[str, ...], device: str, rate: float, baseline_ms: float,
                 device_label: str) -> dict:
    """One JSON record: run the pipeline once over ``bag``."""
    from bench.timing import process_peak_mb
    from pu_ros.resources import config_path
    from pu_ros.ros.pipeline_runner import STAGE_NODES, PipelineError, RunnerOptions, run_pipeline

    what = 'pipeline/' + '+'.join(stages)
    params = {STAGE_NODES[s][2]: {f'{s}.device': device} for s in stages}
    try:
        config = config_path('pipeline.yaml')
    except FileNotFoundError:
        config = None
    try:
        result = run_pipeline(RunnerOptions(bag=bag, config=config, stages=stages, rate=rate, parameters=params))
    except PipelineError as exc:
        return {'what': what, 'device': device_label, 'skipped': str(exc)}
    mon = result.monitor
    e2e = [ms for _, ms in mon.end_to_end]
    stage_rec = {}
    for s in stages:
        node_total = (result.node_stats.get(s, {}).get('stages') or {}).get('total') or {}
        stage_rec[s] = {'latency_ms': _stat(mon.stage_ms[s]),
                        'node_ms': {k: (int(node_total[k]) if k == 'n' else round(float(node_total[k]), 1))
                                    for k in ('n', 'p50', 'max') if k in node_total}
                        or None}
    median = float(np.median(e2e)) if e2e else None
    return {
        'what': what, 'n': result.frames_in, 'device': device_label, 'rate_hz': round(10.0 * rate, 3),
        'frames_in': result.frames_in, 'frames_out': result.frames_out, 'frames_dropped': result.frames_dropped,
        'stages': stage_rec,
        'median_ms': None if median is None else round(median, 1),
        'p90_ms': None if not e2e else round(float(np.percentile(e2e, 90)), 1),
        'max_ms': None if not e2e else round(float(max(e2e)), 1),
        'baseline': 'Segmenter.segment direct (no ROS), same scans', 'baseline_ms': round(baseline_ms, 1),
        'ratio': None if not median else round(baseline_ms / median, 3),
        'miou': None if mon.confusion is None else round(mon.confusion.miou(), 4),
        'peak_mem_mb': round(process_peak_mb(), 1),
    }


def main(argv=None) -> int:
    """Run the benchmark; JSON lines on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--bag', type=Path, default=None, help='bag to play (default: seq 00 converted here)')
    parser.add_argument('--device', choices=('cpu', 'cuda', 'all'), default='all')
    parser.add_argument('--rate', type=float, default=1.0, help='playback factor (1.0 = 10 Hz)')
    parser.add_argument('--frames', type=int, default=3, help='scans timed for the direct baseline')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(ROOT / 'config' / 'fastdds_profile.xml'))
    import torch

    from pu_ros.ops.device import device_name

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix='pu_ros_bench_') as tmp:
        bag = args.bag
        if bag is None:
            if not SEQ00.is_dir():
                _emit({'what': 'pipeline', 'skipped': f'real data not found at {SEQ00} (set PU_ROS_SHARED_DATA)'})
                return 0
            from pu_ros.data.kitti_to_bag import convert

            bag = Path(tmp) / 'seq00.bag'
            convert(SEQ00, bag, progress=False)
        devices = ['cpu', 'cuda'] if args.device == 'all' else [args.device]
        for device in devices:
            if device == 'cuda' and not torch.cuda.is_available():
                _emit({'what': 'pipeline', 'device': 'cuda', 'skipped': 'no CUDA device'})
                continue
            label = device_name(device) + (f', {torch.get_num_threads()} thread(s)' if device == 'cpu' else '')
            baseline = direct_ms(device, _scans(bag, args.frames))
            for stages in CONFIGS:
                _emit(bench_config(bag, stages, device, args.rate, baseline, label))
    return 0


if __name__ == '__main__':
    sys.exit(main())
