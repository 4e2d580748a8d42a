"""The invertible pieces of PU-Flow: ActNorm, invertible 1x1 mixing, additive coupling, affine injector.

Every layer maps point coordinates (B, N, D) (D = 3) to the same shape and returns ``(y, logdet)`` where ``logdet``
is the (B,) log-absolute-determinant of the Jacobian of the whole (N·D)-dimensional map, summed over points.
``inverse`` undoes ``forward`` exactly (up to float rounding). Conditioning features ``c`` are (B, N, C_c) and
are constants for the flow (they come from the feature extractor).
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


class ConditionMLP(nn.Module):
    """Linear(in, h, no bias) - LeakyReLU - Linear(h, h) - LeakyReLU - Linear(h, out), last layer zero-initialised.

    The zero initialisation makes a freshly built coupling/injector the identity map.
    """

    def __init__(self, dim_in: int, dim_hidden: int, dim_out: int):
        super().__init__()
        self.fc1 = nn.Linear(dim_in, dim_hidden, bias=False)
        self.fc2 = nn.Linear(dim_hidden, dim_hidden)
        self.fc3 = nn.Linear(dim_hidden, dim_out)
        nn.init.zeros_(self.fc3.weight)
        nn.init.zeros_(self.fc3.bias)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (..., dim_in) -> (..., dim_out)."""
        return self.fc3(self.act(self.fc2(self.act(self.fc1(h)))))


class ActNorm(nn.Module):
    """Per-channel affine map ``y = x * exp(log_scale) + bias`` with data-dependent initialisation.

    The first forward pass in training mode (while ``initialized`` is 0) sets the parameters so that the batch
    has zero mean and unit standard deviation per channel. ``initialized`` is a buffer, so it travels with the
    weights.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, 1, channels))
        self.bias = nn.Parameter(torch.zeros(1, 1, channels))
        self.register_buffer('initialized', torch.tensor(0, dtype=torch.uint8))
        self.eps = eps

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        flat = x.reshape(-1, x.shape[-1])
        log_scale = -torch.log(flat.std(0) + self.eps)
        self.log_scale.copy_(log_scale.view_as(self.log_scale))
        # zero mean after scaling (the reference sets bias = -mean, which centres only unit-variance data)
        self.bias.copy_((-flat.mean(0) * torch.exp(log_scale)).view_as(self.bias))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, N, D) -> y (B, N, D), logdet (B,)."""
        if self.training and not bool(self.initialized):
            self._initialize(x)
        logdet = self.log_scale.sum() * x.shape[1]
        return x * torch.exp(self.log_scale) + self.bias, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """y: (B, N, D) -> x (B, N, D)."""
        return (y - self.bias) * torch.exp(-self.log_scale)


class InvertibleLinear(nn.Module):
    """Invertible 1x1 convolution over the coordinate channels: ``y = x W^T`` (W random orthogonal at start)."""

    def __init__(self, channels: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        self.weight = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, N, D) -> y (B, N, D), logdet (B,)."""
        logdet = torch.linalg.slogdet(self.weight)[1] * x.shape[1]
        return x @ self.weight.t(), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """y: (B, N, D) -> x (B, N, D)."""
        return y @ torch.linalg.inv(self.weight).t()


class ChannelPermutation(nn.Module):
    """Fixed channel permutation (reversal by default); volume preserving."""

    def __init__(self, channels: int):
        super().__init__()
        perm = torch.arange(channels - 1, -1, -1)
        self.register_buffer('perm', perm)
        self.register_buffer('inv_perm', torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) -> (B, N, D)."""
        return x[..., self.perm]

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """y: (B, N, D) -> (B, N, D)."""
        return y[..., self.inv_perm]


class AdditiveCoupling(nn.Module):
    """Split the D coordinates into (d1, D - d1); shift the second part by an MLP of the first part and ``c``.

    Volume preserving (logdet 0). ``d1`` = 1 for even blocks and 2 for odd ones, as in the published model.
    """

    def __init__(self, channels: int, split: int, cond_channels: int, hidden: int = 64):
        super().__init__()
        self.split = split
        self.shift_net = ConditionMLP(split + cond_channels, hidden, channels - split)

    def _shift(self, h1: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.shift_net(torch.cat([h1, c], dim=-1))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D), c: (B, N, C_c) -> (B, N, D)."""
        h1, h2 = x[..., :self.split], x[..., self.split:]
        return torch.cat([h1, h2 - self._shift(h1, c)], dim=-1)

    def inverse(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """y: (B, N, D), c: (B, N, C_c) -> (B, N, D)."""
        h1, h2 = y[..., :self.split], y[..., self.split:]
        return torch.cat([h1, h2 + self._shift(h1, c)], dim=-1)


class AffineInjector(nn.Module):
    """Feature-conditioned affine map of all coordinates: ``y = (x - t(c)) * exp(-s(c))``."""

    def __init__(self, channels: int, cond_channels: int, hidden: int = 64):
        super().__init__()
        self.shift_net = ConditionMLP(cond_channels, hidden, channels)
        self.log_scale_net = ConditionMLP(cond_channels, hidden, channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, N, D), c: (B, N, C_c) -> y (B, N, D), logdet (B,)."""
        s = self.log_scale_net(c)
        return (x - self.shift_net(c)) * torch.exp(-s), -s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """y: (B, N, D), c: (B, N, C_c) -> x (B, N, D)."""
        return y * torch.exp(self.log_scale_net(c)) + self.shift_net(c)


class FlowBlock(nn.Module):
    """ActNorm -> invertible 1x1 -> additive coupling -> reversal -> affine injector."""

    def __init__(self, channels: int, cond_channels: int, even: bool, hidden: int = 64):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.mix = InvertibleLinear(channels)
        split = 1 if even else 2
        if channels != 3:
            split = channels // 2
        self.coupling = AdditiveCoupling(channels, split, cond_channels, hidden)
        self.reverse = ChannelPermutation(channels)
        self.injector = AffineInjector(channels, cond_channels, hidden)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, N, D), c: (B, N, C_c) -> z (B, N, D), logdet (B,)."""
        x, ld0 = self.actnorm(x)
        x, ld1 = self.mix(x)
        x = self.reverse(self.coupling(x, c))
        x, ld2 = self.injector(x, c)
        return x, ld0 + ld1 + ld2

    def inverse(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z: (B, N, D), c: (B, N, C_c) -> x (B, N, D)."""
        z = self.injector.inverse(z, c)
        z = self.coupling.inverse(self.reverse.inverse(z), c)
        return self.actnorm.inverse(self.mix.inverse(z))


def standard_normal_logp(z: torch.Tensor) -> torch.Tensor:
    """Log-density of a standard Gaussian prior, summed per batch: z (B, N, D) -> (B,)."""
    return -0.5 * (z * z + LOG_2PI).flatten(1).sum(1)
