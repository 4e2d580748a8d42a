"""SampleNet at LiDAR scale: one small shared head over fixed-size spatial patches of the scan.

The published head emits 3·M coordinates from one global feature, so its size grows with M (771·M parameters) and
it sees one fixed input size. A 120k-point scan sampled to thousands of points is instead cut into G compact
patches of ``patch_size`` points (consecutive runs of the scan sorted along a 3D Morton / z-order curve), every
patch is normalised to the unit ball and sampled by the same SampleNet head (a batch of G clouds), and the per-patch
samples are concatenated. The head is progressive (its output prefixes are samples), so one network serves any
ratio up to ``num_out_points / patch_size``; larger requests are completed by FPS inside each patch.

Shapes: N scan points, G patches, n = patch_size, m_g points requested from patch g.
"""

from __future__ import annotations

import torch
from torch import nn

from pu_ros.networks.sampling.projection import match_and_complete
from pu_ros.networks.sampling.samplenet import SampleNet, SampleNetConfig


def _spread_bits(v: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits between the low 21 bits of ``v`` (int64), for 3D Morton codes."""
    v = v & 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def morton_order(xyz: torch.Tensor, bits: int = 10) -> torch.Tensor:
    """(N, 3) points -> (N,) int64 permutation sorting them along a 3D z-order curve over their bounding box."""
    lo = xyz.min(dim=0).values
    span = (xyz.max(dim=0).values - lo).clamp(min=1e-6)
    q = ((xyz - lo) / span * ((1 << bits) - 1)).round().to(torch.int64)
    code = _spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << 1) | (_spread_bits(q[:, 2]) << 2)
    return code.argsort()


def make_patches(xyz: torch.Tensor, patch_size: int):
    """Cut a cloud into G = ceil(N / n) z-order patches of n points (sizes balanced, short ones padded).

    Args:
        xyz: (N, 3) points.
        patch_size: n.

    Returns:
        ``(index, sizes)``: (G, n) int64 indices into ``xyz`` (a patch with fewer than n points repeats its own
        points cyclically) and (G,) int64 number of distinct points of each patch.
    """
    n_pts = xyz.shape[0]
    if n_pts < 1:
        raise ValueError('make_patches: empty cloud')
    n = int(patch_size)
    g = -(-n_pts // n)
    order = morton_order(xyz)
    dev = xyz.device
    sizes = torch.full((g,), n_pts // g, dtype=torch.int64, device=dev)
    sizes[: n_pts - int(sizes.sum())] += 1
    starts = torch.cumsum(sizes, 0) - sizes
    j = torch.arange(n, device=dev)
    pos = starts[:, None] + j[None, :] % sizes[:, None]
    return order[pos], sizes


def allocate(total: int, sizes: torch.Tensor) -> torch.Tensor:
    """Split ``total`` points over patches proportionally to ``sizes`` (largest remainders), summing exactly.

    Args:
        total: M, ``0 <= M <= sizes.sum()``.
        sizes: (G,) int64.

    Returns:
        (G,) int64 counts, each ``<= sizes[g]``.
    """
    n_pts = int(sizes.sum())
    share = sizes.to(torch.float64) * (float(total) / n_pts)
    base = share.floor().to(torch.int64)
    rest = int(total - int(base.sum()))
    if rest > 0:
        base[(share - base).topk(rest).indices] += 1
    return torch.minimum(base, sizes)


def normalise_patches(xyz: torch.Tensor, index: torch.Tensor):
    """Gather patches and map each to the unit ball.

    Args:
        xyz: (N, 3) points.
        index: (G, n) patch indices from :func:`make_patches`.

    Returns:
        ``(local, centre, scale)``: (G, n, 3) normalised patches, (G, 1, 3) centres and (G, 1, 1) radii.
    """
    pts = xyz[index]
    centre = pts.mean(dim=1, keepdim=True)
    scale = (pts - centre).norm(dim=2, keepdim=True).amax(dim=1, keepdim=True).clamp(min=1e-6)
    return (pts - centre) / scale, centre, scale


class PatchSampleNet(nn.Module):
    """SampleNet over z-order patches: one shared, progressive head.

    Args:
        cfg: the head's :class:`SampleNetConfig` (``num_out_points`` per patch).
        patch_size: n points per patch.
    """

    def __init__(self, cfg: SampleNetConfig | None = None, patch_size: int = 256):
        """Build the shared head."""
        super().__init__()
        self.net = SampleNet(cfg or SampleNetConfig(num_out_points=128, progressive=True))
        self.patch_size = int(patch_size)

    def forward(self, local: torch.Tensor, features: torch.Tensor | None = None, prefix: int | None = None) -> dict:
        """Training pass over (G, n, 3) normalised patches: see :meth:`SampleNet.forward`."""
        return self.net(local, features, prefix)

    @torch.no_grad()
    def sample_indices(self, xyz: torch.Tensor, m: int) -> torch.Tensor:
        """Choose exactly ``m`` distinct points of one scan (eval mode, no gradients).

        Args:
            xyz: (N, 3) float points on the device.
            m: points to keep, ``1 <= m <= N``.

        Returns:
            (m,) int64 indices into ``xyz``, on its device.
        """
        n_pts = xyz.shape[0]
        if not 1 <= m <= n_pts:
            raise ValueError(f'PatchSampleNet: m={m} must be in 1..{n_pts}')
        index, sizes = make_patches(xyz, self.patch_size)
        counts = allocate(m, sizes)
        local, _, _ = normalise_patches(xyz, index)
        gen = self.net.simplify(local)
        m_max = int(counts.max())
        chosen = match_and_complete(local, gen, m_max, ids=index)  # (G, m_max) into the patch
        keep = torch.arange(m_max, device=xyz.device)[None, :] < counts[:, None]
        return index.gather(1, chosen)[keep]


class WholeCloudSampleNet(nn.Module):
    """The published setting: one SampleNet over the whole (small) cloud, normalised to the unit ball."""

    def __init__(self, cfg: SampleNetConfig | None = None):
        """Build the head."""
        super().__init__()
        self.net = SampleNet(cfg or SampleNetConfig())

    def forward(self, local: torch.Tensor, features: torch.Tensor | None = None, prefix: int | None = None) -> dict:
        """Training pass over (B, N, 3) unit-ball clouds: see :meth:`SampleNet.forward`."""
        return self.net(local, features, prefix)

    @torch.no_grad()
    def sample_indices(self, xyz: torch.Tensor, m: int) -> torch.Tensor:
        """(N, 3) -> (m,) int64 distinct indices (generated points first, FPS completion)."""
        if not 1 <= m <= xyz.shape[0]:
            raise ValueError(f'SampleNet: m={m} must be in 1..{xyz.shape[0]}')
        local, _, _ = normalise_patches(xyz, torch.arange(xyz.shape[0], device=xyz.device)[None])
        return match_and_complete(local, self.net.simplify(local), m)[0]
