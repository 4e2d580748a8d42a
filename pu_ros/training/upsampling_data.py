"""Training patches for PU-Flow: (sparse input patch, dense ground-truth patch) pairs from meshes or LiDAR scans.

Object mode (the PU-GAN recipe): every mesh is normalised to the unit sphere and sampled twice by Poisson disk, a
dense ground-truth set of ``gt_points`` and an independent sparse set of ``gt_points / R``. A patch is the
``patch_size`` sparse points nearest a random seed and the ``patch_size · R`` dense points nearest the same seed.

LiDAR mode: every HDL-64 scan gives its full points as ground truth and its beam-decimated copy (every R-th ring,
:mod:`pu_ros.data.beams`) as input; a patch is the ``patch_size`` sparse points nearest a seed and the
``patch_size · R`` full-scan points nearest it.

Both normalise a pair by the input patch: centroid to the origin, farthest input point at distance 1. Training
augmentation: a random rotation (about z only for LiDAR), a scale and Gaussian jitter on the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class PatchPool:
    """Point sets to cut patches from.

    Attributes:
        sparse: list of (n_i, 3) float32 input sets.
        dense: list of dicts {ratio: (m_i, 3) float32 ground truth}; object pools have one ratio, LiDAR pools
            ``sparse_by_ratio`` instead.
        names: where each set came from.
    """

    def __init__(self, items: list[dict], names: list[str], kind: str):
        self.items = items  # each: {'gt': (M, 3), 'inputs': {ratio: (N, 3)}}
        self.names = names
        self.kind = kind

    def __len__(self) -> int:
        return len(self.items)

    def save(self, path: str | Path) -> None:
        """Cache the pool as an ``.npz`` (arrays only)."""
        arrays = {}
        for i, it in enumerate(self.items):
            arrays[f'{i}_gt'] = it['gt']
            for r, pts in it['inputs'].items():
                arrays[f'{i}_in_{r}'] = pts
        np.savez(path, names=np.array(self.names), kind=np.array(self.kind), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> PatchPool:
        """Read a pool written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            names = [str(n) for n in z['names']]
            items = []
            for i in range(len(names)):
                inputs = {int(k.rsplit('_', 1)[1]): z[k] for k in z.files if k.startswith(f'{i}_in_')}
                items.append({'gt': z[f'{i}_gt'], 'inputs': inputs})
            return cls(items, names, str(z['kind']))


def mesh_pool(meshes: list, ratios: list[int], gt_points: int, seed: int, progress: bool = False) -> PatchPool:
    """Object pool: Poisson-disk ground truth and independent Poisson-disk inputs (one per ratio) of each mesh.

    Args:
        meshes: :class:`pu_ros.data.meshes.Mesh` objects (normalised here).
        ratios: upsampling ratios to train (input = ``gt_points // R`` points).
        gt_points: ground-truth points per mesh.
        seed: sampling seed.
        progress: tqdm bar.
    """
    from tqdm import tqdm

    from pu_ros.data.meshes import normalize_unit_sphere, sample_poisson_disk

    items, names = [], []
    for i, mesh in enumerate(tqdm(meshes, desc='sampling meshes', disable=not progress)):
        mesh = normalize_unit_sphere(mesh)
        gt = sample_poisson_disk(mesh, gt_points, seed=seed * 1000 + i)
        inputs = {int(r): sample_poisson_disk(mesh, gt_points // int(r), seed=seed * 1000 + i + 500 + int(r))
                  for r in ratios}
        items.append({'gt': gt, 'inputs': inputs})
        names.append(mesh.name)
    return PatchPool(items, names, 'mesh')


def lidar_pool(scans: list[tuple[str, np.ndarray]], ratios: list[int], max_range: float = 50.0) -> PatchPool:
    """LiDAR pool: full scans (ground truth) and their beam-decimated copies (every R-th ring, one per ratio).

    Args:
        scans: ``(name, (N, >=3) points in sensor order)`` pairs (64-beam scans).
        ratios: ring steps (2: 32 beams, 4: 16 beams).
        max_range: points farther than this (m) are dropped after decimation (patches there are too sparse).
    """
    from pu_ros.data.beams import decimate_mask, ring_index

    items, names = [], []
    for name, pts in scans:
        ring = ring_index(pts)
        near = np.linalg.norm(pts[:, :3], axis=1) < max_range
        inputs = {int(r): np.ascontiguousarray(pts[decimate_mask(ring, int(r)) & near, :3], dtype=np.float32)
                  for r in ratios}
        items.append({'gt': np.ascontiguousarray(pts[near, :3], dtype=np.float32), 'inputs': inputs})
        names.append(name)
    return PatchPool(items, names, 'lidar')


def normalize_pair(inp, gt):
    """Centre and scale a patch pair by the input patch.

    Args:
        inp: (B, N, 3) tensor.
        gt: (B, M, 3) tensor.

    Returns:
        ``(inp_n, gt_n, centre (B, 1, 3), radius (B, 1, 1))``.
    """
    centre = inp.mean(dim=1, keepdim=True)
    radius = (inp - centre).norm(dim=-1).amax(dim=1, keepdim=True)[..., None].clamp_min(1e-9)
    return (inp - centre) / radius, (gt - centre) / radius, centre, radius


def sample_batch(pool: PatchPool, batch: int, ratio: int, patch_size: int, rng: np.random.Generator,
                 augment: dict | None = None):
    """A training batch of normalised patch pairs for one ratio.

    Args:
        pool: :class:`PatchPool`.
        batch: B.
        ratio: R (a key of every item's ``inputs``).
        patch_size: N input points per patch (ground truth: N·R).
        rng: numpy generator (the only source of randomness).
        augment: ``{'rotate': bool, 'scale': [lo, hi], 'jitter': sigma}`` (jitter in normalised units).

    Returns:
        ``(inp (B, N, 3), gt (B, N·R, 3))`` float32 tensors on the CPU.
    """
    import torch

    from pu_ros.ops.neighbors import knn_points
    from pu_ros.ops.rotations import random_rotations

    augment = augment or {}
    ins, gts = [], []
    for _ in range(batch):  # per patch, not per point
        it = pool.items[int(rng.integers(len(pool)))]
        sparse = torch.from_numpy(it['inputs'][ratio])
        dense = torch.from_numpy(it['gt'])
        seed = sparse[int(rng.integers(len(sparse)))][None]
        n_in = min(patch_size, len(sparse))
        n_gt = min(patch_size * ratio, len(dense))
        if n_in < patch_size or n_gt < patch_size * ratio:
            raise ValueError(f'{pool.kind} set too small for patches of {patch_size} (x{ratio})')
        ins.append(sparse[knn_points(seed, sparse, n_in)[1][0]])
        gts.append(dense[knn_points(seed, dense, n_gt)[1][0]])
    inp, gt = torch.stack(ins), torch.stack(gts)
    inp, gt, _, _ = normalize_pair(inp, gt)
    if augment.get('rotate'):
        rot = random_rotations(batch, rng, z_only=pool.kind == 'lidar')
        inp, gt = inp @ rot.transpose(1, 2), gt @ rot.transpose(1, 2)
    lo, hi = augment.get('scale') or (1.0, 1.0)
    s = torch.from_numpy(rng.uniform(lo, hi, (batch, 1, 1)).astype(np.float32))
    inp, gt = inp * s, gt * s
    sigma = float(augment.get('jitter') or 0.0)
    if sigma > 0:
        inp = inp + torch.from_numpy(rng.normal(0.0, sigma, inp.shape).astype(np.float32))
    return inp.contiguous(), gt.contiguous()
