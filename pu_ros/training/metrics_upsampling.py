"""Point-cloud upsampling metrics: Chamfer distance (CD), Hausdorff distance (HD), point-to-surface distance (P2F).

Definitions (the conventions of PU-GAN's evaluation script, which PU-Flow and later papers report), for a predicted
set P and a ground-truth set Q, both normalised to the unit sphere of the mesh:

- ``d(p, Q) = min_q |p - q|`` with the package's one kNN (:func:`pu_ros.ops.neighbors.knn_points`, exact);
- **CD** = mean_p d(p, Q)² + mean_q d(q, P)²  (squared distances, the two directional means *summed*);
- **HD** = max(max_p d(p, Q)², max_q d(q, P)²)  (squared, like the CD; ``squared=False`` gives the Euclidean one);
- **P2F** = mean_p dist(p, mesh surface), the exact Euclidean distance to the closest point of any triangle
  (point-cloud-utils ``closest_points_on_mesh``, libigl's AABB tree; checked against a slow point-to-triangle twin in
  ``test/test_metrics_upsampling.py``); :func:`p2f` also returns its standard deviation.

Tables print all three **×10⁻³** (:data:`UNIT_SCALE`). Readers, unit-sphere normalisation and Poisson-disk sampling
live in :mod:`pu_ros.data.meshes` and are re-exported here for the evaluation code and the parity test.
"""

from __future__ import annotations

import numpy as np

from pu_ros.data.meshes import (  # noqa: F401  (re-exported)
    Mesh,
    MeshFormatError,
    list_meshes,
    normalize_unit_sphere,
    point_to_mesh_distance,
    read_off,
    read_points,
    sample_poisson_disk,
    sample_uniform,
    unit_sphere_transform,
    write_xyz,
)

#: Tables print CD, HD and P2F multiplied by this (values "×10⁻³").
UNIT_SCALE = 1.0e3


def _as_tensor(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.float()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x)[..., :3], dtype=np.float32))


def nearest_sq_dists(pred, gt):
    """Squared distance of every point to its nearest point in the other set, both ways.

    Args:
        pred: (B, N, 3) or (N, 3) tensor or array.
        gt: (B, M, 3) or (M, 3), same batch size.

    Returns:
        ``(d_pred, d_gt)``: (B, N) and (B, M) float32 tensors (no batch dimension if the inputs had none):
        ``d_pred[i] = min_j |pred_i - gt_j|²`` and ``d_gt[j] = min_i |gt_j - pred_i|²``.
    """
    from pu_ros.ops.neighbors import knn_points

    p, g = _as_tensor(pred), _as_tensor(gt).to(_as_tensor(pred).device)
    d_pred = knn_points(p, g, 1)[0][..., 0]
    d_gt = knn_points(g, p, 1)[0][..., 0]
    return d_pred, d_gt


def chamfer_distance(pred, gt, squared: bool = True):
    """Chamfer distance: mean_p d(p, gt)² + mean_q d(q, pred)² (``squared=False``: Euclidean distances).

    Args:
        pred: (B, N, 3) or (N, 3) tensor or array.
        gt: (B, M, 3) or (M, 3).
        squared: squared nearest-neighbour distances (PU-GAN's convention) or Euclidean ones.

    Returns:
        (B,) float32 tensor, or a 0-d tensor without a batch dimension. Differentiable w.r.t. ``pred`` (usable as a
        training loss).
    """
    d_pred, d_gt = nearest_sq_dists(pred, gt)
    if not squared:
        d_pred, d_gt = d_pred.clamp_min(0).sqrt(), d_gt.clamp_min(0).sqrt()
    return d_pred.mean(-1) + d_gt.mean(-1)


def hausdorff_distance(pred, gt, squared: bool = True):
    """Symmetric Hausdorff distance max(max_p d(p, gt), max_q d(q, pred)), squared by default (PU-GAN's convention).

    Args:
        pred: (B, N, 3) or (N, 3) tensor or array.
        gt: (B, M, 3) or (M, 3).
        squared: squared distances (PU-GAN's convention) or Euclidean ones.

    Returns:
        (B,) float32 tensor, or a 0-d tensor without a batch dimension.
    """
    d_pred, d_gt = nearest_sq_dists(pred, gt)
    h = torch_max(d_pred.amax(-1), d_gt.amax(-1))
    return h if squared else h.clamp_min(0).sqrt()


def torch_max(a, b):
    """Element-wise maximum of two tensors."""
    import torch

    return torch.maximum(a, b)


def p2f(points, mesh: Mesh) -> tuple[float, float]:
    """Point-to-surface distance of a point set to a mesh: ``(mean, std)`` in the mesh's units (Euclidean).

    Args:
        points: (N, 3) array or tensor (moved to the host).
        mesh: the reference triangle mesh (same normalisation as ``points``).
    """
    pts = points.detach().cpu().numpy() if hasattr(points, 'detach') else np.asarray(points)
    d = point_to_mesh_distance(pts[:, :3], mesh)
    return float(d.mean()), float(d.std())


def evaluate_set(pred, gt, mesh: Mesh | None = None) -> dict:
    """All metrics of one predicted set, scaled by :data:`UNIT_SCALE` (×10⁻³).

    Args:
        pred: (N, 3) predicted points.
        gt: (M, 3) ground truth.
        mesh: reference mesh for P2F (optional).

    Returns:
        ``{'cd': ..., 'hd': ..., 'p2f': ..., 'p2f_std': ...}`` (P2F keys only with a mesh), floats ×10⁻³.
    """
    out = {'cd': float(chamfer_distance(pred, gt)) * UNIT_SCALE,
           'hd': float(hausdorff_distance(pred, gt)) * UNIT_SCALE}
    if mesh is not None:
        mean, std = p2f(pred, mesh)
        out['p2f'], out['p2f_std'] = mean * UNIT_SCALE, std * UNIT_SCALE
    return out
