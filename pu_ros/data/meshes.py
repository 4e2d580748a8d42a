"""Triangle meshes and point sets for upsampling: OFF / XYZ reading, unit-sphere normalisation, surface sampling.

Conventions: vertices (V, 3) float64, faces (F, 3) int64 (polygons are fanned into triangles), point sets
(N, 3) float32. Poisson-disk sampling uses point-cloud-utils (``pip install point-cloud-utils``, pinned in
``requirements/core.txt``); uniform area-weighted sampling is plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class MeshFormatError(ValueError):
    """A mesh or point file cannot be parsed."""


@dataclass
class Mesh:
    """A triangle mesh.

    Attributes:
        vertices: (V, 3) float64.
        faces: (F, 3) int64 indices into ``vertices``.
        name: where it came from (file stem or generator name).
    """

    vertices: np.ndarray
    faces: np.ndarray
    name: str = ''

    def area(self) -> float:
        """Total surface area."""
        return float(face_areas(self.vertices, self.faces).sum())


def _pcu():
    try:
        import point_cloud_utils as pcu
    except ImportError as exc:  # pragma: no cover - pinned in requirements/core.txt
        raise ImportError('mesh sampling and point-to-mesh distances need point-cloud-utils: '
                          'pip install point-cloud-utils==0.34.0') from exc
    return pcu


def read_off(path: str | Path) -> Mesh:
    """Read an OFF mesh.

    The ``OFF`` header may be fused with the counts (as in some ModelNet files); comments are skipped and polygons of
    any size fanned into triangles.

    Raises:
        MeshFormatError: not an OFF file, truncated, or face indices out of range.
    """
    path = Path(path)
    try:
        text = path.read_text(errors='replace')
    except OSError as exc:
        raise MeshFormatError(f'cannot read mesh {path}: {exc.strerror or exc}') from None
    lines = [ln.split('#', 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].upper().startswith('OFF'):
        raise MeshFormatError(f'{path}: not an OFF file (first line {lines[0][:40] if lines else ""!r})')
    head = lines[0][3:].split()
    body = lines[1:]
    if not head:
        if not body:
            raise MeshFormatError(f'{path}: missing vertex/face counts')
        head, body = body[0].split(), body[1:]
    try:
        nv, nf = int(head[0]), int(head[1])
        verts = np.array([body[i].split()[:3] for i in range(nv)], dtype=np.float64).reshape(nv, 3)
        tris = []
        for ln in body[nv:nv + nf]:
            vals = [int(x) for x in ln.split()]
            k = vals[0]
            poly = vals[1:1 + k]
            if len(poly) != k or k < 3:
                raise ValueError(f'bad face line {ln[:40]!r}')
            tris.extend((poly[0], poly[j], poly[j + 1]) for j in range(1, k - 1))
    except (ValueError, IndexError) as exc:
        raise MeshFormatError(f'{path}: malformed OFF ({exc})') from None
    faces = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= nv):
        raise MeshFormatError(f'{path}: face index out of range 0..{nv - 1}')
    return Mesh(verts, faces, path.stem)


def write_off(path: str | Path, mesh: Mesh) -> Path:
    """Write ``mesh`` as an ASCII OFF file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as fh:
        fh.write(f'OFF\n{len(mesh.vertices)} {len(mesh.faces)} 0\n')
        np.savetxt(fh, mesh.vertices, fmt='%.6f')
        np.savetxt(fh, np.hstack([np.full((len(mesh.faces), 1), 3), mesh.faces]), fmt='%d')
    return path


def read_points(path: str | Path) -> np.ndarray:
    """Read a point set as (N, 3) float32.

    Formats: ``.xyz``/``.txt`` (whitespace or comma separated, first 3 columns), ``.npy`` or ``.off`` (its vertices).

    Raises:
        MeshFormatError: unreadable or fewer than 3 columns.
    """
    path = Path(path)
    try:
        if path.suffix == '.npy':
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == '.off':
            arr = read_off(path).vertices
        else:
            arr = np.loadtxt(path, delimiter=',' if ',' in path.open().readline() else None, ndmin=2)
    except (OSError, ValueError) as exc:
        raise MeshFormatError(f'cannot read points {path}: {exc}') from None
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise MeshFormatError(f'{path}: expected (N, >=3) points, got shape {arr.shape}')
    return np.ascontiguousarray(arr[:, :3], dtype=np.float32)


def write_xyz(path: str | Path, points: np.ndarray) -> Path:
    """Write (N, 3) points as ASCII ``x y z`` lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.asarray(points)[:, :3], fmt='%.6f')
    return path


def unit_sphere_transform(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid and radius (distance of the farthest point) of (N, 3) points, as PU-GAN normalises point sets.

    Returns:
        ``(centre (3,) float64, radius)``; ``(points - centre) / radius`` lies in the unit sphere.
    """
    pts = np.asarray(points, dtype=np.float64)
    centre = pts.mean(axis=0)
    radius = float(np.sqrt(((pts - centre) ** 2).sum(1)).max())
    return centre, max(radius, 1e-12)


def normalize_unit_sphere(mesh: Mesh) -> Mesh:
    """Copy of ``mesh`` normalised to the unit sphere (PU-GAN's convention).

    Translated and scaled so the centroid of its (referenced) vertices is at the origin and its farthest vertex at
    distance 1. Idempotent, so the shared PU-GAN meshes (already
    normalised this way) stay aligned with the 2048-point inputs shipped beside them.
    """
    v, f = mesh.vertices, mesh.faces
    used = v[np.unique(f)] if f.size else v
    centre, radius = unit_sphere_transform(used)
    return Mesh((v - centre) / radius, f.copy(), mesh.name)


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) float64 triangle areas."""
    tri = np.asarray(vertices, dtype=np.float64)[faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def sample_uniform(mesh: Mesh, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly distributed over the surface: (n, 3) float32.

    Area-weighted faces, uniform barycentrics. The non-uniform inputs of the evaluation are drawn from such a set.
    """
    areas = face_areas(mesh.vertices, mesh.faces)
    fi = rng.choice(len(areas), size=n, p=areas / areas.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bc = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    tri = mesh.vertices[mesh.faces[fi]]
    return np.einsum('nk,nkd->nd', bc, tri).astype(np.float32)


def sample_poisson_disk(mesh: Mesh, n: int, seed: int = 0) -> np.ndarray:
    """Exactly ``n`` blue-noise points on the surface: (n, 3) float32.

    point-cloud-utils' Poisson-disk sampler (Bowers et al. 2010, geodesic distances) does not return the count asked
    for (typically ~1.4 times more), so the request is rescaled from what came back (up to 4 tries) until the result
    holds between ``n`` and ~1.06 ``n`` points; the surplus of a few per cent is then removed by farthest point
    sampling (:func:`pu_ros.ops.neighbors.farthest_point_sample`), which drops points where the set is densest and
    so keeps it blue noise (a random drop opens holes).

    Args:
        mesh: triangle mesh with non-zero area.
        n: number of points.
        seed: random seed (deterministic for a given seed).
    """
    pcu = _pcu()
    v = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
    f = np.ascontiguousarray(mesh.faces, dtype=np.int32)
    ask = max(int(n), 1)
    best = None
    for _ in range(4):
        fi, bc = pcu.sample_mesh_poisson_disk(v, f, num_samples=ask, random_seed=int(seed) + 1)  # 0 = clock
        got = len(fi)
        if got >= n and (best is None or got < len(best[0])):
            best = (fi, bc)
        if n <= got <= 1.06 * n:
            break
        ask = max(1, int(ask * 1.02 * n / max(got, 1)) + 1)
    if best is None:  # pragma: no cover - degenerate meshes only
        raise ValueError(f'mesh {mesh.name!r}: Poisson-disk sampling gave {got} < {n} points')
    import torch

    from pu_ros.ops.neighbors import farthest_point_sample

    fi, bc = best
    pts = np.ascontiguousarray(pcu.interpolate_barycentric_coords(f, fi, bc, v), dtype=np.float32)
    if len(pts) > n:
        pts = pts[np.sort(farthest_point_sample(torch.from_numpy(pts), int(n)).numpy())]
    return np.ascontiguousarray(pts)


def point_to_mesh_distance(points: np.ndarray, mesh: Mesh) -> np.ndarray:
    """Exact Euclidean distance of every point to the closest point of the triangle mesh: (N,) float64.

    point-cloud-utils ``closest_points_on_mesh`` (libigl's AABB tree).
    """
    pcu = _pcu()
    d, _, _ = pcu.closest_points_on_mesh(np.ascontiguousarray(points, dtype=np.float64),
                                         np.ascontiguousarray(mesh.vertices, dtype=np.float64),
                                         np.ascontiguousarray(mesh.faces, dtype=np.int32))
    return np.abs(np.asarray(d, dtype=np.float64))


def list_meshes(folder: str | Path) -> list[Path]:
    """The ``.off`` files of a folder (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'mesh folder not found: {folder}')
    return sorted(folder.rglob('*.off'))
