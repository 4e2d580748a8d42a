"""Statistics of labelled LiDAR scans, to compare synthetic scans with real ones (the realism reference).

:func:`scan_statistics` summarises scans (raw SemanticKITTI labels) by class: point share, range and remission
histograms, points per object instance, ring spacing (the elevation step between neighbouring lasers) and the
ground slope (the road plane fitted around the sensor). :func:`compare_statistics` puts a synthetic summary next to
a real one: per class, the 1-Wasserstein distance between the range histograms (m) and the remission histograms
(0..1 scale), and the difference of the class shares. :func:`format_comparison` renders a Markdown report.

::

    python -m pu_ros.data.scan_stats --real ../shared/data/semantickitti/sequences/00
        --synth runs/sim2real/synth/sequences/100 [--out report.md]

Only numpy; every function works on arrays (no per-point Python loops).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

RANGE_BINS = np.linspace(0.0, 80.0, 41)  # 2 m bins
REMISSION_BINS = np.linspace(0.0, 1.0, 21)
# raw class groups of interest (moving-* ids folded onto their static class)
CLASS_NAMES = {10: 'car', 11: 'bicycle', 15: 'motorcycle', 18: 'truck', 20: 'other-vehicle', 30: 'person',
               31: 'bicyclist', 40: 'road', 44: 'parking', 48: 'sidewalk', 49: 'other-ground', 50: 'building',
               51: 'fence', 70: 'vegetation', 71: 'trunk', 72: 'terrain', 80: 'pole', 81: 'traffic-sign'}  # fmt: skip
_MOVING = {252: 10, 253: 31, 254: 30, 255: 32, 256: 15, 257: 13, 258: 18, 259: 20}
INSTANCE_CLASSES = (10, 18, 30, 31)


def fold_class(labels: np.ndarray) -> np.ndarray:
    """(N,) raw labels (instance << 16 | class) -> (N,) int64 class ids with moving classes folded to static."""
    cls = (np.asarray(labels).astype(np.int64) & 0xFFFF)
    lut = np.arange(260, dtype=np.int64)
    for moving, static in _MOVING.items():
        lut[moving] = static
    return np.where(cls < 260, lut[np.minimum(cls, 259)], cls)


def ring_elevations(points: np.ndarray, bin_deg: float = 0.05, min_share: float = 0.002) -> np.ndarray:
    """Elevations (deg, descending) of the laser rings, found as peaks of the elevation histogram.

    Args:
        points: (N, >=3) scan in the sensor frame.
        bin_deg: histogram bin width.
        min_share: a peak must hold at least this share of the points of an average ring.
    """
    xyz = np.asarray(points, np.float64)[:, :3]
    el = np.degrees(np.arctan2(xyz[:, 2], np.linalg.norm(xyz[:, :2], axis=1)))
    bins = np.arange(el.min() - bin_deg, el.max() + 2 * bin_deg, bin_deg)
    h, edges = np.histogram(el, bins)
    centre = 0.5 * (edges[1:] + edges[:-1])
    peak = (h[1:-1] >= h[:-2]) & (h[1:-1] > h[2:]) & (h[1:-1] > min_share * len(el))
    return np.sort(centre[1:-1][peak])[::-1]


def ground_plane(points: np.ndarray, labels: np.ndarray, radius: float = 20.0):
    """Least-squares plane ``z = a x + b y + c`` through the road points within ``radius`` m.

    Returns:
        ``(slope_deg, height)``: angle between the plane normal and z, and ``-c`` (sensor height over the road);
        ``(nan, nan)`` with fewer than 50 road points.
    """
    cls = fold_class(labels)
    p = np.asarray(points, np.float64)
    m = (cls == 40) & (np.linalg.norm(p[:, :2], axis=1) < radius)
    if m.sum() < 50:
        return float('nan'), float('nan')
    A = np.c_[p[m, 0], p[m, 1], np.ones(int(m.sum()))]
    (a, b, c), *_ = np.linalg.lstsq(A, p[m, 2], rcond=None)
    return float(np.degrees(np.arctan(np.hypot(a, b)))), float(-c)


def scan_statistics(scans) -> dict:
    """Summary of labelled scans.

    Args:
        scans: iterable of ``(points (N, 4) float32, labels (N,) uint32 raw)``.

    Returns:
        dict: ``points`` (total), ``share`` {class: fraction}, ``range_hist`` / ``remission_hist`` {class: (B,)
        normalised histograms over :data:`RANGE_BINS` / :data:`REMISSION_BINS`}, ``remission_mean``,
        ``range_median`` {class: float}, ``points_per_object`` {class: median points per instance},
        ``ring_spacing_deg`` (median gap between ring elevations, upper and lower block), ``n_rings``,
        ``ground_slope_deg`` and ``sensor_height`` (means over scans).
    """
    rng_h, rem_h, counts = {}, {}, {}
    per_object: dict[int, list] = {}
    rings, slopes, heights, total = [], [], [], 0
    for points, labels in scans:
        points = np.asarray(points)
        cls = fold_class(labels)
        inst = np.asarray(labels).astype(np.int64) >> 16
        r = np.linalg.norm(points[:, :3].astype(np.float64), axis=1)
        total += len(points)
        for c in CLASS_NAMES:
            m = cls == c
            k = int(m.sum())
            if not k:
                continue
            counts[c] = counts.get(c, 0) + k
            rng_h[c] = rng_h.get(c, 0) + np.histogram(r[m], RANGE_BINS)[0]
            rem_h[c] = rem_h.get(c, 0) + np.histogram(np.clip(points[m, 3], 0, 1), REMISSION_BINS)[0]
            if c in INSTANCE_CLASSES:
                ids, n = np.unique(inst[m], return_counts=True)
                per_object.setdefault(c, []).extend(n[ids > 0].tolist())
        el = ring_elevations(points)
        if len(el) > 4:
            rings.append(el)
        s, h = ground_plane(points, labels)
        slopes.append(s)
        heights.append(h)
    centres_r = 0.5 * (RANGE_BINS[1:] + RANGE_BINS[:-1])
    centres_i = 0.5 * (REMISSION_BINS[1:] + REMISSION_BINS[:-1])
    out = {'points': total, 'share': {}, 'range_hist': {}, 'remission_hist': {}, 'remission_mean': {},
           'range_median': {}, 'points_per_object': {}}
    for c, k in counts.items():
        name = CLASS_NAMES[c]
        out['share'][name] = k / max(total, 1)
        hr = rng_h[c] / max(rng_h[c].sum(), 1)
        hi = rem_h[c] / max(rem_h[c].sum(), 1)
        out['range_hist'][name], out['remission_hist'][name] = hr, hi
        out['remission_mean'][name] = float(hi @ centres_i)
        out['range_median'][name] = float(centres_r[np.searchsorted(np.cumsum(hr), 0.5)])
    for c, n in per_object.items():
        out['points_per_object'][CLASS_NAMES[c]] = float(np.median(n)) if n else 0.0
    if rings:
        gaps = [np.abs(np.diff(e)) for e in rings]
        out['n_rings'] = float(np.median([len(e) for e in rings]))
        out['ring_spacing_deg'] = float(np.median(np.concatenate(gaps)))
    out['ground_slope_deg'] = float(np.nanmean(slopes)) if slopes else float('nan')
    out['sensor_height'] = float(np.nanmean(heights)) if heights else float('nan')
    return out


def _w1(h1: np.ndarray, h2: np.ndarray, width: float) -> float:
    """1-Wasserstein distance between two normalised histograms on the same equal-width bins."""
    return float(np.abs(np.cumsum(h1) - np.cumsum(h2)).sum() * width)


def compare_statistics(synth: dict, real: dict) -> dict:
    """Per-class distances between a synthetic and a real :func:`scan_statistics` summary.

    Returns:
        dict: ``classes`` {name: {share_real, share_synth, range_w1_m, remission_w1, remission_mean_real,
        remission_mean_synth, points_per_object_real, points_per_object_synth}} over the classes of the real
        summary, ``missing`` (real classes absent from the synthetic scans), ``range_w1_mean`` and
        ``remission_w1_mean`` (share-weighted means over the real classes found in both), and the scalar
        statistics side by side.
    """
    rw, iw = RANGE_BINS[1] - RANGE_BINS[0], REMISSION_BINS[1] - REMISSION_BINS[0]
    classes, missing = {}, []
    wr = wi = wsum = 0.0
    for name, share in real['share'].items():
        row = {'share_real': share, 'share_synth': synth['share'].get(name, 0.0),
               'remission_mean_real': real['remission_mean'][name],
               'remission_mean_synth': synth['remission_mean'].get(name, float('nan')),
               'points_per_object_real': real['points_per_object'].get(name),
               'points_per_object_synth': synth['points_per_object'].get(name)}
        if name in synth['share']:
            row['range_w1_m'] = _w1(synth['range_hist'][name], real['range_hist'][name], rw)
            row['remission_w1'] = _w1(synth['remission_hist'][name], real['remission_hist'][name], iw)
            wr += share * row['range_w1_m']
            wi += share * row['remission_w1']
            wsum += share
        else:
            missing.append(name)
        classes[name] = row
    scalars = {k: (synth.get(k), real.get(k)) for k in ('n_rings', 'ring_spacing_deg', 'ground_slope_deg',
                                                          'sensor_height')}
    return {'classes': classes, 'missing': missing, 'range_w1_mean': wr / max(wsum, 1e-12),
            'remission_w1_mean': wi / max(wsum, 1e-12), 'scalars': scalars}


def format_comparison(cmp: dict) -> str:
    """Markdown table of :func:`compare_statistics` (one row per real class)."""
    lines = ['| class | share real | share synth | range W1 (m) | remission W1 | remission mean real/synth '
             '| points/object real/synth |', '|---|---|---|---|---|---|---|']

    def f(v, p=3):
        return '-' if v is None or (isinstance(v, float) and np.isnan(v)) else f'{v:.{p}f}'

    for name, r in sorted(cmp['classes'].items(), key=lambda kv: -kv[1]['share_real']):
        lines.append(f'| {name} | {f(r["share_real"])} | {f(r["share_synth"])} | {f(r.get("range_w1_m"), 2)} | '
                     f'{f(r.get("remission_w1"))} | {f(r["remission_mean_real"], 2)} / '
                     f'{f(r["remission_mean_synth"], 2)} | {f(r["points_per_object_real"], 0)} / '
                     f'{f(r["points_per_object_synth"], 0)} |')
    lines.append('')
    lines.append(f'share-weighted mean W1: range {cmp["range_w1_mean"]:.2f} m, remission '
                 f'{cmp["remission_w1_mean"]:.3f}; real classes missing from synthetic: '
                 f'{", ".join(cmp["missing"]) or "none"}')
    for k, (s, r) in cmp['scalars'].items():
        lines.append(f'- {k}: synthetic {f(s)}, real {f(r)}')
    return '\n'.join(lines)


def read_folder(folder: str | Path, limit: int | None = None):
    """Yield ``(points, labels)`` of the labelled scans of one odometry-layout sequence folder."""
    folder = Path(folder)
    for lab in sorted((folder / 'labels').glob('*.label'))[:limit]:
        pts = np.fromfile(folder / 'velodyne' / f'{lab.stem}.bin', '<f4').reshape(-1, 4)
        yield pts, np.fromfile(lab, '<u4')


def main(argv=None) -> int:
    """``python -m pu_ros.data.scan_stats --real SEQ_DIR --synth SEQ_DIR [--out FILE.md]``."""
    p = argparse.ArgumentParser(description='compare synthetic and real labelled scans')
    p.add_argument('--real', action='append', required=True, help='real sequence folder (repeatable)')
    p.add_argument('--synth', action='append', required=True, help='synthetic sequence folder (repeatable)')
    p.add_argument('--limit', type=int, default=None, help='scans per folder')
    p.add_argument('--out', default=None, help='write the Markdown report here too')
    a = p.parse_args(argv)
    for d in a.real + a.synth:
        if not (Path(d) / 'labels').is_dir():
            print(f'scan_stats: {d} has no labels/ folder', file=sys.stderr)
            return 2

    def gen(dirs):
        for d in dirs:
            yield from read_folder(d, a.limit)

    report = format_comparison(compare_statistics(scan_statistics(gen(a.synth)), scan_statistics(gen(a.real))))
    print(report)
    if a.out:
        Path(a.out).write_text(report + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
