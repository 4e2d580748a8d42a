"""``pu-ros eval densify``: does upsampling a sparse LiDAR scan help our segmentation? The sparse-LiDAR table.

::

    pu-ros eval densify --seq ../shared/data/semantickitti/sequences/00 \
        --published ../shared/weights/puflow/puflow-x4-pugan.pt --ours models/upsampling_puflow_lidar.pt

For every labelled scan (default 000000-000002) and 16 / 32 beams (every 4th / 2nd ring of the HDL-64 scan,
:func:`pu_ros.data.beams.decimate_beams`), the segmentation network (:class:`pu_ros.inference.Segmenter`, default
weights) labels four clouds:

(a) the sparse scan itself; (b) the sparse scan upsampled ×R (R = 64 / beams) by the published PU-Flow weights;
(c) by our LiDAR weights; (d) the naive baseline that interpolates between neighbouring rings
(:func:`pu_ros.data.beams.interpolate_rings`). The full 64-beam scan is the reference row (the ceiling).

Labels go back to the ORIGINAL (full-scan) points by nearest neighbour, and mIoU is computed there against the
SemanticKITTI labels (:class:`pu_ros.training.metrics.ConfusionMatrix`, classes present in the ground truth or the
predictions, ignore class left out), so every row is scored on the same points. CD to the full scan: mean Euclidean
nearest-neighbour distance both ways (metres, summed), on all points.

Cost on a CPU. A whole scan is too large for brute-force neighbour search (124k × 124k distances per query), so
:func:`nearest` uses the package's exact tiled kNN (:func:`pu_ros.ops.neighbors.knn_points_tiled`: each x-y cell
searches its 3 x 3 block of cells; queries whose neighbour is farther are searched again with larger cells).
Likewise :func:`upsample_tiled` hands the upsampler spatial tiles of at most ``--tile-points`` points (split at the
median, with ``--tile-margin`` metres of context around each) and keeps the children of each tile's own points:
the same patches and network, but the upsampler's whole-cloud neighbour searches stay small. Rows are written after
every scan (per scan and pooled over the scans done), so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import sys
import time

import numpy as np


def nearest(query: np.ndarray, ref: np.ndarray, cell: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest ``ref`` point of every ``query`` point: numpy wrapper of the package's tiled kNN.

    :func:`pu_ros.ops.neighbors.knn_points_tiled` searches each ``cell``-metre x-y square among the 3 x 3 squares
    around it (larger squares, then all points, for the few queries whose neighbour is farther), so a whole scan
    against another costs seconds instead of the brute-force M·N distances.

    Args:
        query: (M, >=3) points.
        ref: (N, >=3) points, N >= 1.
        cell: first-level x-y cell (m).

    Returns:
        ``(dist2 (M,) float32 squared distances, idx (M,) int64 indices into ref)``.
    """
    import torch

    from pu_ros.ops.neighbors import knn_points_tiled

    q = torch.from_numpy(np.ascontiguousarray(query[:, :3], dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(ref[:, :3], dtype=np.float32))
    if len(q) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    d2, idx = knn_points_tiled(q, r, 1, tile=cell)
    return d2[:, 0].numpy(), idx[:, 0].numpy()


def chamfer_m(pred: np.ndarray, full: np.ndarray, queries: int = 0, seed: int = 0) -> float:
    """Mean Euclidean NN distance pred→full plus full→pred (m): (M, >=3), (N, >=3) -> float.

    Each direction on all points (``queries=0``) or on ``queries`` random ones.
    """
    rng = np.random.default_rng(seed)
    total = 0.0
    for a, b in ((pred, full), (full, pred)):
        q = a if not queries or len(a) <= queries else a[rng.choice(len(a), queries, replace=False)]
        total += float(np.sqrt(nearest(q, b)[0]).mean())
    return total


def labels_to(points_from: np.ndarray, labels_from: np.ndarray, points_to: np.ndarray) -> np.ndarray:
    """Labels of ``points_to`` (M, >=3) = labels of their nearest ``points_from`` (N, >=3) point: (M,)."""
    return np.asarray(labels_from)[nearest(points_to, points_from)[1]]


def tiles(xy: np.ndarray, max_points: int) -> list[np.ndarray]:
    """Split points into groups of at most ``max_points`` by recursive median cuts along the longer xy axis.

    Args:
        xy: (N, >=2) coordinates.
        max_points: largest group.

    Returns:
        index arrays (int64) partitioning ``0..N-1``.
    """
    todo, done = [np.arange(len(xy))], []
    while todo:
        ids = todo.pop()
        if len(ids) <= max_points:
            done.append(ids)
            continue
        span = xy[ids, :2].max(0) - xy[ids, :2].min(0)
        axis = int(np.argmax(span))
        order = ids[np.argsort(xy[ids, axis], kind='stable')]
        half = len(order) // 2
        todo += [order[:half], order[half:]]
    return done


def upsample_tiled(up, points: np.ndarray, ratio: int, max_points: int = 8192, margin: float = 4.0) -> np.ndarray:
    """Upsample a whole scan tile by tile: each tile plus ``margin`` metres of context, keep the tile's children.

    Args:
        up: :class:`pu_ros.inference.Upsampler` with ``merge='parent'`` (its output is parent-major: child r of
            input point i at row ``i·R + r``).
        points: (N, C >= 3) scan.
        ratio: R.
        max_points: most points of a tile (its context comes on top).
        margin: context around each tile (m), in x and y.

    Returns:
        (N·R, C) float32, the children of point i at rows ``i·R .. i·R + R - 1``.
    """
    pts = np.asarray(points, dtype=np.float32)
    up.config.ratio = int(ratio)
    out = np.empty((len(pts), ratio, pts.shape[1]), np.float32)
    for core in tiles(pts, max_points):
        lo, hi = pts[core, :2].min(0) - margin, pts[core, :2].max(0) + margin
        ctx = np.flatnonzero(np.all((pts[:, :2] >= lo) & (pts[:, :2] <= hi), axis=1))  # includes the core
        dense = up.upsample(pts[ctx])
        if dense.shape[0] != len(ctx) * ratio:
            raise ValueError(f'upsampler returned {dense.shape[0]} points for {len(ctx)} x {ratio}')
        where = np.searchsorted(ctx, core)
        out[core] = dense.reshape(len(ctx), ratio, -1)[where]
    return out.reshape(-1, pts.shape[1])


def patch_cd(weights: list[str], scans: list[tuple[str, np.ndarray]], ratios=(2, 4), patches: int = 64,
             seed: int = 0) -> dict:
    """Held-out patch Chamfer distance of PU-Flow weights: the training objective on the evaluation scans.

    Patches are cut as in training (:func:`pu_ros.training.upsampling_data.sample_batch`: 256 decimated-scan points,
    the 256·R full-scan points around them, normalised by the input patch; no augmentation), the same patches for
    every weights file.

    Args:
        weights: weights files (ours or published).
        scans: ``(name, (N, >=3) 64-beam scan in sensor order)``.
        ratios: ring steps (2: 32 beams, 4: 16 beams).
        patches: patches per ratio.
        seed: patch seed.

    Returns:
        ``{weights: {ratio: CD ×10⁻³ (squared, normalised units, as the training loss)}}``.
    """
    import torch

    from pu_ros.networks.upsampling.weights import load_puflow
    from pu_ros.training.metrics_upsampling import chamfer_distance
    from pu_ros.training.upsampling_data import lidar_pool, sample_batch

    pool = lidar_pool(scans, list(ratios))
    batches = {r: sample_batch(pool, patches, r, 256, np.random.default_rng(seed + r)) for r in ratios}
    result = {}
    for w in weights:
        model = load_puflow(w)[0]
        with torch.inference_mode():
            result[w] = {r: round(1e3 * float(torch.cat([chamfer_distance(model.upsample(inp[i:i + 8], r),
                                                                          gt[i:i + 8])
                                                         for i in range(0, patches, 8)]).mean()), 3)
                         for r, (inp, gt) in batches.items()}
    return result


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
    parser.add_argument('--batch-size', type=int, default=32, help='upsampler patches per forward pass')
    parser.add_argument('--patch-overlap', type=float, default=2.0,
                        help='upsampler: about how many patches cover each point (1 = half the work of 2)')
    parser.add_argument('--tile-points', type=int, default=8192, help='largest tile handed to the upsampler')
    parser.add_argument('--tile-margin', type=float, default=4.0, help='context around each tile (m)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--out', default='runs/eval_densify')
    parser.add_argument('--patch-cd', nargs='+', default=None, metavar='WEIGHTS',
                        help='only print the held-out patch CD (x1e-3, the training loss) of these weights on --scans')
    parser.add_argument('--patches', type=int, default=64, help='--patch-cd: patches per ratio')


def _write_tables(out: Path, rows: dict, header: str) -> str:
    """table.csv and table.md of every (scan, beams, input) row so far; returns the Markdown."""
    records = []
    for (scan, beams, name), r in rows.items():
        records.append({'scan': scan, 'beams': beams, 'input': name, 'points': int(np.mean(r['n'])),
                        'cd_m': round(float(np.mean(r['cd'])), 4),
                        'miou': round(100 * r['cm'].miou(), 2), 'accuracy': round(100 * r['cm'].accuracy(), 2),
                        'upsample_s': round(float(np.mean(r['t'])), 1)})
    records.sort(key=lambda r: (r['scan'] == 'all', r['scan'], r['beams'] != 64, r['beams'], r['input']))
    with open(out / 'table.csv', 'w', newline='') as fh:
        w = csv.DictWriter(fh, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    lines = [header, '',
             '| scan | beams | input to the segmentation | points | CD to full scan (m) | mIoU on original points (%) '
             '| accuracy (%) | upsampling time (s) |', '|---|---|---|---|---|---|---|---|']
    for r in records:
        lines.append(f'| {r["scan"]} | {r["beams"]} | {r["input"]} | {r["points"]} | {r["cd_m"]:.3f} | '
                     f'{r["miou"]:.2f} | {r["accuracy"]:.2f} | {r["upsample_s"]:.1f} |')
    md = '\n'.join(lines) + '\n'
    (out / 'table.md').write_text(md)
    return md


def run(args) -> int:
    """Entry point of ``pu-ros eval densify``."""
    from pu_ros.data.beams import decimate_beams, interpolate_rings
    from pu_ros.data.kitti import read_labels, read_points
    from pu_ros.data.labels import LabelMap
    from pu_ros.inference.segmenter import Segmenter
    from pu_ros.ops.device import device_name, resolve_device
    from pu_ros.training.metrics import ConfusionMatrix

    seq = Path(args.seq)
    if args.patch_cd:
        import json

        scans = [(s, read_points(seq / 'velodyne' / f'{s}.bin')) for s in args.scans]
        print(json.dumps(patch_cd(args.patch_cd, scans, [64 // b for b in args.beams], args.patches)))
        return 0
    try:
        device = resolve_device(args.device)
        files = [(seq / 'velodyne' / f'{s}.bin', seq / 'labels' / f'{s}.label') for s in args.scans]
        missing = [str(p) for pair in files for p in pair if not p.is_file()]
        if missing:
            raise FileNotFoundError(f'missing {missing[0]}')
        seg = Segmenter(args.segmenter, device=device)
        ups = {}
        from pu_ros.inference.upsampler import Upsampler

        common = {'device': device, 'merge': 'parent', 'batch_size': args.batch_size,
                  'patch_overlap': args.patch_overlap}
        if args.published:
            ups['(b) published PU-Flow'] = Upsampler(weights=args.published, **common)
        ups['(c) our LiDAR PU-Flow'] = Upsampler(weights=args.ours or '', **common)
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros eval densify: {exc}', file=sys.stderr)
        return 2
    lmap = LabelMap.load()
    rows: dict[tuple, dict] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crop = f', cropped to {args.max_range:g} m' if args.max_range else ''
    header = (f'Scans {", ".join(args.scans)} of {seq}{crop}; segmentation {seg.checkpoint.name}; upsampler patch '
              f'overlap {args.patch_overlap:g}, tiles of {args.tile_points} points + {args.tile_margin:g} m; '
              f'device {device_name(device)}. "all" pools the confusion matrices of the scans.')

    def score(scan, name, beams, cloud, full, gt, pred_on_full, t):
        cd = chamfer_m(cloud, full) if cloud is not full else 0.0
        for key in [(scan, beams, name)] + [('all', beams, name)] * (len(files) > 1):
            r = rows.setdefault(key, {'cm': ConfusionMatrix(seg.num_classes, seg.cfg.ignore_index),
                                      'cd': [], 'n': [], 't': []})
            r['cm'].update(pred_on_full, gt)
            r['cd'].append(cd)
            r['n'].append(len(cloud))
            r['t'].append(t)

    for scan_path, label_path in files:
        scan = scan_path.stem
        full = read_points(scan_path)
        gt = lmap.to_learning(read_labels(label_path, len(full)) & 0xFFFF)
        sparse_all = {b: decimate_beams(full, 64 // b) for b in args.beams}  # ring recovery on the whole scan
        keep = np.ones(len(full), bool)
        if args.max_range:
            keep = np.hypot(full[:, 0], full[:, 1]) < args.max_range
        full_k, gt_k = full[keep], gt[keep]
        score(scan, 'full 64-beam scan (ceiling)', 64, full_k, full_k, gt_k,
              seg.segment(full_k, probs=False).labels, 0.0)
        for beams, (sparse, mask, ring) in sparse_all.items():
            factor = 64 // beams
            sp, sp_ring = sparse[keep[mask]], ring[mask][keep[mask]]
            clouds = {'(a) sparse scan': (sp, 0.0)}
            for name, up in ups.items():
                t0 = time.perf_counter()
                dense = upsample_tiled(up, sp, factor, args.tile_points, args.tile_margin)
                clouds[name] = (dense, time.perf_counter() - t0)
                print(f'{scan} {beams} beams {name}: {clouds[name][1]:.0f} s', file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            clouds['(d) ring interpolation'] = (interpolate_rings(sp, sp_ring // factor, factor),
                                                time.perf_counter() - t0)
            for name, (cloud, t) in clouds.items():
                lab = seg.segment(cloud, probs=False).labels
                score(scan, name, beams, cloud, full_k, gt_k, labels_to(cloud, lab, full_k), t)
        md = _write_tables(out, rows, header)
        print(f'{scan}: done', file=sys.stderr, flush=True)
    print(md)
    return 0
