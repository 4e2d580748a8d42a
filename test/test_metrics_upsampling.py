"""Upsampling metrics and mesh helpers against slow, obvious twins."""

import numpy as np
import pytest

from pu_ros.data.meshes import Mesh, face_areas, normalize_unit_sphere, read_off, read_points, write_off, write_xyz
from pu_ros.training import metrics_upsampling as mu


def _closest_on_segment(p, a, b):
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-300), 0.0, 1.0)
    return a + t * ab


def _point_triangle_distance_slow(p, a, b, c):
    """Obvious twin: projection onto the plane if it falls inside the triangle, else the nearest edge point."""
    n = np.cross(b - a, c - a)
    n = n / np.linalg.norm(n)
    q = p - np.dot(p - a, n) * n
    inside = all(np.dot(np.cross(v1 - v0, q - v0), n) >= 0 for v0, v1 in ((a, b), (b, c), (c, a)))
    cands = [q] if inside else []
    cands += [_closest_on_segment(p, a, b), _closest_on_segment(p, b, c), _closest_on_segment(p, c, a)]
    return min(np.linalg.norm(p - x) for x in cands)


def _tetra():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float) + [0.1, -0.2, 0.3]
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return Mesh(v, f, 'tetra')


def test_point_to_mesh_distance_matches_slow_twin():
    mesh = _tetra()
    pts = np.random.default_rng(0).normal(0.3, 0.8, (60, 3))
    fast = mu.point_to_mesh_distance(pts, mesh)
    slow = [min(_point_triangle_distance_slow(p, *mesh.vertices[f]) for f in mesh.faces) for p in pts]
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-9)
    mean, std = mu.p2f(pts, mesh)
    assert mean == pytest.approx(np.mean(slow)) and std == pytest.approx(np.std(slow))


def test_chamfer_and_hausdorff_match_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.random((50, 3)).astype(np.float32), rng.random((70, 3)).astype(np.float32)
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    cd = d.min(1).mean() + d.min(0).mean()
    hd = max(d.min(1).max(), d.min(0).max())
    assert float(mu.chamfer_distance(a, b)) == pytest.approx(cd, rel=1e-5)
    assert float(mu.hausdorff_distance(a, b)) == pytest.approx(hd, rel=1e-5)
    assert float(mu.hausdorff_distance(a, b, squared=False)) == pytest.approx(np.sqrt(hd), rel=1e-5)
    assert float(mu.chamfer_distance(a, b, squared=False)) == pytest.approx(
        np.sqrt(d.min(1)).mean() + np.sqrt(d.min(0)).mean(), rel=1e-5)
    assert float(mu.chamfer_distance(a, a)) == 0.0
    batched = mu.chamfer_distance(np.stack([a, b[:50]]), np.stack([b, b]))
    assert batched.shape == (2,) and float(batched[0]) == pytest.approx(cd, rel=1e-5)
    d_b = ((b[:, None] - b[None, :50]) ** 2).sum(-1)
    assert float(batched[1]) == pytest.approx(d_b.min(1).mean(), rel=1e-5)


def test_chamfer_is_differentiable():
    import torch

    a = torch.rand(1, 30, 3, requires_grad=True)
    mu.chamfer_distance(a, torch.rand(1, 40, 3)).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_off_round_trip_normalisation_and_poisson_disk(tmp_path):
    mesh = _tetra()
    path = write_off(tmp_path / 't.off', Mesh(mesh.vertices * 3.0, mesh.faces))
    back = read_off(path)
    np.testing.assert_allclose(back.vertices, mesh.vertices * 3.0, atol=1e-6)
    unit = normalize_unit_sphere(back)
    r = np.linalg.norm(unit.vertices - unit.vertices.mean(0), axis=1)
    assert r.max() == pytest.approx(1.0) and np.allclose(unit.vertices.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(normalize_unit_sphere(unit).vertices, unit.vertices, atol=1e-12)  # idempotent
    pts = mu.sample_poisson_disk(unit, 500, seed=3)
    assert pts.shape == (500, 3) and pts.dtype == np.float32
    assert mu.point_to_mesh_distance(pts, unit).max() < 1e-5  # on the surface
    # blue noise: the closest pair is much farther apart than in a uniform random set of the same size
    uni = mu.sample_uniform(unit, 500, np.random.default_rng(0))
    assert mu.point_to_mesh_distance(uni, unit).max() < 1e-5
    import torch

    from pu_ros.ops.neighbors import knn_points

    def min_gap(x):
        return float(knn_points(torch.from_numpy(x), torch.from_numpy(x), 2)[0][:, 1].sqrt().min())

    assert min_gap(pts) > 2.0 * min_gap(uni)
    # exactly n even points also when pcu returns a surplus that must be trimmed (FPS keeps the spacing even)
    many = mu.sample_poisson_disk(unit, 2000, seed=1)
    nn = knn_points(torch.from_numpy(many), torch.from_numpy(many), 2)[0][:, 1].sqrt()
    assert many.shape == (2000, 3) and float(nn.min() / nn.mean()) > 0.6 and float(nn.std() / nn.mean()) < 0.15
    write_xyz(tmp_path / 'p.xyz', pts)
    np.testing.assert_allclose(read_points(tmp_path / 'p.xyz'), pts, atol=1e-6)
    assert face_areas(unit.vertices, unit.faces).sum() == pytest.approx(unit.area())


def test_off_errors(tmp_path):
    bad = tmp_path / 'bad.off'
    bad.write_text('PLY\n1 2 3\n')
    with pytest.raises(mu.MeshFormatError, match='not an OFF'):
        read_off(bad)
    bad.write_text('OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n')
    with pytest.raises(mu.MeshFormatError, match='out of range'):
        read_off(bad)
    fused = tmp_path / 'fused.off'
    fused.write_text('OFF4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n')  # ModelNet header quirk, a quad
    assert read_off(fused).faces.shape == (2, 3)


@pytest.mark.data
def test_pugan_shipped_outputs_are_close_to_their_meshes(shared_data):
    """The metric code on real data.

    PU-GAN's x4 outputs lie near the surface (P2F of a few 1e-3), their CD to a Poisson-disk ground truth is a few
    1e-4, and the 2048-point inputs lie on the mesh.
    """
    root = shared_data / 'upsampling' / 'pugan'
    mesh = normalize_unit_sphere(read_off(root / 'mesh' / 'fandisk.off'))
    inp = read_points(root / 'input' / 'fandisk.xyz')
    out = read_points(root / 'pugan_x4_output' / 'fandisk.xyz')
    gt = mu.sample_poisson_disk(mesh, 4096, seed=0)
    m = mu.evaluate_set(out, gt, mesh)
    assert 0.05 < m['cd'] < 1.0 and 0.5 < m['p2f'] < 5.0
    assert mu.p2f(inp, mesh)[0] * mu.UNIT_SCALE < 0.01
