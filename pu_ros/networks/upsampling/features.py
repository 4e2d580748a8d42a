"""Dense EdgeConv feature extraction for PU-Flow (channel-last tensors, 1x1 convolutions as Linear layers).

An edge feature of point i and neighbour j is ``[f_i, f_j, f_j - f_i]``; a stack of densely connected layers
(each appends ``growth`` channels) and an output layer map it to ``out_channels``; the result is max-pooled over
the neighbours (or returned per edge).
"""

from __future__ import annotations

import torch
from torch import nn


def gather_neighbors(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` picked by neighbour indices.

    Args:
        x: (B, N, C).
        idx: (B, M, K) int64 indices into N.

    Returns:
        (B, M, K, C).
    """
    b, m, k = idx.shape
    flat = idx.reshape(b, m * k, 1).expand(-1, -1, x.shape[-1])
    return torch.gather(x, 1, flat).reshape(b, m, k, x.shape[-1])


def edge_features(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """EdgeConv input ``[x_i, x_j, x_j - x_i]``: x (B, N, C), idx (B, N, K) -> (B, N, K, 3C)."""
    nb = gather_neighbors(x, idx)
    centre = x[:, :, None, :].expand_as(nb)
    return torch.cat([centre, nb, nb - centre], dim=-1)


class LinearBN(nn.Module):
    """Linear (a 1x1 convolution on channel-last data) + BatchNorm over all leading dims + LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, slope: float):
        super().__init__()
        self.conv = nn.Linear(c_in, c_out)
        self.bn = nn.BatchNorm1d(c_out)
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., c_in) -> (..., c_out)."""
        y = self.conv(x)
        shape = y.shape
        return self.act(self.bn(y.reshape(-1, shape[-1])).reshape(shape))


class DenseEdgeConv(nn.Module):
    """Densely connected EdgeConv unit.

    Args:
        in_channels: C_in of the point features.
        out_channels: C_out; must be a multiple of ``growth``, and out_channels // growth dense layers are used.
        growth: channels each dense layer appends.
        slope: LeakyReLU negative slope.
    """

    def __init__(self, in_channels: int, out_channels: int, growth: int, slope: float = 0.05):
        super().__init__()
        if out_channels % growth:
            raise ValueError(f'out_channels {out_channels} must be a multiple of growth {growth}')
        c = 3 * in_channels
        layers = []
        for i in range(out_channels // growth):
            layers.append(LinearBN(c + i * growth, growth, slope))
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(c + len(layers) * growth, out_channels)

    def forward(self, x: torch.Tensor, idx: torch.Tensor, pool: bool = True) -> torch.Tensor:
        """Features of every point (pooled) or of every edge.

        The edge-feature part of every layer is linear in ``[x_i, x_j, x_j - x_i]``, so it is computed per point
        (``x_i A^T + x_j B^T``) and gathered, instead of per edge: the same function with K times fewer
        multiplications on the 3·C_in input channels.

        Args:
            x: (B, N, C_in) point features.
            idx: (B, N, K) neighbour indices (self included).
            pool: max over the K neighbours.

        Returns:
            (B, N, C_out) when ``pool`` else (B, N, K, C_out).
        """
        c = x.shape[-1]
        convs = [layer.conv for layer in self.layers] + [self.out]
        w_edge = torch.cat([m.weight[:, :3 * c] for m in convs], dim=0)      # (sum of outputs, 3C)
        w_c, w_n, w_d = w_edge[:, :c], w_edge[:, c:2 * c], w_edge[:, 2 * c:]
        own = x @ (w_c - w_d).t()                                            # (B, N, S)
        other = gather_neighbors(x @ (w_n + w_d).t(), idx)                   # (B, N, K, S)
        edge = own[:, :, None, :] + other
        hidden, start = [], 0
        for m, layer in zip(convs, list(self.layers) + [None]):
            n_out = m.weight.shape[0]
            y = edge[..., start:start + n_out] + m.bias
            start += n_out
            if hidden:
                y = y + torch.cat(hidden, dim=-1) @ m.weight[:, 3 * c:].t()
            if layer is None:
                break
            shape = y.shape
            hidden.append(layer.act(layer.bn(y.reshape(-1, shape[-1])).reshape(shape)))
        return y.amax(dim=2) if pool else y


class MergeUnit(nn.Module):
    """Linear(C, C/2) - ReLU - Linear(C/2, C_out, no bias): point features -> flow conditioning features."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.fc1 = nn.Linear(in_channels, in_channels // 2)
        self.fc2 = nn.Linear(in_channels // 2, out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C_out)."""
        return self.fc2(torch.relu(self.fc1(x)))
