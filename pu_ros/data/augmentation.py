"""Training augmentation of the segmentation dataset: its configuration, point transforms and image colour jitter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np


@dataclass
class AugmentConfig:
    """Training augmentation (all off in evaluation).

    Attributes:
        rotate: random rotation about z, uniform in [0, 2π).
        flip_x: probability of mirroring x (x -> -x).
        flip_y: probability of mirroring y.
        scale: (lo, hi) uniform scale factor range (1, 1 = off).
        translate_std: (3,) std of a Gaussian translation in metres.
        dropout: maximum fraction of points randomly removed (uniform in [0, dropout]).
        color_jitter: strength s of brightness/contrast/saturation factors drawn in [1-s, 1+s].
        image_hflip: probability of mirroring the image (and the pixel columns of the correspondences).
    """

    rotate: bool = True
    flip_x: float = 0.5
    flip_y: float = 0.5
    scale: tuple[float, float] = (0.95, 1.05)
    translate_std: tuple[float, float, float] = (0.1, 0.1, 0.1)
    dropout: float = 0.0
    color_jitter: float = 0.3
    image_hflip: float = 0.5

    @classmethod
    def from_dict(cls, d: Mapping | None) -> AugmentConfig:
        """Build from a YAML mapping; unknown keys raise ValueError (no silent typos)."""
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'unknown augmentation key(s) {unknown}; known: {sorted(names)}')
        if 'scale' in d:
            d['scale'] = tuple(float(v) for v in d['scale'])
            if len(d['scale']) != 2 or not 0 < d['scale'][0] <= d['scale'][1]:
                raise ValueError(f'augmentation scale must be (lo, hi) with 0 < lo <= hi, got {d["scale"]}')
        if 'translate_std' in d:
            v = d['translate_std']
            d['translate_std'] = tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v] * 3))
            if len(d['translate_std']) != 3:
                raise ValueError('augmentation translate_std must be one number or three')
        for key in ('flip_x', 'flip_y', 'image_hflip', 'dropout'):
            if key in d and not 0.0 <= float(d[key]) <= 1.0:
                raise ValueError(f'augmentation {key} must be in [0, 1], got {d[key]}')
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain dict (lists instead of tuples) for YAML/checkpoints."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def transform_points(
    xyz: np.ndarray, angle: float = 0.0, flip_x: bool = False, flip_y: bool = False, scale: float = 1.0,
    translation=(0.0, 0.0, 0.0),
) -> np.ndarray:
    """Apply flip, rotation about z, scale and translation (in that order) to points.

    Args:
        xyz: (N, ≥3) float array; only the first three columns change (others are copied).
        angle: rotation about z in radians.
        flip_x: mirror x (x -> -x).
        flip_y: mirror y.
        scale: isotropic factor.
        translation: (3,) added last.

    Returns:
        New (N, ≥3) array of the same dtype.
    """
    out = np.array(xyz, copy=True)
    p = out[:, :3].astype(np.float64)
    if flip_x:
        p[:, 0] = -p[:, 0]
    if flip_y:
        p[:, 1] = -p[:, 1]
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        x, y = p[:, 0].copy(), p[:, 1].copy()
        p[:, 0] = c * x - s * y
        p[:, 1] = s * x + c * y
    p = p * scale + np.asarray(translation, dtype=np.float64)
    out[:, :3] = p.astype(out.dtype)
    return out


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation on a float RGB image.

    Args:
        image: (H, W, 3) float32 in [0, 1].
        strength: factors are drawn uniformly in [1 - strength, 1 + strength].
        rng: random generator.

    Returns:
        (H, W, 3) float32 clipped to [0, 1].
    """
    if strength <= 0:
        return image
    b, c, s = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    img = image * b
    grey = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - grey.mean()) * c + grey.mean()
    grey = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - grey[..., None]) * s + grey[..., None]
    return np.clip(img, 0.0, 1.0).astype(np.float32)
