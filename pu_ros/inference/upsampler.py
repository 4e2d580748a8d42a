"""Point cloud upsampling with PU-Flow: numpy in, numpy out (or torch on the device).

>>> up = Upsampler(ratio=4, weights='puflow-x4-pugan.pt')   # our checkpoint or a published file
>>> dense = up.upsample(points)                             # (N, 3 or 4) float32 -> (N*4, same C) float32

Whole clouds of any size are processed by patches: farthest-point seeds (about N/``patch_size``·``patch_overlap``
of them; ``patch_overlap=0``, the default, means 8 with the fps merge (4, the reference's ``patch_expand_ratio``,
when it pools every child) and 2 with the parent merge, where overlapping predictions are blended), kNN patches of
``patch_size`` points (extra seeds until every point is covered), each normalised to the unit sphere, run through
the network ``batch_size`` patches at a time (this bounds the network's memory), de-normalised and merged to
exactly N·R points:

* ``merge='fps'`` (after the reference's test-time procedure, ``modules/discrete/upsample.py`` of unknownue/puflow):
  the ×R outputs of the patches and the input are pooled, farthest point sampling keeps N·R + ``fps_outliers``
  points (24 in the reference) and the ``fps_outliers`` points farthest from the input are dropped. The reference
  pools every child of every patch (``fps_keep=1``, 4 patches per point); we pool only the children of each patch's
  core, the ``fps_keep`` = 1/4 of its points nearest its seed, with 8 patches per point (about 2 cores hold each
  point), because predictions near a patch border lie off the surface and FPS favours exactly those isolated points
  (chosen on the meshes camel, casting, chair and cow: CD and P2F both lower than the reference's way; see the model
  card). Then ``fps_relax`` = 3 Lloyd steps (not in the reference): every chosen point moves to the mean of the
  candidates nearest to it, the children of the ``fps_relax_keep`` = 3/4 of each patch nearest its seed plus the
  input; FPS spaces the points only as well as its pool allows, the steps even out the gaps (same four meshes: CD
  and P2F lower on all four, HD higher on three). A quarter of the children repeat their parent and the candidates
  cover the surface unevenly, with gaps between input points (see the model card): the midpoints of the input's
  edges to its 4 nearest neighbours join them, but only those within ``fps_relax_midpoints`` = 1/4 of the edge
  length of a candidate (a chord across a thin part or a concave gap lies off the surface, far from every child;
  same four meshes: CD lower on all four, P2F on three). The network is not rotation-equivariant, so it also runs
  on ``fps_relax_rotations`` - 1 = 3 rotated copies of the input (fixed random rotations, seed
  :data:`ROTATION_SEED`; patch normalisation commutes with a rotation, so the patches are the same) and their
  children, rotated back, join the Lloyd candidates, not the FPS pool: a test-time ensemble that fills the gaps and
  averages the children's noise (same four meshes: CD and P2F lower on all four; each copy costs one more network
  run). FPS is a loop of N·R steps over the pool: objects only;
* ``merge='parent'`` (scales to LiDAR scans): child r of input point i (the r-th learned weight set) is predicted by
  every patch containing i; the predictions are blended with weights falling from 1 at the patch seed to ~0 at its
  border (a test-time ensemble over overlapping patches), so every input point has exactly R children; a child
  farther from its parent than ``outlier_factor`` times the parent's ``interp_k``-th neighbour distance is an
  outlier and is replaced by the midpoint towards the parent's nearest neighbour;
* ``merge='auto'`` (default): ``fps`` for passes of at most :data:`FPS_MERGE_MAX_POINTS` output points (the
  reference's case, a 2048-point object at ×4, and inputs up to 4096 points), ``parent`` above (the second ×4 pass
  of ×16, whole scans), because the FPS merge costs O(N·R · pool) on top of the network.

Two details of the reference are left out on purpose: it normalises the whole cloud before patching (every later
step is scale-invariant) and shuffles the input, which only moves the first FPS seed (ours is point 0).

Ratios: the published network was trained for ×4, but predicts 32 weight sets. ``strategy='weights'`` uses R sets
in one pass; ``'iterate'`` runs passes of the trained ratio (the last one smaller, trimmed to exactly N·R);
``'auto'`` uses weights when R <= the trained ratio and iterates above it.

An optional 4th column (intensity) is carried to every new point from its nearest input point. CUDA is used when
present (``device='auto'``), else the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
import math
from pathlib import Path

import numpy as np

from pu_ros.inference.patching import (
    child_counts,
    covering_patches,
    lloyd_relax,
    midpoint_upsample,
    near_surface_midpoints,
    normalize_patches,
    seed_weights,
)
from pu_ros.ops.device import resolve_device
from pu_ros.ops.neighbors import farthest_point_sample, knn_points

DEFAULT_MODEL = 'upsampling_puflow_lidar.pt'
#: ``merge='auto'`` merges passes of at most this many output points by FPS (the reference's way), larger by parent.
FPS_MERGE_MAX_POINTS = 16384
#: ``merge='fps'``: input edges to this many nearest neighbours give the midpoint candidates of the Lloyd steps.
MIDPOINT_NEIGHBOURS = 4
#: ``merge='fps'``: seed of the test-time rotations (``fps_relax_rotations``).
ROTATION_SEED = 0
__all__ = ['Upsampler', 'UpsamplerConfig', 'midpoint_upsample', 'DEFAULT_MODEL']


@dataclass
class UpsamplerConfig:
    """Settings of :class:`Upsampler` (ROS parameters / YAML keys ``upsampler.<field>``)."""

    ratio: int = field(default=4, metadata={'help': 'output points per input point (N*ratio out)', 'range': (2, 16)})
    weights: str = field(default='', metadata={
        'help': "PU-Flow weights (ours or a published puflow-x4-*.pt); '' = models/upsampling_puflow_lidar.pt"})
    patch_size: int = field(default=256, metadata={'help': 'points per patch', 'range': (32, 4096)})
    batch_size: int = field(default=32, metadata={'help': 'patches per forward pass (bounds memory)',
                                                  'range': (1, 4096)})
    device: str = field(default='auto', metadata={'help': 'torch device', 'choices': ('auto', 'cpu', 'cuda')})
    strategy: str = field(default='auto', metadata={
        'help': 'ratios above the trained one: learned weight sets or iterated passes',
        'choices': ('auto', 'weights', 'iterate')})
    merge: str = field(default='auto', metadata={
        'help': 'how patch outputs become N*ratio points (auto: fps up to 16384 output points, else parent)',
        'choices': ('auto', 'parent', 'fps')})
    patch_overlap: float = field(default=0.0, metadata={
        'help': 'about how many patches cover each point; 0 = auto: merge fps max(4, min(8, 2 / fps_keep)) (8 by '
                "default, 4 = the reference's patch_expand_ratio with fps_keep 1), merge parent 2",
        'range': (0.0, 8.0)})
    outlier_factor: float = field(default=2.0, metadata={
        'help': "merge='parent': child/parent distance beyond this x the neighbourhood radius is an outlier",
        'range': (0.5, 100.0)})
    fps_outliers: int = field(default=24, metadata={
        'help': "merge='fps': extra points sampled, then dropped as the farthest from the input (reference: 24)",
        'range': (0, 100000)})
    fps_keep: float = field(default=0.25, metadata={
        'help': "merge='fps': share of each patch's points, nearest its seed, whose children enter the pool "
                '(1 = every child, the reference)', 'range': (0.01, 1.0)})
    fps_relax: int = field(default=3, metadata={
        'help': "merge='fps': Lloyd steps after the FPS (0 = none, the reference): each output point moves to the "
                'mean of the candidate points nearest to it', 'range': (0, 50)})
    fps_relax_keep: float = field(default=0.75, metadata={
        'help': "merge='fps': share of each patch's points, nearest its seed, whose children are the candidates "
                'of the Lloyd steps (with the input)', 'range': (0.01, 1.0)})
    fps_relax_midpoints: float = field(default=0.25, metadata={
        'help': "merge='fps': midpoints of the input's edges to its 4 nearest neighbours join the Lloyd candidates "
                'when they lie within this share of the edge length of a candidate (0 = none)', 'range': (0.0, 1.0)})
    fps_relax_rotations: int = field(default=4, metadata={
        'help': "merge='fps': the network also runs on this many - 1 rotated copies of the input; their children, "
                'rotated back, join the Lloyd candidates (1 = none; each costs one more network run)',
        'range': (1, 32)})

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            lo_hi, choices = f.metadata.get('range'), f.metadata.get('choices')
            if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
                raise ValueError(f'upsampler.{f.name}={value} outside {lo_hi}')
            if choices and value not in choices:
                raise ValueError(f'upsampler.{f.name}={value!r} not one of {choices}')


def default_weights_path() -> Path:
    """models/upsampling_puflow_lidar.pt (FileNotFoundError with a clear message when missing)."""
    from pu_ros.resources import share_dirs

    for base in share_dirs():
        if (base / 'models' / DEFAULT_MODEL).is_file():
            return base / 'models' / DEFAULT_MODEL
    raise FileNotFoundError(
        f'default upsampling weights models/{DEFAULT_MODEL} not found (train them with `pu-ros train upsampling`, '
        'or pass weights=PATH, e.g. a published puflow-x4-*.pt)')


class Upsampler:
    """PU-Flow upsampling of whole point clouds (see the module docstring)."""

    def __init__(self, config: UpsamplerConfig | None = None, **overrides):
        from pu_ros.networks.upsampling.weights import load_puflow

        self.config = cfg = replace(config or UpsamplerConfig(), **overrides)
        self.device = resolve_device(cfg.device)
        path = Path(cfg.weights) if cfg.weights else default_weights_path()
        self.model, self.meta = load_puflow(path, map_location=self.device)
        self.weights_path = path
        self.trained_ratio = int(self.meta.get('trained_ratio', self.model.config.trained_ratio))
        self.rotations = self._rotations(int(cfg.fps_relax_rotations) - 1)   # (K-1, 3, 3), drawn once

    # --- ratio plan ---------------------------------------------------------------------------------------
    def passes(self, ratio: int) -> list[int]:
        """Per-pass ratios whose product reaches ``ratio`` (the last pass is trimmed to exactly N·ratio)."""
        strategy = self.config.strategy
        if strategy == 'auto':
            strategy = 'weights' if ratio <= self.trained_ratio else 'iterate'
        if strategy == 'weights' or ratio <= self.trained_ratio:
            return [ratio]
        plan, reached = [], 1
        while reached * self.trained_ratio < ratio:
            plan.append(self.trained_ratio)
            reached *= self.trained_ratio
        plan.append(math.ceil(ratio / reached))
        return plan

    # --- public API ---------------------------------------------------------------------------------------
    def upsample(self, points: np.ndarray) -> np.ndarray:
        """Points (N, 3) or (N, C>3, extra columns carried by nearest neighbour) -> (N*ratio, C) float32."""
        import torch

        arr = np.asarray(points, dtype=np.float32)
        out = self.upsample_tensor(torch.from_numpy(np.ascontiguousarray(arr)).to(self.device))
        return out.cpu().numpy()

    def upsample_tensor(self, points):
        """Points (N, C >= 3) tensor -> (N*ratio, C) float32 tensor on the upsampler's device."""
        import torch

        if points.dim() != 2 or points.shape[1] < 3:
            raise ValueError(f'points must be (N, 3) or (N, C>3), got {tuple(points.shape)}')
        pts = points.to(self.device, torch.float32)
        if not bool(torch.isfinite(pts[:, :3]).all()):
            raise ValueError('points contain NaN or inf coordinates')
        ratio = int(self.config.ratio)
        n = pts.shape[0]
        if n == 0:
            return pts.new_zeros((0, pts.shape[1]))
        if n < self.model.config.k:
            raise ValueError(f'need at least {self.model.config.k} points to upsample, got {n}')
        with torch.inference_mode():
            xyz = pts[:, :3].contiguous()
            for r in self.passes(ratio):
                target = min(xyz.shape[0] * r, n * ratio)
                xyz = self._pass(xyz, r, target)
            if pts.shape[1] == 3:
                return xyz
            nearest = knn_points(xyz[None], pts[None, :, :3], 1)[1][0, :, 0]
            return torch.cat([xyz, pts[nearest, 3:]], dim=1)

    # --- one pass -----------------------------------------------------------------------------------------
    def _run_patches(self, xyz, idx, ratio: int, keep=None):
        """Network output of every patch, de-normalised.

        Args:
            xyz: (N, 3) points.
            idx: (S, P) patch indices.
            ratio: R.
            keep: optional callback ``keep(s0, dense (b, P*R, 3))`` consuming each batch (memory stays bounded);
                without it the outputs are returned.

        Returns:
            (S, P*R, 3) when ``keep`` is None.
        """
        outs = []
        bs = max(1, int(self.config.batch_size))
        for s0 in range(0, idx.shape[0], bs):
            patch = xyz[idx[s0:s0 + bs]]                                      # (b, P, 3)
            norm, centroid, radius = normalize_patches(patch)
            dense = self.model.upsample(norm, ratio) * radius + centroid     # (b, P*R, 3)
            if keep is None:
                outs.append(dense)
            else:
                keep(s0, dense)
        return None if keep is not None else torch_cat(outs)

    def _rotations(self, count: int):
        """(count, 3, 3) fixed random rotations on the device (seeded: the same output on every run); [] for 0.

        Called once, at construction (``self.rotations``).
        """
        import numpy as np

        from pu_ros.ops.rotations import random_rotations

        if count < 1:
            return []
        return random_rotations(count, np.random.default_rng(ROTATION_SEED)).to(self.device)

    def _pass(self, xyz, ratio: int, target: int):
        """One network pass: (N, 3) -> (target, 3) with N < target <= N*ratio."""
        import torch

        n = xyz.shape[0]
        p = min(int(self.config.patch_size), n)
        merge = self.config.merge
        if merge == 'auto':
            merge = 'fps' if target <= FPS_MERGE_MAX_POINTS else 'parent'
        keep_share = float(self.config.fps_keep)
        auto_overlap = max(4.0, min(8.0, 2.0 / keep_share)) if merge == 'fps' else 2.0
        overlap = float(self.config.patch_overlap) or auto_overlap
        idx, dist2 = covering_patches(xyz, p, max(overlap, 1.0))
        if merge == 'fps':
            # the patch's points nearest its seed (idx: ascending distance); more when the pool would be too small;
            # clone() so that only the kept slice of each batch's output stays in memory
            need = math.ceil((target + int(self.config.fps_outliers) - n) / (idx.shape[0] * ratio))
            core = min(p, max(1, round(p * keep_share), need))
            steps = int(self.config.fps_relax)
            wide = max(core, min(p, round(p * float(self.config.fps_relax_keep)))) if steps else core
            kept = []
            self._run_patches(xyz, idx, ratio,
                              lambda s0, dense: kept.append(dense.reshape(-1, p, ratio, 3)[:, :wide].clone()))
            children = torch_cat(kept)                                        # (S, wide, R, 3)

            def finite(c):
                return c[torch.isfinite(c).all(1)]

            pool = finite(torch.cat([children[:, :core].reshape(-1, 3), xyz]))  # core children, then the input
            n_out = max(0, min(int(self.config.fps_outliers), pool.shape[0] - target))
            chosen = pool[farthest_point_sample(pool, target + n_out)]
            if n_out:
                d = knn_points(chosen[None], xyz[None], 1)[0][0, :, 0]
                chosen = chosen[torch.argsort(d)[:target]]
            if not steps:
                return chosen
            for rot in self.rotations:
                # the same patches, seen by the network in another orientation (patch normalisation commutes with
                # it), rotated back in one product over all patches: per-batch products took other CPU kernels for
                # other batch sizes, and the Lloyd steps amplified their last-bit differences
                turned = []                                                   # (b, wide, R, 3) per batch
                self._run_patches(xyz @ rot.T, idx, ratio, lambda s0, dense, t=turned: t.append(
                    dense.reshape(-1, p, ratio, 3)[:, :wide].clone()))
                kept.append(torch_cat(turned) @ rot)
            samples = finite(torch_cat([c.reshape(-1, 3) for c in kept] + [xyz]))
            tol = float(self.config.fps_relax_midpoints)
            if tol > 0:
                samples = torch.cat([samples, near_surface_midpoints(xyz, samples, MIDPOINT_NEIGHBOURS, tol)])
            return lloyd_relax(chosen, samples, steps)
        weight = seed_weights(dist2)                                          # (S, P)
        sums = xyz.new_zeros((n, ratio, 3))
        total = xyz.new_zeros(n)

        def keep(s0, dense):
            b = dense.shape[0]
            w = weight[s0:s0 + b].reshape(-1)
            rows = idx[s0:s0 + b].reshape(-1)
            sums.index_add_(0, rows, dense.reshape(b * p, ratio, 3) * w[:, None, None])
            total.index_add_(0, rows, w)

        self._run_patches(xyz, idx, ratio, keep)
        children = sums / total[:, None, None]
        k = min(self.model.config.interp_k, n - 1)
        nd2, nidx = knn_points(xyz[None], xyz[None], k + 1)
        radius = nd2[0, :, -1].sqrt()                                         # (N,) distance to k-th neighbour
        off = (children - xyz[:, None]).norm(dim=-1)                          # (N, R)
        bad = ~(off <= self.config.outlier_factor * radius[:, None])          # NaN/inf children count as bad
        if bool(bad.any()):
            mid = 0.5 * (xyz + xyz[nidx[0, :, 1]])                            # towards the nearest neighbour
            children = torch.where(bad[..., None], mid[:, None].expand_as(children), children)
        counts = child_counts(n, target, ratio, xyz.device)
        mask = torch.arange(ratio, device=xyz.device)[None] < counts[:, None]
        return children[mask]


def torch_cat(tensors):
    """torch.cat imported lazily (this module stays importable without torch)."""
    import torch

    return torch.cat(tensors)
