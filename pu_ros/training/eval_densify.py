"""``pu-ros eval densify``: does upsampling a sparse LiDAR scan help our segmentation? The sparse-LiDAR table.

::

    pu-ros eval densify --seq ../shared/data/semantickitti/sequences/00 \
        --published ../shared/weights/puflow/puflow-x4-pugan.pt --ours models/upsampling_puflow_lidar.pt

For every labelled scan (default 000000-000002) and 16 / 32 beams (every 4th / 2nd ring of the HDL-64 scan,
:func:`pu_ros.data.beams.decimate_beams`), the segmentation network (:class:`pu_ros.inference.Segmenter`, default
weights) labels four clouds:

(a) the sparse scan itself; (b) the sparse scan upsampled ×R (R = 64 / beams) by the published PU-Flow weights;
(c) by our LiDAR weights; (d) the naive baseline that interpolates between neighbouring rings
(:func:`pu_ros.data.beams.interpolate_rings`). The full 64-beam scan is the reference row.

Labels go back to the ORIGINAL (full-scan) points by nearest neighbour (:func:`pu_ros.ops.neighbors.knn_points`), and
mIoU is computed there against the SemanticKITTI labels (:class:`pu_ros.training.metrics.ConfusionMatrix`, classes
present in the ground truth or the predictions, ignore class left out), so every row is scored on the same points.
CD to the full scan: mean Euclidean nearest-neighbour distance both ways (metres, summed), the full scan's side
estimated on a fixed random subset of ``--cd-queries`` points per direction.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import sys
import time

import numpy as np


def chamfer_m(pred: np.ndarray, full: np.ndarray, queries: int, seed: int = 0) -> float:
    """Mean Euclidean NN distance pred→full plus full→pred (m), each direction on ≤ ``queries`` random points."""
    import torch

    from pu_ros.ops.neighbors import knn_points

    rng = np.random.default_rng(seed)
    total = 0.0
    for a, b in ((pred, full), (full, pred)):
        q = a if len(a) <= queries else a[rng.choice(len(a), queries, replace=False)]
        d2 = knn_points(torch.from_numpy(np.ascontiguousarray(q[:, :3])), torch.from_numpy(
            np.ascontiguousarray(b[:, :3])), 1)[0][:, 0]
        total += float(d2.clamp_min(0).sqrt().mean())
    return total


def labels_to(points_from: np.ndarray, labels_from: np.ndarray, points_to: np.ndarray) -> np.ndarray:
    """Labels of ``points_to`` (M, >=3) = labels of their nearest ``points_from`` (N, >=3) point: (M,)."""
    import torch

    from pu_ros.ops.neighbors import knn_points

    idx = knn_points(torch.from_numpy(np.ascontiguousarray(points_to[:, :3])),
                     torch.from_numpy(np.ascontiguousarray(points_from[:, :3])), 1)[1][:, 0].numpy()
    return np.asarray(labels_from)[idx]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros eval densify``."""
    parser.add_argument('--seq', required=True, help='SemanticKITTI sequence folder (velodyne/, labels/)')
    parser.add_argument('--scans', nargs='+', default=['000000', '000001', '000002'], help='labelled scans')
    parser.add_argument('--beams', nargs='+', type=int, default=[16, 32], choices=[16, 32])
    parser.add_argument('--published', default=None, help='published PU-Flow weights (row b)')
    parser.add_argument('--ours', default=None, help='our LiDAR PU-Flow weights (row c; default models/...lidar.pt)')
    parser.add_argument('--segmenter', default=None, help='segmentation checkpoint (default: the packaged one)')
    parser.add_argument('--max-range', type=float, default=0.0,
                        help='crop every scan to this horizontal range (m) first (0 = whole scan; for speed)')
    parser.add_argument('--cd-queries', type=int, default=20000, help='points per direction for the CD estimate')
    parser.add_argument('--batch-size', type=int, default=32, help='upsampler patches per forward pass')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--out', default='runs/eval_densify')


def run(args) -> int:
    """Entry point of ``pu-ros eval densify``."""
    from pu_ros.data.beams import decimate_beams, interpolate_rings
    from pu_ros.data.kitti import read_labels, read_points
    from pu_ros.data.labels import LabelMap
    from pu_ros.inference.segmenter import Segmenter
    from pu_ros.ops.device import device_name, resolve_device
    from pu_ros.training.metrics import ConfusionMatrix

    seq = Path(args.seq)
    try:
        device = resolve_device(args.device)
        files = [(seq / 'velodyne' / f'{s}.bin', seq / 'labels' / f'{s}.label') for s in args.scans]
        missing = [str(p) for pair in files for p in pair if not p.is_file()]
        if missing:
            raise FileNotFoundError(f'missing {missing[0]}')
        seg = Segmenter(args.segmenter, device=device)
        ups = {}
        from pu_ros.inference.upsampler import Upsampler

        if args.published:
            ups['(b) published PU-Flow'] = Upsampler(weights=args.published, device=device, merge='parent',
                                                     batch_size=args.batch_size)
        ups['(c) our LiDAR PU-Flow'] = Upsampler(weights=args.ours or '', device=device, merge='parent',
                                                 batch_size=args.batch_size)
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros eval densify: {exc}', file=sys.stderr)
        return 2
    lmap = LabelMap.load()
    rows: dict[str, dict] = {}

    def score(name, beams, cloud, full, gt, pred_on_full, t):
        cm = rows.setdefault((name, beams), {'cm': ConfusionMatrix(seg.num_classes, seg.cfg.ignore_index),
                                             'cd': [], 'n': [], 't': []})
        cm['cm'].update(pred_on_full, gt)
        cm['cd'].append(chamfer_m(cloud, full, args.cd_queries) if cloud is not full else 0.0)
        cm['n'].append(len(cloud))
        cm['t'].append(t)

    for scan_path, label_path in files:
        full = read_points(scan_path)
        gt = lmap.to_learning(read_labels(label_path, len(full)) & 0xFFFF)
        sparse_all = {b: decimate_beams(full, 64 // b) for b in args.beams}  # ring recovery on the whole scan
        keep = np.ones(len(full), bool)
        if args.max_range:
            keep = np.hypot(full[:, 0], full[:, 1]) < args.max_range
        full_k, gt_k = full[keep], gt[keep]
        score('full 64-beam scan (reference)', 64, full_k, full_k, gt_k, seg.segment(full_k, probs=False).labels, 0.0)
        for beams, (sparse, mask, ring) in sparse_all.items():
            factor = 64 // beams
            sp, sp_ring = sparse[keep[mask]], ring[mask][keep[mask]]
            clouds = {'(a) sparse scan': (sp, 0.0)}
            for name, up in ups.items():
                up.config.ratio = factor
                t0 = time.perf_counter()
                clouds[name] = (up.upsample(sp), time.perf_counter() - t0)
            t0 = time.perf_counter()
            clouds['(d) ring interpolation'] = (interpolate_rings(sp, sp_ring // factor, factor),
                                                time.perf_counter() - t0)
            for name, (cloud, t) in clouds.items():
                lab = seg.segment(cloud, probs=False).labels
                score(name, beams, cloud, full_k, gt_k, labels_to(cloud, lab, full_k), t)
        print(f'{scan_path.name}: done', file=sys.stderr)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for (name, beams), r in rows.items():
        records.append({'beams': beams, 'input': name, 'points': int(np.mean(r['n'])),
                        'cd_m': round(float(np.mean(r['cd'])), 4),
                        'miou': round(100 * r['cm'].miou(), 2), 'accuracy': round(100 * r['cm'].accuracy(), 2),
                        'upsample_s': round(float(np.mean(r['t'])), 2)})
    records.sort(key=lambda r: (-r['beams'] if r['beams'] == 64 else r['beams'], r['input']))
    with open(out / 'table.csv', 'w', newline='') as fh:
        w = csv.DictWriter(fh, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    crop = f', cropped to {args.max_range:g} m' if args.max_range else ''
    lines = [f'Scans {", ".join(args.scans)} of {seq}{crop}; segmentation {seg.checkpoint.name}; '
             f'device {device_name(device)}.', '',
             '| beams | input to the segmentation | points | CD to full scan (m) | mIoU on original points (%) | '
             'accuracy (%) | upsampling time (s) |', '|---|---|---|---|---|---|---|']
    for r in records:
        lines.append(f'| {r["beams"]} | {r["input"]} | {r["points"]} | {r["cd_m"]:.3f} | {r["miou"]:.2f} | '
                     f'{r["accuracy"]:.2f} | {r["upsample_s"]:.1f} |')
    md = '\n'.join(lines) + '\n'
    (out / 'table.md').write_text(md)
    print(md)
    return 0
