"""Laser rings of spinning-LiDAR scans: recover the ring of every point, keep every k-th ring, interpolate rings.

KITTI ``.bin`` scans store no ring index, but their points keep the sensor's order: laser after laser, each one a
full turn in azimuth (counter-clockwise, starting straight ahead). Within a ring the azimuth, measured in the sweep
direction from the scan's first point, grows from ~0 to ~2π; the next ring starts again near 0. A large backward
jump of that relative azimuth therefore marks a new ring (checked on all ten seq-00 scans: exactly 64 rings, ordered
top to bottom). The synthetic scans of :mod:`pu_ros.data.synthetic` have the same layout, clockwise from behind;
the sweep direction is detected from the data.

Rings are numbered by elevation (0 = the highest, from each ring's median elevation), so "keep every 4th ring" of an
HDL-64 scan gives a 16-beam-like scan whatever the laser order in the file.
"""

from __future__ import annotations

import numpy as np


def _azimuth(points: np.ndarray) -> np.ndarray:
    return np.arctan2(points[:, 1].astype(np.float64), points[:, 0].astype(np.float64))


def elevation(points: np.ndarray) -> np.ndarray:
    """(N,) float64 elevation angle (rad) of (N, >=3) points as seen from the sensor origin."""
    p = np.asarray(points, dtype=np.float64)
    return np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))


def _seam_cost(u: np.ndarray, el: np.ndarray, seam: float) -> float:
    """Sum over rings of |elevation - ring mean| when rings are cut at ``seam + 2πk`` of the unwrapped azimuth."""
    ring = np.floor((u - seam) / (2 * np.pi)).astype(np.int64)
    ring -= ring.min()
    count = np.bincount(ring)
    mean = np.bincount(ring, el) / np.maximum(count, 1)
    return float(np.abs(el - mean[ring]).sum())


def ring_index(points: np.ndarray, coarse_deg: float = 2.0, fine_deg: float = 0.05) -> np.ndarray:
    """Ring (laser) of every point of a scan stored in sensor order, numbered by elevation (0 = top).

    The azimuth is unwrapped along the file in the sweep direction (detected from the median step; a backward step
    of more than 0.5 rad is read as a forward gap, so rings with large holes and cropped scans work), which adds
    about 2π per ring. Rings are cut where the unwrapped azimuth passes ``seam + 2πk``; the seam (≈ 0° for KITTI,
    the first azimuth step for the synthetic scans) is the azimuth that makes rings most consistent in elevation,
    searched on a ``coarse_deg`` grid (every 8th point) then refined to ``fine_deg`` (all points).

    Args:
        points: (N, >=3) points in the sensor frame, in the order the sensor produced them (KITTI ``.bin`` order).
        coarse_deg: step of the first seam search (degrees).
        fine_deg: step of the refined seam search (degrees).

    Returns:
        (N,) int64 ring ids in ``0..R-1``, R = number of rings found.

    Raises:
        ValueError: fewer than 2 points.
    """
    pts = np.asarray(points)
    n = pts.shape[0]
    if n < 2:
        raise ValueError(f'ring_index: need at least 2 points, got {n}')
    az = _azimuth(pts)
    step = np.angle(np.exp(1j * np.diff(az)))  # wrapped to (-π, π]
    direction = 1.0 if np.median(step) >= 0 else -1.0
    step = direction * step
    step[step < -0.5] += 2 * np.pi  # a hole of more than half a turn, or the jump of a cropped scan
    u = np.concatenate([[0.0], np.cumsum(step)])
    el = elevation(pts)
    coarse = np.deg2rad(coarse_deg)
    cands = -np.arange(0.0, 2 * np.pi, coarse)  # seams at or before the first point (u = 0)
    sub = slice(None, None, 8)  # the coarse search on every 8th point
    best = cands[int(np.argmin([_seam_cost(u[sub], el[sub], c) for c in cands]))]
    fine = best + np.arange(-coarse, coarse + 1e-12, np.deg2rad(fine_deg))
    seam = fine[int(np.argmin([_seam_cost(u, el, c) for c in fine]))]
    seq = np.floor((u - seam) / (2 * np.pi)).astype(np.int64)
    seq -= seq.min()
    n_seq = int(seq.max()) + 1
    count = np.bincount(seq, minlength=n_seq)
    med = np.bincount(seq, el, minlength=n_seq) / np.maximum(count, 1)
    med[count == 0] = np.inf  # empty rings (a fully lost laser) get no number
    rank = np.empty(n_seq, np.int64)
    rank[np.argsort(-med, kind='stable')] = np.arange(n_seq)
    return rank[seq]


def ring_from_elevation(points: np.ndarray, elevations: np.ndarray) -> np.ndarray:
    """Ring of every point as the nearest of known laser ``elevations`` (R,) rad: (N,) int64 index into them.

    Exact for scans whose noise is along the ray (the synthetic ones); the test twin of :func:`ring_index`.
    """
    el = elevation(points)
    return np.abs(el[:, None] - np.asarray(elevations)[None, :]).argmin(1).astype(np.int64)


def decimate_mask(ring: np.ndarray, keep_every: int, offset: int = 0) -> np.ndarray:
    """(N,) bool mask of the points whose ring id (elevation rank) is ``offset`` modulo ``keep_every``.

    ``keep_every=2`` turns a 64-ring scan into 32 rings, ``4`` into 16.
    """
    if keep_every < 1:
        raise ValueError(f'keep_every must be >= 1, got {keep_every}')
    return (np.asarray(ring) % int(keep_every)) == (int(offset) % int(keep_every))


def decimate_beams(points: np.ndarray, keep_every: int, offset: int = 0, ring: np.ndarray | None = None):
    """Keep every ``keep_every``-th laser ring of a scan.

    Args:
        points: (N, C) scan in sensor order (C >= 3; extra columns such as intensity are kept).
        keep_every: 2 (64 -> 32 beams) or 4 (64 -> 16 beams), any integer >= 1.
        offset: which ring of each group is kept.
        ring: (N,) ring ids if already known (else :func:`ring_index`).

    Returns:
        ``(sparse, mask, ring)``: (M, C) kept points (original order), (N,) bool mask, (N,) ring ids.
    """
    ring = ring_index(points) if ring is None else np.asarray(ring)
    mask = decimate_mask(ring, keep_every, offset)
    return np.asarray(points)[mask], mask, ring


def interpolate_rings(points: np.ndarray, ring: np.ndarray, factor: int) -> np.ndarray:
    """Naive densification: new points between every point and its azimuth neighbour on the next ring down.

    ``factor - 1`` points per pair, linear in range, elevation and intensity (the azimuth is the upper point's).
    The baseline of the sparse-LiDAR table.

    Args:
        points: (M, C) sparse scan (C >= 3; a 4th column, intensity, is interpolated too).
        ring: (M,) ring ids of the sparse scan (any increasing numbering, top = smallest).
        factor: upsampling factor along elevation (4 for 16 -> 64 beams).

    Returns:
        (M + K, C) float32: the input points first, then the K interpolated ones (about (factor - 1) · M).
    """
    pts = np.asarray(points, dtype=np.float64)
    ring = np.asarray(ring)
    if factor < 2 or pts.shape[0] == 0:
        return pts.astype(np.float32)
    ids = np.unique(ring)
    az = _azimuth(pts)
    rng_ = np.linalg.norm(pts[:, :3], axis=1)
    el = elevation(pts)
    new = []
    for upper, lower in zip(ids[:-1], ids[1:]):  # one vectorised step per ring pair (at most 64), not per point
        iu, il = np.flatnonzero(ring == upper), np.flatnonzero(ring == lower)
        if iu.size == 0 or il.size == 0:
            continue
        order = il[np.argsort(az[il])]
        saz = az[order]
        pos = np.searchsorted(saz, az[iu])
        left, right = order[(pos - 1) % len(order)], order[pos % len(order)]
        dl = np.abs(np.angle(np.exp(1j * (az[left] - az[iu]))))
        dr = np.abs(np.angle(np.exp(1j * (az[right] - az[iu]))))
        partner = np.where(dl <= dr, left, right)
        for j in range(1, factor):
            t = j / factor
            r = (1 - t) * rng_[iu] + t * rng_[partner]
            e = (1 - t) * el[iu] + t * el[partner]
            row = np.empty((iu.size, pts.shape[1]))
            row[:, 0] = r * np.cos(e) * np.cos(az[iu])
            row[:, 1] = r * np.cos(e) * np.sin(az[iu])
            row[:, 2] = r * np.sin(e)
            if pts.shape[1] > 3:
                row[:, 3:] = (1 - t) * pts[iu, 3:] + t * pts[partner, 3:]
            new.append(row)
    out = np.concatenate([pts] + new, axis=0) if new else pts
    return out.astype(np.float32)
