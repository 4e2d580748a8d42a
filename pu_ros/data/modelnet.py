"""The shared ModelNet40 sample (``../shared/data/modelnet``): point sets for SampleNet's classification setting.

``.txt`` files are ``modelnet40_normal_resampled`` rows (x, y, z, nx, ny, nz); ``.off`` meshes are sampled
uniformly on their surface (area-weighted). Every shape is centred and scaled to the unit sphere. The split
(train/test) is the official one, read from the folder names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Shape:
    """One ModelNet40 shape: (P, 3) float32 unit-sphere points, class id, name, split."""

    points: np.ndarray
    label: int
    name: str
    split: str


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float64 vertices and (F, 3) int64 triangles of an OFF mesh (polygons fanned into triangles)."""
    text = Path(path).read_text().split('\n')
    first = text[0].strip()
    if not first.startswith('OFF'):
        raise ValueError(f'{path}: not an OFF file')
    rest = first[3:].split() or text[1].split()
    start = 1 if first[3:].split() else 2
    nv, nf = int(rest[0]), int(rest[1])
    lines = [ln for ln in text[start:] if ln.strip()]
    verts = np.array([ln.split()[:3] for ln in lines[:nv]], dtype=np.float64)
    tris = []
    for ln in lines[nv:nv + nf]:
        ids = [int(v) for v in ln.split()]
        k, poly = ids[0], ids[1:1 + ids[0]]
        tris.extend([poly[0], poly[i], poly[i + 1]] for i in range(1, k - 1))
    return verts, np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def sample_mesh(verts: np.ndarray, tris: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) points uniform on the mesh surface."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    face = rng.choice(len(tris), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return a[face] + u[:, None] * (b[face] - a[face]) + v[:, None] * (c[face] - a[face])


def unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre on the mean and scale to radius 1 (float32)."""
    p = points - points.mean(axis=0)
    return (p / max(float(np.linalg.norm(p, axis=1).max()), 1e-9)).astype(np.float32)


def load_modelnet(root: str | Path, split: str, n_mesh_points: int = 10000, seed: int = 0) -> list[Shape]:
    """All shapes of one split under ``root`` (the ``modelnet`` folder), ``.txt`` preferred over ``.off``.

    ``.off`` meshes are rotated into the ``.txt`` axis convention (y and z swapped).

    Raises:
        FileNotFoundError: no ``ModelNet40``/``splits`` under ``root``.
    """
    root = Path(root)
    names_file = root / 'splits' / 'modelnet40_shape_names.txt'
    if not names_file.is_file():
        raise FileNotFoundError(f'{names_file} not found (the shared ModelNet40 sample)')
    classes = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
    rng = np.random.default_rng(seed)
    shapes: dict[str, Shape] = {}
    for path in sorted((root / 'ModelNet40').glob(f'*/{split}/*')):
        stem = path.stem.replace('modelnet_', '')
        cls = path.parent.parent.name
        if path.suffix == '.txt':
            pts = np.loadtxt(path, delimiter=',', dtype=np.float32)[:, :3]
        elif path.suffix == '.off':
            if stem in shapes:
                continue
            v, f = read_off(path)
            pts = sample_mesh(v, f, n_mesh_points, rng)[:, [0, 2, 1]]
        else:
            continue
        shapes[stem] = Shape(unit_sphere(pts), classes.index(cls), stem, split)
    return list(shapes.values())
