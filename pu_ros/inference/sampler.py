"""Point-cloud downsampling for the pipeline: SampleNet, FPS, random or voxel-grid, numpy in, numpy out.

>>> sampler = Sampler(method='fps', ratio=0.25)
>>> res = sampler.sample(points)          # points (N, 4) float32 x, y, z, intensity
>>> res.indices, res.points               # (M,) int64 indices into points, (M, 4) the chosen rows

All methods return indices of input points, so every per-point attribute (intensity, labels, ring) travels with
them. ``sample_indices`` is the same on a torch tensor that stays on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = 'sampling_samplenet_lidar.pt'
METHODS = ('samplenet', 'fps', 'random', 'voxel')


@dataclass
class SamplerConfig:
    """Settings of :class:`Sampler` (ROS parameters ``sampler.<field>``)."""

    method: str = field(default='samplenet', metadata={'help': 'sampling method', 'choices': METHODS})
    ratio: float = field(default=0.25, metadata={
        'help': 'fraction of input points kept (used when num_points == 0)', 'range': (0.001, 1.0)})
    num_points: int = field(default=0, metadata={'help': 'points kept (M); 0 = use ratio', 'range': (0, 1_000_000)})
    checkpoint: str = field(default='', metadata={
        'help': "SampleNet weights; '' = models/sampling_samplenet_lidar.pt"})
    device: str = field(default='auto', metadata={'help': 'torch device', 'choices': ('auto', 'cpu', 'cuda')})
    seed: int = field(default=0, metadata={'help': "seed of the 'random' method", 'range': (0, 2**31 - 1)})

    def __post_init__(self):
        """Validate (ValueError with the field name)."""
        if self.method not in METHODS:
            raise ValueError(f'sampler.method must be one of {METHODS}, got {self.method!r}')
        if not 0.001 <= float(self.ratio) <= 1.0:
            raise ValueError(f'sampler.ratio must be in [0.001, 1], got {self.ratio}')
        if not 0 <= int(self.num_points) <= 1_000_000:
            raise ValueError(f'sampler.num_points must be in [0, 1000000], got {self.num_points}')
        if self.device not in ('auto', 'cpu', 'cuda') and not str(self.device).startswith('cuda:'):
            raise ValueError(f"sampler.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")


@dataclass
class SampleResult:
    """Output of :meth:`Sampler.sample`.

    Attributes:
        indices: (M,) int64 indices into the input points.
        points: (M, C) the chosen input rows.
    """

    indices: np.ndarray
    points: np.ndarray


def target_count(n: int, ratio: float, num_points: int) -> int:
    """M for a cloud of ``n`` points: ``num_points`` if > 0 else ``round(ratio * n)``, clipped to ``1..n``."""
    m = int(num_points) if int(num_points) > 0 else int(round(float(ratio) * n))
    return max(1, min(n, m))


def random_indices(n: int, m: int, seed: int, device) -> torch.Tensor:
    """(m,) int64 distinct random indices in ``0..n-1`` (reproducible for a seed)."""
    import torch

    gen = torch.Generator(device='cpu').manual_seed(int(seed))
    return torch.randperm(n, generator=gen)[:m].to(device)


def voxel_indices(xyz, m: int, *, iters: int = 20):
    """Voxel-grid sampling to exactly ``m`` points: one point per voxel (the one nearest its voxel's centroid).

    The voxel size is found by bisection so that the grid has at least ``m`` occupied voxels and as few as possible;
    the surplus (if any) is dropped evenly along a random permutation (seed 0).

    Args:
        xyz: (N, 3) float tensor.
        m: points to keep, ``1 <= m <= N``.
        iters: bisection steps at most.

    Returns:
        (m,) int64 indices into ``xyz``, on its device.
    """
    import torch

    from pu_ros.ops.scatter import scatter_mean

    n = xyz.shape[0]
    if m >= n:
        return torch.arange(n, device=xyz.device)
    lo_pt = xyz.min(dim=0).values

    def cells(size):
        q = ((xyz - lo_pt) / size).floor().to(torch.int64)
        return torch.unique(q, dim=0, return_inverse=True)[1]

    extent = float((xyz.max(dim=0).values - lo_pt).max().clamp(min=1e-6))
    lo, hi = extent / max(n, 1) ** (1 / 3) * 1e-3, extent * 2.0  # hi: 1 voxel; lo: ~every point alone
    best = None
    for _ in range(iters):
        mid = (lo * hi) ** 0.5
        inv = cells(mid)
        count = int(inv.max()) + 1
        if count >= m:
            best, lo = inv, mid
            if count <= m * 1.02:
                break
        else:
            hi = mid
    if best is None:
        best = torch.arange(n, device=xyz.device)
    g = int(best.max()) + 1
    centroid = scatter_mean(xyz, best, g)
    d = ((xyz - centroid[best]) ** 2).sum(1)
    dmin = torch.full((g,), float('inf'), device=xyz.device, dtype=d.dtype).scatter_reduce(0, best, d, 'amin')
    cand = torch.nonzero(d <= dmin[best], as_tuple=True)[0]
    # one representative per voxel among ties: the lowest index
    rep = torch.full((g,), n, device=xyz.device, dtype=torch.int64).scatter_reduce(0, best[cand], cand, 'amin')
    if g > m:
        gen = torch.Generator(device='cpu').manual_seed(0)
        rep = rep[torch.randperm(g, generator=gen)[:m].to(xyz.device)]
    return rep


class Sampler:
    """Downsample point clouds with SampleNet (ours), FPS, random or voxel-grid sampling.

    Args:
        config: :class:`SamplerConfig` (defaults if None).
        **overrides: field values replacing the config's (``Sampler(method='fps', ratio=0.1)``).

    Raises:
        FileNotFoundError: method 'samplenet' and the checkpoint (or the packaged model) is missing.
        ValueError: a bad setting, an unreadable checkpoint, CUDA asked for but absent.
    """

    def __init__(self, config: SamplerConfig | None = None, **overrides):
        """Resolve the device and, for SampleNet, load the weights."""
        import torch

        from pu_ros.ops.device import resolve_device

        config = config or SamplerConfig()
        known = {f.name for f in fields(SamplerConfig)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f'unknown Sampler setting(s) {bad}; known: {sorted(known)}')
        self.config = replace(config, **overrides)
        self.device = torch.device(resolve_device(self.config.device))
        self.model = None
        if self.config.method == 'samplenet':
            self.model, self.meta = load_samplenet(self.config.checkpoint, self.device)

    def count(self, n: int) -> int:
        """Points kept out of ``n``."""
        return target_count(n, self.config.ratio, self.config.num_points)

    def sample_indices(self, points) -> torch.Tensor:
        """Indices of the kept points, on the device.

        Args:
            points: (N, >=3) float tensor (moved to the sampler's device if elsewhere).

        Returns:
            (M,) int64 tensor of distinct indices into ``points``, on the sampler's device.
        """
        import torch

        from pu_ros.ops.neighbors import farthest_point_sample

        if points.dim() != 2 or points.shape[1] < 3:
            raise ValueError(f'points must be (N, >=3), got {tuple(points.shape)}')
        n = points.shape[0]
        if n == 0:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        xyz = points[:, :3].to(self.device, torch.float32)
        m = self.count(n)
        method = self.config.method
        if method == 'random':
            return random_indices(n, m, self.config.seed, self.device)
        if method == 'voxel':
            return voxel_indices(xyz, m)
        if method == 'fps':
            return farthest_point_sample(xyz, m)
        return self.model.sample_indices(xyz, m)

    def sample(self, points: np.ndarray) -> SampleResult:
        """Downsample one cloud.

        Args:
            points: (N, 3 or more) float array (x, y, z first; other columns travel along). Rows with non-finite
                coordinates are never chosen.

        Returns:
            :class:`SampleResult` with (M,) int64 indices and the (M, C) chosen rows.
        """
        import torch

        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] < 3 or pts.dtype.kind not in 'fiu':
            raise ValueError(f'points must be an (N, >=3) numeric array, got shape {pts.shape} dtype {pts.dtype}')
        finite = np.isfinite(pts[:, :3]).all(axis=1)
        keep = np.flatnonzero(finite) if not finite.all() else None
        sub = pts[keep] if keep is not None else pts
        if sub.shape[0] == 0:
            return SampleResult(np.zeros(0, np.int64), pts[:0].copy())
        xyz = torch.from_numpy(np.ascontiguousarray(sub[:, :3], dtype=np.float32))
        idx = self.sample_indices(xyz).cpu().numpy().astype(np.int64)
        if keep is not None:
            idx = keep[idx]
        return SampleResult(idx, pts[idx])

    def __repr__(self) -> str:
        """Short description."""
        c = self.config
        return f'Sampler(method={c.method}, ratio={c.ratio}, num_points={c.num_points}, device={self.device})'


def load_samplenet(checkpoint: str | Path, device):
    """Build the SampleNet a checkpoint describes (patch-based LiDAR model or a single-cloud one).

    Args:
        checkpoint: path; '' = the packaged ``models/sampling_samplenet_lidar.pt``.
        device: torch device.

    Returns:
        ``(model, meta)``: a module with ``sample_indices((N, 3), m) -> (m,)`` in eval mode, and the checkpoint meta.

    Raises:
        FileNotFoundError: missing file. CheckpointError (ValueError): unusable file.
    """
    from pu_ros.networks.checkpoint import CheckpointError, load_checkpoint, state_dict_to_float32
    from pu_ros.networks.sampling.patches import PatchSampleNet, WholeCloudSampleNet
    from pu_ros.networks.sampling.samplenet import SampleNetConfig

    if not checkpoint:
        from pu_ros.resources import model_path

        try:
            checkpoint = model_path(DEFAULT_MODEL)
        except FileNotFoundError:
            raise FileNotFoundError(f'SampleNet weights models/{DEFAULT_MODEL} are missing: train them with '
                                    '`pu-ros train sampling` or set sampler.checkpoint') from None
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f'SampleNet checkpoint {checkpoint} does not exist')
    ckpt = load_checkpoint(checkpoint)
    model_cfg = dict(ckpt['config'].get('model') or {})
    try:
        kind = model_cfg.pop('kind', 'patch')
        patch_size = int(model_cfg.pop('patch_size', 256))
        head = SampleNetConfig.from_dict(model_cfg)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f'checkpoint {checkpoint}: bad SampleNet config ({exc})') from None
    model = PatchSampleNet(head, patch_size) if kind == 'patch' else WholeCloudSampleNet(head)
    try:
        model.load_state_dict(state_dict_to_float32(ckpt['state_dict']))
    except RuntimeError as exc:
        raise CheckpointError(f'checkpoint {checkpoint} does not fit SampleNet: {str(exc)[:200]}') from None
    return model.to(device).eval(), ckpt['meta']
