"""2D branch of the 2DPASS-style segmentor: a ResNet34 FCN giving per-pixel features at every scale.

The encoder is torchvision's ResNet34 (``weights=None``: random initialisation, nothing is downloaded) without its
max-pool, so its four stages run at image strides 2, 4, 8 and 16 and stage ``k`` serves the 3D scale ``2**(k+1)``
(scale ``s`` of ``scale_list`` uses the stage of stride ``min(s, 16)``). One decoder per scale (3x3 conv + BN +
ReLU) maps that stage's channels to ``hidden_size``.

The decoders keep the stage's resolution; :func:`gather_pixel_features` samples a map at the points' pixels with
bilinear interpolation, which equals upsampling the map to full resolution and then reading the pixel, without
ever building the full-resolution maps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TORCHVISION_HINT = 'the 2D branch needs torchvision: pip install torchvision (matching your torch version)'
_STAGE_CHANNELS = (64, 128, 256, 512)


def _stage_for_scale(scale: int) -> int:
    """ResNet stage (0..3, strides 2..16) that serves a 3D scale."""
    return int(min(max(round(math.log2(max(scale, 2))) - 1, 0), 3))


class ImageFCN(nn.Module):
    """ResNet34 encoder + one decoder per scale -> S feature maps (B, hidden, H/stride, W/stride)."""

    def __init__(self, hidden_size: int, scale_list):
        """Build the network.

        Args:
            hidden_size: channels of every output map.
            scale_list: the 3D scales; one output map per scale.
        """
        super().__init__()
        try:
            from torchvision.models import resnet34
        except ImportError as exc:
            raise ImportError(f'{TORCHVISION_HINT} ({exc})') from exc
        net = resnet34(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)  # stride 2, no max-pool
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.scale_stage = [_stage_for_scale(s) for s in scale_list]
        self.strides = [2 ** (k + 1) for k in self.scale_stage]
        self.num_stages = max(self.scale_stage) + 1
        self.decoders = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(_STAGE_CHANNELS[k], hidden_size, 3, padding=1, bias=False),
                nn.BatchNorm2d(hidden_size),
                nn.ReLU(inplace=True),
            )
            for k in self.scale_stage
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per-scale feature maps.

        Args:
            images: (B, 3, H, W) float32 normalised images.

        Returns:
            list of S tensors (B, hidden, ceil(H/stride), ceil(W/stride)), strides in ``self.strides``.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'images must be (B, 3, H, W), got {tuple(images.shape)}')
        x = self.stem(images)
        stage_out = []
        for stage in self.stages[: self.num_stages]:
            x = stage(x)
            stage_out.append(x)
        return [dec(stage_out[k]) for dec, k in zip(self.decoders, self.scale_stage)]


def gather_pixel_features(
    feature_map: torch.Tensor, stride: int, sample: torch.Tensor, uv: torch.Tensor
) -> torch.Tensor:
    """Bilinearly sample a strided feature map at full-resolution pixels.

    Pixel ``(u, v)`` of the image (u = column, v = row) has its centre at ``((u + 0.5) / stride - 0.5,
    (v + 0.5) / stride - 0.5)`` in map cells (the ``align_corners=False`` convention), clamped to the map.

    Args:
        feature_map: (B, C, h, w) float features.
        stride: image pixels per map cell.
        sample: (M,) int64 image (batch) index of each query.
        uv: (M, 2) int64 pixel (column, row) of each query.

    Returns:
        (M, C) features, differentiable with respect to ``feature_map``.
    """
    b, c, h, w = feature_map.shape
    flat = feature_map.permute(0, 2, 3, 1).reshape(b * h * w, c)
    # Pixel coordinates in float32 even under float16 autocast (float16 cannot place column 480 to 1/8 pixel).
    x = ((uv[:, 0].float() + 0.5) / stride - 0.5).clamp(0, w - 1)
    y = ((uv[:, 1].float() + 0.5) / stride - 0.5).clamp(0, h - 1)
    x0 = x.floor().long()
    y0 = y.floor().long()
    x1 = (x0 + 1).clamp_max(w - 1)
    y1 = (y0 + 1).clamp_max(h - 1)
    wx = (x - x0.float()).unsqueeze(1).to(flat.dtype)
    wy = (y - y0.float()).unsqueeze(1).to(flat.dtype)
    base = sample.long() * (h * w)
    f00 = flat[base + y0 * w + x0]
    f01 = flat[base + y0 * w + x1]
    f10 = flat[base + y1 * w + x0]
    f11 = flat[base + y1 * w + x1]
    return (f00 * (1 - wx) + f01 * wx) * (1 - wy) + (f10 * (1 - wx) + f11 * wx) * wy
