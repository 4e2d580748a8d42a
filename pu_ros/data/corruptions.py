"""LiDAR corruptions for the robustness benchmark: our own versions of the eight of SemanticKITTI-C / Robo3D.

Kong et al., "Robo3D: Towards Robust and Reliable 3D Perception against Corruptions" (ICCV 2023) define eight
corruptions at three severities. Ours follow their physical idea, with our own simple models (numbers per level
are in :data:`LEVELS`):

=================  =========================================================================================
``fog``            two-way attenuation ``exp(-2 beta r)`` of the remission; a ray is back-scattered by the fog
                   with probability ``0.5 (1 - exp(-beta r))`` (its return replaced by a weak fog point at a range
                   drawn in [0, r)); a weakened echo is lost with probability ``0.5 (1 - exp(-2 beta r))``
``wet_ground``     ground points (a plane fitted to the low points, no labels used) lose remission (water film,
                   specular) and are lost with a probability growing with range (grazing incidence)
``snow``           a share of the rays hit a flake (return replaced by a flake point within 25 m), remission
                   attenuated, range jitter, a few echoes lost
``motion_blur``    uncompensated ego motion during the 0.1 s sweep (``x -= v t(azimuth)``) and Gaussian jitter
``beam_missing``   a share of the laser rings removed (rings recovered from the elevation, :func:`ring_index`)
``crosstalk``      a share of the rays get a ghost return from another sensor at a random range (return replaced)
``incomplete_echo`` low-remission returns (dark paint, glass: cars mostly) are lost with a high probability
``cross_sensor``   64 -> 32 beams (level 1), 16 beams (2), 16 beams and every other azimuth step (3)
=================  =========================================================================================

Every corruption is a pure function of ``(points, seed)``; the random draws do not depend on the level (common
random numbers), so a higher level perturbs a superset of what a lower one does. Labels travel with the points:
a point that survives keeps its label, a dropped point disappears with its label, an **added** point (fog, snow,
crosstalk returns) gets ``ignore_label`` so it is not scored. A replaced return counts as one dropped and one
added point. The output lists surviving points first (in their original order), then added ones;
``source`` gives the original index of each output point (-1 for added points).
"""

from __future__ import annotations

from dataclasses import dataclass
import zlib

import numpy as np

CORRUPTIONS = ('fog', 'wet_ground', 'snow', 'motion_blur', 'beam_missing', 'crosstalk', 'incomplete_echo',
               'cross_sensor')  # fmt: skip
SEVERITIES = (1, 2, 3)
DEFAULT_LEVEL = 2
LEVELS = {
    'fog': {'beta': (0.01, 0.025, 0.05)},  # extinction coefficient (1/m)
    'wet_ground': {'gain': (0.6, 0.4, 0.25), 'drop': (0.3, 0.5, 0.7)},  # remission factor, loss at 50 m
    'snow': {'flakes': (0.01, 0.025, 0.05), 'gain': (0.9, 0.8, 0.7), 'jitter': (0.01, 0.02, 0.03),
             'lost': (0.02, 0.05, 0.1)},  # fmt: skip
    'motion_blur': {'speed': (3.0, 6.0, 12.0), 'jitter': (0.02, 0.04, 0.08)},  # m/s, m
    'beam_missing': {'share': (0.1, 0.3, 0.5)},
    'crosstalk': {'share': (0.01, 0.03, 0.06)},
    'incomplete_echo': {'threshold': (0.05, 0.1, 0.15), 'drop': (0.5, 0.75, 0.9)},
    'cross_sensor': {'ring_step': (2, 4, 4), 'azimuth_step': (1, 1, 2)},
}


@dataclass
class Corrupted:
    """A corrupted scan.

    Attributes:
        points: (M, 4) float32 x, y, z, remission.
        labels: (M,) labels (same dtype as the input), ``ignore_label`` for added points.
        source: (M,) int64 index of each point in the input, -1 for added points (survivors come first).
    """

    points: np.ndarray
    labels: np.ndarray
    source: np.ndarray

    @property
    def num_added(self) -> int:
        """Points that were not in the input."""
        return int((self.source < 0).sum())


def parse_corruption(spec: str) -> tuple[str, int]:
    """``'fog'`` / ``'fog:3'`` -> ``('fog', level)`` (default level :data:`DEFAULT_LEVEL`).

    Raises:
        ValueError: unknown name or a level outside 1..3.
    """
    name, _, level = str(spec).strip().partition(':')
    name = name.strip().lower().replace('-', '_')
    if name not in CORRUPTIONS:
        raise ValueError(f'unknown corruption {name!r}; known: {", ".join(CORRUPTIONS)}')
    try:
        lvl = int(level) if level else DEFAULT_LEVEL
    except ValueError:
        raise ValueError(f'corruption level must be 1, 2 or 3, got {level!r}') from None
    if lvl not in SEVERITIES:
        raise ValueError(f'corruption level must be 1, 2 or 3, got {lvl}')
    return name, lvl


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def ring_index(points: np.ndarray, n_beams: int = 64, iters: int = 12) -> np.ndarray:
    """Laser ring of every point, recovered from its elevation (1-D k-means with ``n_beams`` centres).

    Centres start at the HDL-64E-like table of the synthetic generator (``n_beams == 64``) or at evenly spaced
    elevation quantiles, then Lloyd iterations (assignment by the midpoints between sorted centres).

    Args:
        points: (N, >=3) scan in the sensor frame.
        n_beams: number of rings.
        iters: Lloyd iterations.

    Returns:
        (N,) int64 ring id, 0 = top ring.
    """
    xyz = np.asarray(points, np.float64)[:, :3]
    el = np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1]))
    if el.size == 0:
        return np.zeros(0, np.int64)
    if n_beams == 64:
        upper = np.linspace(2.0, -8.33, 32)
        centres = np.deg2rad(np.concatenate([upper, np.linspace(-8.83, -24.9, 32)]))
    else:
        centres = np.quantile(el, np.linspace(1.0, 0.0, n_beams))
    centres = np.sort(centres)[::-1].copy()  # descending: ring 0 on top
    for _ in range(iters):
        asc = centres[::-1]
        ring = n_beams - 1 - np.searchsorted((asc[1:] + asc[:-1]) / 2, el)
        sums = np.bincount(ring, weights=el, minlength=n_beams)
        counts = np.bincount(ring, minlength=n_beams)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.allclose(new, centres, atol=1e-7):
            break
        centres = np.sort(new)[::-1]
    asc = centres[::-1]
    return (n_beams - 1 - np.searchsorted((asc[1:] + asc[:-1]) / 2, el)).astype(np.int64)


def ground_mask(points: np.ndarray, band: float = 0.25) -> np.ndarray:
    """(N,) bool: points within ``band`` m of a plane fitted to the low points within 40 m (no labels)."""
    xyz = np.asarray(points, np.float64)[:, :3]
    near = np.hypot(xyz[:, 0], xyz[:, 1]) < 40.0
    if near.sum() < 20:
        return np.zeros(len(xyz), bool)
    cand = near & (xyz[:, 2] < np.percentile(xyz[near, 2], 30))
    for _ in range(3):
        A = np.c_[xyz[cand, 0], xyz[cand, 1], np.ones(int(cand.sum()))]
        coef, *_ = np.linalg.lstsq(A, xyz[cand, 2], rcond=None)
        res = xyz[:, 2] - (xyz[:, 0] * coef[0] + xyz[:, 1] * coef[1] + coef[2])
        cand = near & (np.abs(res) < 0.3)
        if cand.sum() < 20:
            break
    return np.abs(res) < band


def _replace_along_ray(xyz, r, idx, new_range, new_remission):
    """(K, 4) points on the rays of the points ``idx`` at ``new_range``."""
    out = np.empty((idx.size, 4), np.float32)
    out[:, :3] = xyz[idx] / np.maximum(r[idx], 1e-6)[:, None] * new_range[:, None]
    out[:, 3] = new_remission
    return out


def corrupt(points: np.ndarray, labels: np.ndarray, name: str, level: int, seed: int = 0,
            ignore_label: int = 0) -> Corrupted:
    """Apply one corruption at one severity.

    Args:
        points: (N, 4) float32 x, y, z, remission (sensor frame).
        labels: (N,) labels (any integer dtype; raw or learning ids).
        name: one of :data:`CORRUPTIONS`.
        level: 1, 2 or 3.
        seed: random seed (use a different one per scan, e.g. ``base + frame index``).
        ignore_label: label given to added points.

    Returns:
        :class:`Corrupted`.
    """
    name, level = parse_corruption(f'{name}:{level}')
    p = LEVELS[name]
    k = level - 1
    pts = np.asarray(points, np.float32)
    labels = np.asarray(labels)
    n = pts.shape[0]
    xyz = pts[:, :3].astype(np.float64)
    r = np.linalg.norm(xyz, axis=1)
    rng = _rng(name, seed)
    keep = np.ones(n, bool)
    out = pts.copy()
    added = np.zeros((0, 4), np.float32)
    if name == 'fog':
        beta = p['beta'][k]
        u_s, u_l, u_r, u_i = rng.random(n), rng.random(n), rng.random(n), rng.random(n)
        scatter = u_s < 0.5 * (1.0 - np.exp(-beta * r))
        lost = ~scatter & (u_l < 0.5 * (1.0 - np.exp(-2.0 * beta * r)))
        keep = ~scatter & ~lost
        out[:, 3] = pts[:, 3] * np.exp(-2.0 * beta * r)
        idx = np.flatnonzero(scatter)
        # range in [0, r) from the truncated exponential of rate beta (inverse CDF)
        rf = -np.log(1.0 - u_r[idx] * (1.0 - np.exp(-beta * r[idx]))) / beta
        added = _replace_along_ray(xyz, r, idx, np.maximum(rf, 0.5), 0.05 * u_i[idx])
    elif name == 'wet_ground':
        u = rng.random(n)
        ground = ground_mask(pts)
        out[ground, 3] = pts[ground, 3] * p['gain'][k]
        keep = ~(ground & (u < p['drop'][k] * np.clip(r / 50.0, 0.0, 1.0)))
    elif name == 'snow':
        u_f, u_r, u_i, u_l, g = rng.random(n), rng.random(n), rng.random(n), rng.random(n), rng.normal(0, 1, n)
        flake = u_f < p['flakes'][k]
        keep = ~flake & (u_l >= p['lost'][k])
        scale = (r + p['jitter'][k] * g) / np.maximum(r, 1e-6)
        out[:, :3] = (xyz * scale[:, None]).astype(np.float32)
        out[:, 3] = pts[:, 3] * p['gain'][k]
        idx = np.flatnonzero(flake)
        added = _replace_along_ray(xyz, r, idx, 0.8 + u_r[idx] * (np.minimum(r[idx], 25.0) - 0.8), 0.1 * u_i[idx])
    elif name == 'motion_blur':
        g = rng.normal(0.0, 1.0, (n, 3))
        frac = (np.pi - np.arctan2(xyz[:, 1], xyz[:, 0])) / (2.0 * np.pi)  # sweep time / 0.1 s, from behind
        moved = xyz + p['jitter'][k] * g
        moved[:, 0] -= p['speed'][k] * 0.1 * frac
        out[:, :3] = moved.astype(np.float32)
    elif name == 'beam_missing':
        ring = ring_index(pts)
        order = rng.permutation(64)
        gone = order[: int(round(p['share'][k] * 64))]
        keep = ~np.isin(ring, gone)
    elif name == 'crosstalk':
        u_c, u_r, u_i = rng.random(n), rng.random(n), rng.random(n)
        ghost = u_c < p['share'][k]
        keep = ~ghost
        idx = np.flatnonzero(ghost)
        added = _replace_along_ray(xyz, r, idx, 1.0 + 79.0 * u_r[idx], 0.3 * u_i[idx])
    elif name == 'incomplete_echo':
        u = rng.random(n)
        keep = ~((pts[:, 3] < p['threshold'][k]) & (u < p['drop'][k]))
    elif name == 'cross_sensor':
        ring = ring_index(pts)
        keep = ring % p['ring_step'][k] == 0
        step = p['azimuth_step'][k]
        if step > 1:
            az_bin = np.floor((np.arctan2(xyz[:, 1], xyz[:, 0]) + np.pi) / (2 * np.pi) * 2000).astype(np.int64)
            keep &= az_bin % step == 0
    src = np.flatnonzero(keep)
    lab_added = np.full(added.shape[0], ignore_label, dtype=labels.dtype)
    return Corrupted(points=np.concatenate([out[src], added]).astype(np.float32),
                     labels=np.concatenate([labels[src], lab_added]),
                     source=np.concatenate([src, np.full(added.shape[0], -1, np.int64)]))
