"""Per-scan latency of the segmentation network (``Segmenter.segment``), with references measured beside it.

Prints JSON lines: ``what``, ``n`` (points), ``device`` (CPU model or GPU name), ``threads``, ``median_ms``,
``points_per_s``, ``peak_mem_mb``, ``baseline`` (the reference it is compared with), ``baseline_ms`` and ``ratio``
(baseline_ms / median_ms, as in bench/conversions.py: below 1 means the network costs more than the reference).
Both sides of a ratio run in the same process on the same scan.

- ``segment_3d``: the whole 3D inference, numpy in and numpy out (range filter, voxelization, sparse 3D branch,
  softmax, copy back), the way the ROS node calls it.
- reference ``voxelize``: the multi-scale voxelization alone (the part every voxel network pays).
- reference ``point_mlp``: a per-point network of the same width and no sparse convolutions (the 3D branch's
  point encoder and classifier applied to every point): what the voxel context costs on top of a PointNet-like
  per-point classifier.

Data: scan 000000 of ``../shared/data/semantickitti/sequences/00`` when present, else a synthetic full scan
(``pu_ros.data.synthetic``). Weights: ``models/segmentation_2dpass_3d.pt`` when present, else an untrained network
of the default configuration (latency does not depend on the weight values). On CUDA, float32 and float16
autocast are both measured.

    python bench/segmentation.py [--device cpu|cuda|all] [--repeats N] [--threads T]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_SCAN = ROOT.parent / 'shared' / 'data' / 'semantickitti' / 'sequences' / '00' / 'velodyne' / '000000.bin'


def load_scan() -> tuple[np.ndarray, str]:
    """(N, 4) float32 scan and where it came from."""
    if REAL_SCAN.is_file():
        from pu_ros.data.kitti import read_points

        return read_points(REAL_SCAN), 'semantickitti 00/000000'
    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

    return SyntheticSequence(SceneConfig(seed=0, n_frames=1, render_image=False)).scan(0)[0], 'synthetic seed 0'


def _peak_mb(device) -> float:
    import torch

    from bench.timing import process_peak_mb

    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return process_peak_mb()


def bench_device(device_str: str, repeats: int, scan: np.ndarray, source: str, checkpoint: Path | None) -> list[dict]:
    """Measure segment_3d and the references on one device; returns the JSON records."""
    import torch

    from bench.timing import median_ms
    from pu_ros.inference.segmenter import Segmenter
    from pu_ros.networks.checkpoint import save_checkpoint
    from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS
    from pu_ros.ops.device import device_name
    from pu_ros.ops.voxelize import in_range_mask, voxelize_multiscale

    device = torch.device(device_str)
    if checkpoint is None:  # untrained default network, written once to a temporary checkpoint
        import tempfile

        cfg = SegmentationConfig(use_image=False)
        tmp = Path(tempfile.mkdtemp()) / 'untrained.pt'
        save_checkpoint(tmp, Segmentor2DPASS(cfg).state_dict(), {'model': cfg.to_dict()}, {'branches': ['3d']})
        checkpoint = tmp
    seg = Segmenter(checkpoint, device=device_str)
    cfg = seg.cfg
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    n = int(scan.shape[0])
    inside = scan[np.asarray(in_range_mask(scan, cfg))]
    pts = torch.from_numpy(inside).to(device)
    bidx = torch.zeros(pts.shape[0], dtype=torch.int64, device=device)
    backbone = seg.model.backbone_3d
    levels = (1, *cfg.scale_list)

    def voxelize():
        voxelize_multiscale(pts[:, :3], bidx, 1, cfg.voxel_size, cfg.point_range, levels)

    # per-point reference of the same width: encoder -> (S copies of the features) -> classifier
    n_scales = len(cfg.scale_list)

    def point_mlp():
        with torch.inference_mode():
            voxels = backbone.voxelize(pts, bidx, 1)
            f = backbone.point_encoder(backbone.point_inputs(pts, voxels))
            torch.softmax(backbone.classifier(torch.cat([f] * n_scales, dim=1)), dim=1).cpu()

    records = []
    name = device_name(device)
    threads = torch.get_num_threads()
    with torch.inference_mode():
        vox_ms = median_ms(voxelize, repeats, sync=sync)
        mlp_ms = median_ms(point_mlp, repeats, sync=sync)
    variants = [('fp32', False)] + ([('fp16', True)] if device.type == 'cuda' else [])
    for label, half in variants:
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)

        def run(half=half):
            with torch.autocast('cuda', dtype=torch.float16, enabled=half):
                seg.segment(scan)

        ms = median_ms(run, repeats, sync=sync)
        peak = _peak_mb(device)
        for ref, ref_ms in (('voxelize', vox_ms), ('point_mlp', mlp_ms)):
            records.append({
                'what': f'segment_3d_{label}', 'n': n, 'n_in_range': int(inside.shape[0]), 'scan': source,
                'device': name, 'threads': threads, 'repeats': repeats, 'median_ms': round(ms, 2),
                'points_per_s': round(n / (ms / 1000.0)), 'peak_mem_mb': round(peak, 1),
                'weights': str(checkpoint.name), 'baseline': ref, 'baseline_ms': round(ref_ms, 2),
                'ratio': round(ref_ms / ms, 3),
            })
    return records


def main(argv=None) -> int:
    """Run the benchmark and print one JSON line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='all', choices=['cpu', 'cuda', 'all'],
                        help='cpu, cuda, or all available (default)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per measurement (median reported)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from pu_ros.resources import share_dirs

    ckpt = next((d / 'models' / 'segmentation_2dpass_3d.pt' for d in share_dirs()
                 if (d / 'models' / 'segmentation_2dpass_3d.pt').is_file()), None)
    scan, source = load_scan()
    devices = ['cpu'] if args.device == 'cpu' else ['cuda'] if args.device == 'cuda' else (
        ['cpu'] + (['cuda'] if torch.cuda.is_available() else []))
    for dev in devices:
        for rec in bench_device(dev, args.repeats, scan, source, ckpt):
            print(json.dumps(rec), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
