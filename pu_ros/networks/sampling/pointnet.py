"""PointNet classifier without T-Net: the frozen task network of SampleNet's classification setting.

Parameter names match the published ModelNet40 weights (``feature_model.conv1..5``/``bn1..5`` pointwise
3→64→64→64→128→1024, max pool, ``linear1`` 1024→512 + ``bn1``, ``linear2`` 512→256 + ``bn2``, ``linear3`` →40).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class PointNetFeatures(nn.Module):
    """Pointwise convs with BatchNorm and ReLU, then a max pool: (B, N, 3) -> (B, emb)."""

    def __init__(self, emb: int = 1024):
        """Build the layers."""
        super().__init__()
        widths = [3, 64, 64, 64, 128, emb]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            setattr(self, f'conv{i}', nn.Conv1d(a, b, 1))
            setattr(self, f'bn{i}', nn.BatchNorm1d(b))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, emb) global feature."""
        if not self.training:  # eval BatchNorm is affine: fold it into the 1x1 convs, run them as (B, N, C) matmuls
            y = points
            for i in range(1, 6):
                conv, bn = getattr(self, f'conv{i}'), getattr(self, f'bn{i}')
                s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                y = F.relu(F.linear(y, conv.weight[:, :, 0] * s[:, None], (conv.bias - bn.running_mean) * s + bn.bias))
            return y.max(dim=1).values
        y = points.transpose(1, 2)
        for i in range(1, 6):
            y = F.relu(getattr(self, f'bn{i}')(getattr(self, f'conv{i}')(y)))
        return y.max(dim=2).values


class PointNetCls(nn.Module):
    """PointNet classifier (no T-Net): (B, N, 3) points -> (B, num_classes) logits."""

    def __init__(self, num_classes: int = 40, emb: int = 1024, dropout: float = 0.3):
        """Build the layers."""
        super().__init__()
        self.feature_model = PointNetFeatures(emb)
        self.linear1 = nn.Linear(emb, 512)
        self.bn1 = nn.BatchNorm1d(512)
        self.linear2 = nn.Linear(512, 256)
        self.bn2 = nn.BatchNorm1d(256)
        self.dropout = nn.Dropout(dropout)
        self.linear3 = nn.Linear(256, num_classes)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, C) logits."""
        return self.classify(self.feature_model(points))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(B, emb) global features -> (B, C) logits (the part after the max pool)."""
        y = F.relu(self.bn1(self.linear1(features)))
        y = self.dropout(F.relu(self.bn2(self.linear2(y))))
        return self.linear3(y)


def load_pointnet_cls(path, device='cpu') -> PointNetCls:
    """Load published/our PointNet classifier weights (a plain state dict) into :class:`PointNetCls`, frozen.

    Raises:
        FileNotFoundError: missing file. ValueError: the weights do not fit.
    """
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f'PointNet weights {path} do not exist')
    state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and 'state_dict' in state:
        state = state['state_dict']
    net = PointNetCls(num_classes=int(state['linear3.weight'].shape[0]) if 'linear3.weight' in state else 40)
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise ValueError(f'{path} does not fit the PointNet classifier: {str(exc)[:200]}') from None
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
