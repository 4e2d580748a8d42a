"""Synthetic training meshes for upsampling: random superquadrics, tori and their unions.

Each shape is a closed triangle mesh (:class:`pu_ros.data.meshes.Mesh`) built from a parametric (u, v) grid, a pure
function of its seed. Superquadrics (Barr 1981) span ellipsoids, rounded boxes, cylinders, pinched and star-like
solids through two exponents; tori add holes; unions of 1-3 randomly rotated, scaled and shifted parts add sharp
creases where the parts cross (the surfaces are simply overlaid, as in mesh soups). Used to train PU-Flow without
touching the evaluation meshes (PU-GAN, ModelNet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pu_ros.data.meshes import Mesh, normalize_unit_sphere, write_off


def _grid_faces(nu: int, nv: int) -> np.ndarray:
    """Triangles of an (nu, nv) grid periodic in u.

    The poles at v = 0 and v = nv - 1 collapse to points; their degenerate triangles have zero area (harmless).
    """
    i, j = np.meshgrid(np.arange(nu), np.arange(nv - 1), indexing='ij')
    a = i * nv + j
    b = ((i + 1) % nu) * nv + j
    quads = np.stack([a, b, b + 1, a + 1], -1).reshape(-1, 4)
    return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]).astype(np.int64)


def _spow(x, e):
    return np.sign(x) * np.abs(x) ** e


def superquadric(scale=(1.0, 1.0, 1.0), e1: float = 1.0, e2: float = 1.0, nu: int = 64, nv: int = 33) -> Mesh:
    """Superellipsoid |x/a|^(2/e2)+|y/b|^(2/e2))^(e2/e1) + |z/c|^(2/e1) = 1 as a closed mesh.

    Args:
        scale: semi-axes (a, b, c).
        e1: north-south exponent (0.1 box-like ... 1 round ... 2 pinched).
        e2: east-west exponent.
        nu: azimuth samples.
        nv: latitude samples (poles included).
    """
    u = np.linspace(-np.pi, np.pi, nu, endpoint=False)
    v = np.linspace(-np.pi / 2, np.pi / 2, nv)
    uu, vv = np.meshgrid(u, v, indexing='ij')
    cv, sv = _spow(np.cos(vv), e1), _spow(np.sin(vv), e1)
    x = scale[0] * cv * _spow(np.cos(uu), e2)
    y = scale[1] * cv * _spow(np.sin(uu), e2)
    z = scale[2] * sv
    return Mesh(np.stack([x, y, z], -1).reshape(-1, 3), _grid_faces(nu, nv), 'superquadric')


def torus(major: float = 1.0, minor: float = 0.3, nu: int = 64, nv: int = 24) -> Mesh:
    """A torus around z (closed: periodic in both parameters)."""
    u = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing='ij')
    r = major + minor * np.cos(vv)
    verts = np.stack([r * np.cos(uu), r * np.sin(uu), minor * np.sin(vv)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing='ij')
    a = i * nv + j
    b = ((i + 1) % nu) * nv + j
    c = ((i + 1) % nu) * nv + (j + 1) % nv
    d = i * nv + (j + 1) % nv
    quads = np.stack([a, b, c, d], -1).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]).astype(np.int64)
    return Mesh(verts, faces, 'torus')


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _part(rng: np.random.Generator) -> Mesh:
    if rng.random() < 0.2:
        m = torus(1.0, rng.uniform(0.15, 0.45))
    else:
        e1, e2 = (float(rng.choice([0.2, 0.5, 1.0, 1.5, rng.uniform(0.1, 2)])) for _ in range(2))
        m = superquadric(tuple(rng.uniform(0.3, 1.0, 3)), e1=e1, e2=e2)
    if rng.random() < 0.3:  # a twist about z
        v = m.vertices.copy()
        ang = rng.uniform(-1.0, 1.0) * v[:, 2]
        c, s = np.cos(ang), np.sin(ang)
        v[:, 0], v[:, 1] = c * m.vertices[:, 0] - s * m.vertices[:, 1], s * m.vertices[:, 0] + c * m.vertices[:, 1]
        m = Mesh(v, m.faces, m.name)
    return m


def random_shape(seed: int) -> Mesh:
    """A random shape (1-3 parts), normalised to the unit sphere; the same seed gives the same mesh."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 77]))
    verts, faces, off = [], [], 0
    for k in range(int(rng.integers(1, 4))):
        m = _part(rng)
        v = m.vertices @ _rotation(rng).T * rng.uniform(0.5, 1.0) + (rng.normal(0, 0.45, 3) if k else 0.0)
        verts.append(v)
        faces.append(m.faces + off)
        off += len(v)
    return normalize_unit_sphere(Mesh(np.concatenate(verts), np.concatenate(faces), f'shape_{seed:05d}'))


def write_shapes(out_dir: str | Path, count: int, seed: int = 0) -> list[Path]:
    """Write ``count`` random shapes (seeds ``seed .. seed + count - 1``) as OFF files into ``out_dir``."""
    return [write_off(Path(out_dir) / f'shape_{s:05d}.off', random_shape(s)) for s in range(seed, seed + count)]
