"""SampleNet's sampling losses, kept out of ``forward``.

Simplification loss of a generated set Q (B, M, 3) against the input P (B, N, 3), squared distances::

    L_simplify = alpha * ( L_a(Q, P) + beta * L_m(Q, P) + (gamma + delta * M) * L_a(P, Q) )
    L_a(X, Y) = mean_x min_y |x - y|^2          L_m(X, Y) = max_x min_y |x - y|^2     (each averaged over B)

and the projection loss ``lambda * sigma``. Published defaults: alpha 0.01, beta 1, gamma 1, delta 0, lambda 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pu_ros.ops.neighbors import knn_points


@dataclass
class SamplingLossWeights:
    """alpha, beta, gamma, delta of the simplification loss and lambda of the projection loss."""

    alpha: float = 0.01
    beta: float = 1.0
    gamma: float = 1.0
    delta: float = 0.0
    lmbda: float = 0.01


def nn_sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, P, 3), (B, Q, 3) -> (B, P) squared distance of each ``x`` to its nearest ``y`` (differentiable)."""
    with torch.no_grad():
        _, idx = knn_points(x.detach(), y.detach(), 1)
    nearest = torch.gather(y, 1, idx.expand(-1, -1, y.shape[2]))
    return ((x - nearest) ** 2).sum(-1)


def simplification_loss(generated: torch.Tensor, points: torch.Tensor, w: SamplingLossWeights) -> torch.Tensor:
    """Scalar simplification loss (alpha included).

    Args:
        generated: (B, M, 3) simplified points Q.
        points: (B, N, 3) input cloud P.
        w: loss weights.
    """
    q2p = nn_sq_dist(generated, points)  # (B, M)
    p2q = nn_sq_dist(points, generated)  # (B, N)
    m = generated.shape[1]
    inner = q2p.mean() + w.beta * q2p.max(dim=1).values.mean() + (w.gamma + w.delta * m) * p2q.mean()
    return w.alpha * inner


def projection_loss(sigma: torch.Tensor, w: SamplingLossWeights) -> torch.Tensor:
    """``lambda * sigma`` (scalar)."""
    return w.lmbda * sigma


def progressive_sizes(m_max: int, m_min: int = 1) -> list[int]:
    """Prefix sizes trained by the progressive variant: powers of two from ``m_min`` up to ``m_max`` (inclusive)."""
    sizes, s = [], 1
    while s <= m_max:
        if s >= m_min:
            sizes.append(s)
        s *= 2
    if not sizes or sizes[-1] != m_max:
        sizes.append(m_max)
    return sizes
