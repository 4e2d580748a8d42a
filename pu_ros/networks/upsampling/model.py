"""PU-Flow: point cloud upsampling with a discrete normalizing flow (Mao et al., TVCG 2022).

Input points x (B, N, 3) of a patch normalised to the unit sphere. A dense EdgeConv stack (static kNN graph,
k = 16) gives per-point features; six merge units turn them into the conditioning features of six flow blocks,
which map x to latents z with a tractable log-determinant (Gaussian prior -> log-likelihood). New latents are
learned convex combinations of the latents of the k = 8 nearest neighbours; the inverse flow, conditioned on the
parent point's features, maps them back to points. Losses live with the trainer; this module exposes the pieces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from pu_ros.networks.upsampling.features import DenseEdgeConv, MergeUnit
from pu_ros.networks.upsampling.flow import FlowBlock, standard_normal_logp
from pu_ros.networks.upsampling.interpolation import LatentInterpolation
from pu_ros.ops.neighbors import knn_points


@dataclass
class PUFlowConfig:
    """Architecture of :class:`PUFlow`; the defaults are the published ×4 model."""

    dim: int = 3                    # coordinates per point
    num_blocks: int = 6             # flow blocks (and feature units)
    k: int = 16                     # neighbours of the EdgeConv graph
    interp_k: int = 8               # neighbours mixed by the latent interpolation
    max_ratio: int = 32             # learned weight sets (largest single-pass ratio)
    hidden: int = 64                # hidden width of the coupling/injector MLPs
    feat_channels: tuple = (32, 64, 128, 128, 128, 128)
    growth: tuple = (8, 16, 32, 32, 32, 32)
    cond_channels: tuple = (32, 64, 128, 128, 128, 128)
    decoder: str = 'flow'           # 'flow' (inverse flow) or 'mlp' (ablation: MLP decoder)
    trained_ratio: int = 4          # ratio the weights were trained for (used by the Upsampler's ratio strategy)

    def __post_init__(self):
        for name in ('feat_channels', 'growth', 'cond_channels'):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != self.num_blocks:
                raise ValueError(f'{name} needs {self.num_blocks} entries, got {len(value)}')
            setattr(self, name, value)
        if self.decoder not in ('flow', 'mlp'):
            raise ValueError(f"decoder must be 'flow' or 'mlp', got {self.decoder!r}")

    def to_dict(self) -> dict:
        """Plain dict (lists for tuples), suitable for a checkpoint."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict | None) -> PUFlowConfig:
        """Build from a dict, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


class PUFlow(nn.Module):
    """The PU-Flow network. Tensor names match the published checkpoints after :mod:`.weights` conversion."""

    def __init__(self, config: PUFlowConfig | None = None):
        super().__init__()
        self.config = cfg = config or PUFlowConfig()
        chans = (cfg.dim,) + cfg.feat_channels
        self.features_units = nn.ModuleList(
            DenseEdgeConv(chans[i], chans[i + 1], cfg.growth[i]) for i in range(cfg.num_blocks))
        self.merges = nn.ModuleList(MergeUnit(chans[i + 1], cfg.cond_channels[i]) for i in range(cfg.num_blocks))
        self.blocks = nn.ModuleList(
            FlowBlock(cfg.dim, cfg.cond_channels[i], even=(i % 2 == 0), hidden=cfg.hidden)
            for i in range(cfg.num_blocks))
        self.interp = LatentInterpolation(cfg.dim, cfg.interp_k, cfg.max_ratio)
        self.mlp_decoder = None
        if cfg.decoder == 'mlp':
            self.mlp_decoder = nn.Sequential(
                nn.Linear(cfg.dim + cfg.cond_channels[-1], 128), nn.ReLU(),
                nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, cfg.dim))

    # --- pieces -------------------------------------------------------------------------------------------
    def knn(self, points: torch.Tensor, k: int) -> torch.Tensor:
        """Neighbour indices (self included): points (B, N, D) -> (B, N, k) int64."""
        return knn_points(points, points, k)[1]

    def features(self, points: torch.Tensor, idx: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Conditioning features of the flow blocks.

        Args:
            points: (B, N, D).
            idx: optional (B, N, k) EdgeConv neighbour indices (computed when None).

        Returns:
            ``num_blocks`` tensors (B, N, cond_channels[i]).
        """
        if idx is None:
            idx = self.knn(points, self.config.k)
        conds, f = [], points
        for unit, merge in zip(self.features_units, self.merges):
            f = unit(f, idx)
            conds.append(merge(f))
        return conds

    def flow(self, x: torch.Tensor, conds: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward flow with given conditioning: x (B, M, D), conds[i] (B, M, C_i) -> z (B, M, D), logdet (B,)."""
        logdet = x.new_zeros(x.shape[0])
        for block, c in zip(self.blocks, conds):
            x, ld = block(x, c)
            logdet = logdet + ld
        return x, logdet

    def decode(self, z: torch.Tensor, conds: list[torch.Tensor]) -> torch.Tensor:
        """Latents back to points: z (B, M, D), conds[i] (B, M, C_i) -> (B, M, D).

        The inverse flow, or the MLP decoder when ``config.decoder == 'mlp'`` (ablation; not invertible).
        """
        if self.mlp_decoder is not None:
            return self.mlp_decoder(torch.cat([z, conds[-1]], dim=-1))
        for block, c in zip(reversed(self.blocks), reversed(conds)):
            z = block.inverse(z, c)
        return z

    # --- public API ---------------------------------------------------------------------------------------
    def encode(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, N, D) -> latents z (B, N, D) and the flow's log-determinant (B,)."""
        return self.flow(points, self.features(points))

    forward = encode

    def log_prob(self, points: torch.Tensor) -> torch.Tensor:
        """Log p(points) under the flow and the standard Gaussian prior, summed over points: (B, N, D) -> (B,)."""
        z, logdet = self.encode(points)
        return standard_normal_logp(z) + logdet

    def nll(self, points: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per point, averaged over the batch: (B, N, D) -> scalar."""
        return -self.log_prob(points).mean() / points.shape[1]

    def upsample_with_nll(self, points: torch.Tensor, ratio: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass giving the dense points and the NLL of the input (what a training step needs).

        Args:
            points: (B, N, D) patch normalised to the unit sphere, N >= k.
            ratio: new points per input point, 1..max_ratio (uses the first ``ratio`` learned weight sets).

        Returns:
            dense (B, N * ratio, D) point-major (rows n*R..n*R+R-1 come from point n), nll scalar (per point).
        """
        idx = self.knn(points, max(self.config.k, self.config.interp_k))
        conds = self.features(points, idx[..., :self.config.k])
        z, logdet = self.flow(points, conds)
        nll = -(standard_normal_logp(z) + logdet).mean() / points.shape[1]
        zi = self.interp(z, points, idx[..., :self.config.interp_k], ratio)
        dense = self.decode(zi, [c.repeat_interleave(ratio, dim=1) for c in conds])
        return dense, nll

    def upsample(self, points: torch.Tensor, ratio: int = 4) -> torch.Tensor:
        """Points (B, N, D) -> (B, N * ratio, D); see :meth:`upsample_with_nll`."""
        return self.upsample_with_nll(points, ratio)[0]
