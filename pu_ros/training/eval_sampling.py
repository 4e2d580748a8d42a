"""``pu-ros eval sampling``: SampleNet against FPS, random and voxel-grid sampling in the pipeline setting.

For every labelled scan, method and ratio: sample the scan, segment the sampled cloud with our segmentation
network, carry the labels back to every original point by nearest neighbour, and score the propagated labels
against the ground truth (mIoU over the classes present in ground truth or prediction, ignore class 0). Also
times the sampling and the segmentation of the sampled cloud. Writes a table (stdout), a CSV and a PNG plot.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import sys
import time

import numpy as np

METHODS = ('samplenet', 'fps', 'random', 'voxel')
COLOURS = {'samplenet': (214, 39, 40), 'fps': (31, 119, 180), 'random': (44, 160, 44), 'voxel': (255, 127, 14),
           'full scan': (90, 90, 90)}


def propagate_labels(points_xyz, sampled_idx, sampled_labels):
    """Label of every point = label of its nearest sampled point.

    Args:
        points_xyz: (N, 3) float tensor.
        sampled_idx: (M,) int64 tensor of indices into ``points_xyz``.
        sampled_labels: (M,) tensor of labels.

    Returns:
        (N,) tensor of labels.
    """
    from pu_ros.ops.neighbors import knn_points_tiled

    nn = knn_points_tiled(points_xyz, points_xyz[sampled_idx], 1)[1][:, 0]  # exact; x-y tiles keep it near-linear
    return sampled_labels[nn]


def _sync(device):
    import torch

    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def evaluate(scans, segmenter, samplers: dict, ratios: list[float], device) -> list[dict]:
    """Rows ``{method, ratio, points, miou, accuracy, sample_ms, segment_ms, sample_timing}`` (per-scan means).

    FPS runs once per scan at the largest ratio; the smaller ratios use its prefix (the same indices FPS would
    return) and their sampling time is scaled by m / m_max (``sample_timing = 'scaled'``).

    Args:
        scans: list of ``(points (N, 4) float32, labels (N,) uint8 learning ids)``.
        segmenter: :class:`pu_ros.inference.Segmenter`.
        samplers: ``{method: Sampler}`` (their ratio is set per call).
        ratios: sampling ratios.
        device: torch device of the samplers.
    """
    import torch

    from pu_ros.training.metrics import ConfusionMatrix

    c = segmenter.num_classes
    rows = []
    cm = ConfusionMatrix(c, 0)
    seg_t = []
    for pts, gt in scans:
        t0 = time.perf_counter()
        pred = segmenter.segment(pts, probs=False).labels
        seg_t.append(time.perf_counter() - t0)
        cm.update(pred, gt)
    rows.append({'method': 'full scan', 'ratio': 1.0, 'points': int(np.mean([len(p) for p, _ in scans])),
                 'miou': cm.miou(), 'accuracy': cm.accuracy(), 'sample_ms': 0.0,
                 'segment_ms': 1000 * float(np.mean(seg_t)), 'sample_timing': '-'})
    for method, sampler in samplers.items():
        prefix = {}  # FPS is prefix-consistent: run it once per scan at the largest ratio, slice for the others
        for r in sorted(ratios, reverse=True):
            sampler.config.ratio = float(r)
            cm = ConfusionMatrix(c, 0)
            samp_t, seg_t, counts = [], [], []
            timing = 'measured'
            for k, (pts, gt) in enumerate(scans):
                xyz = torch.from_numpy(pts[:, :3]).to(device)
                if method == 'fps' and k in prefix:
                    m = sampler.count(len(pts))
                    idx = prefix[k][0][:m]
                    samp_t.append(prefix[k][1] * m / len(prefix[k][0]))  # FPS time is linear in m
                    timing = 'scaled'
                else:
                    _sync(device)
                    t0 = time.perf_counter()
                    idx = sampler.sample_indices(xyz)
                    _sync(device)
                    samp_t.append(time.perf_counter() - t0)
                    if method == 'fps':
                        prefix[k] = (idx, samp_t[-1])
                sub = pts[idx.cpu().numpy()]
                t0 = time.perf_counter()
                lab = segmenter.segment(sub, probs=False).labels
                seg_t.append(time.perf_counter() - t0)
                full = propagate_labels(xyz, idx, torch.from_numpy(lab).to(device)).cpu().numpy()
                cm.update(full, gt)
                counts.append(len(idx))
            rows.append({'method': method, 'ratio': float(r), 'points': int(np.mean(counts)), 'miou': cm.miou(),
                         'accuracy': cm.accuracy(), 'sample_ms': 1000 * float(np.mean(samp_t)),
                         'segment_ms': 1000 * float(np.mean(seg_t)), 'sample_timing': timing})
            print(f'  {method:>9} ratio {r:<7} mIoU {rows[-1]["miou"]:.4f}', file=sys.stderr, flush=True)
    return rows


def plot_png(rows: list[dict], path: str | Path, title: str) -> Path:
    """Plot propagated mIoU against ratio (log scale) for every method, drawn with Pillow."""
    from PIL import Image, ImageDraw

    w, h, left, right, top, bottom = 720, 480, 70, 150, 40, 60
    img = Image.new('RGB', (w, h), 'white')
    d = ImageDraw.Draw(img)
    pts = [r for r in rows if r['method'] != 'full scan']
    ratios = sorted({r['ratio'] for r in pts})
    lo_r, hi_r = np.log2(min(ratios)), np.log2(max(ratios))
    ys = [r['miou'] for r in rows]
    lo_y, hi_y = max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.05)

    def xy(ratio, miou):
        fx = (np.log2(ratio) - lo_r) / max(hi_r - lo_r, 1e-9)
        fy = (miou - lo_y) / max(hi_y - lo_y, 1e-9)
        return left + fx * (w - left - right), h - bottom - fy * (h - top - bottom)

    d.rectangle([left, top, w - right, h - bottom], outline='black')
    for r in ratios:
        x, _ = xy(r, lo_y)
        d.line([x, h - bottom, x, h - bottom + 5], fill='black')
        d.text((x - 15, h - bottom + 8), f'{r:g}', fill='black')
    for k in range(6):
        v = lo_y + k * (hi_y - lo_y) / 5
        _, y = xy(min(ratios), v)
        d.line([left - 5, y, left, y], fill='black')
        d.text((left - 45, y - 6), f'{v:.2f}', fill='black')
    d.text((left + 150, h - 25), 'sampling ratio (log scale)', fill='black')
    d.text((5, top - 25), 'propagated mIoU', fill='black')
    d.text((left + 120, 8), title[:80], fill='black')
    for i, method in enumerate(['full scan', *METHODS]):
        sel = sorted((r for r in rows if r['method'] == method), key=lambda r: r['ratio'])
        if not sel:
            continue
        col = COLOURS[method]
        if method == 'full scan':
            y = xy(min(ratios), sel[0]['miou'])[1]
            d.line([left, y, w - right, y], fill=col, width=1)
        else:
            line = [xy(r['ratio'], r['miou']) for r in sel]
            if len(line) > 1:
                d.line(line, fill=col, width=3)
            for x, y in line:
                d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=col)
        d.line([w - right + 10, top + 20 * i + 6, w - right + 30, top + 20 * i + 6], fill=col, width=3)
        d.text((w - right + 35, top + 20 * i), method, fill='black')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros eval sampling``."""
    parser.add_argument('--checkpoint', default='', metavar='C',
                        help="SampleNet LiDAR weights ('' = models/sampling_samplenet_lidar.pt)")
    parser.add_argument('--data', required=True, metavar='ROOT', help='SemanticKITTI root with sequences/')
    parser.add_argument('--sequence', default='00')
    parser.add_argument('--frames', default='0,1,2', help='labelled frames, comma-separated (default 0,1,2)')
    parser.add_argument('--ratios', default='0.5,0.25,0.125,0.0625', help='comma-separated sampling ratios')
    parser.add_argument('--methods', default=','.join(METHODS), help='comma-separated subset of ' + ','.join(METHODS))
    parser.add_argument('--segmentation', default=None, metavar='C', help='segmentation checkpoint (default packaged)')
    parser.add_argument('--out', default='runs/eval-sampling', help='folder for sampling.csv and sampling.png')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])


def _parse(args):
    ratios = [float(r) for r in args.ratios.split(',') if r.strip()]
    if not ratios or not all(0.0 < r <= 1.0 for r in ratios):
        raise ValueError(f'--ratios must be numbers in (0, 1], got {args.ratios!r}')
    methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    bad = sorted(set(methods) - set(METHODS))
    if bad or not methods:
        raise ValueError(f'--methods must be among {",".join(METHODS)}, got {args.methods!r}')
    frames = [int(f) for f in args.frames.split(',') if f.strip()]
    seq = Path(args.data) / 'sequences' / args.sequence
    if not seq.is_dir():
        raise FileNotFoundError(f'{seq} not found (--data must hold sequences/{args.sequence})')
    return ratios, methods, frames, seq


def run(args) -> int:
    """Entry point: prints the ratio table."""
    import torch

    from pu_ros.data.labels import LabelMap
    from pu_ros.inference.sampler import Sampler
    from pu_ros.inference.segmenter import Segmenter
    from pu_ros.networks.checkpoint import CheckpointError
    from pu_ros.ops.device import device_name, resolve_device

    try:
        ratios, methods, frames, seq = _parse(args)
        device = resolve_device(args.device)
        label_map = LabelMap.load()
        scans = []
        for f in frames:
            bin_p, lab_p = seq / 'velodyne' / f'{f:06d}.bin', seq / 'labels' / f'{f:06d}.label'
            if not bin_p.is_file() or not lab_p.is_file():
                raise FileNotFoundError(f'scan {bin_p} or its labels {lab_p} missing (only labelled frames count)')
            scans.append((np.fromfile(bin_p, np.float32).reshape(-1, 4),
                          label_map.to_learning(np.fromfile(lab_p, np.uint32))))
        segmenter = Segmenter(args.segmentation, device=device)
        samplers = {m: Sampler(method=m, checkpoint=args.checkpoint, device=device) for m in methods}
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f'pu-ros eval sampling: {exc}', file=sys.stderr)
        return 2
    with torch.inference_mode():
        rows = evaluate(scans, segmenter, samplers, ratios, device)
    dev_name = device_name(device)
    print(f'# seq {args.sequence} frames {",".join(str(f) for f in frames)} ({len(scans)} scans), device {dev_name}; '
          f'mIoU of labels propagated to every point (nearest sampled point)')
    print(f'{"method":>10} {"ratio":>7} {"points":>7} {"mIoU":>7} {"acc":>7} {"sample_ms":>10} {"segment_ms":>11}')
    for r in sorted(rows, key=lambda r: (-r['ratio'], r['method'] != 'full scan', r['method'])):
        mark = '*' if r['sample_timing'] == 'scaled' else ''
        print(f'{r["method"]:>10} {r["ratio"]:>7g} {r["points"]:>7d} {r["miou"]:>7.4f} {r["accuracy"]:>7.4f} '
              f'{r["sample_ms"]:>9.1f}{mark:1} {r["segment_ms"]:>11.1f}')
    if any(r['sample_timing'] == 'scaled' for r in rows):
        print('# * FPS time scaled from the largest ratio (FPS cost is linear in m; its indices are the prefix)')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / 'sampling.csv', 'w', newline='') as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    png = plot_png(rows, out / 'sampling.png', f'seq {args.sequence}, {len(scans)} scans, {dev_name}')
    print(f'# wrote {out / "sampling.csv"} and {png}')
    return 0
