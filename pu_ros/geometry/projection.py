"""Camera-side helpers shared by datasets and inference.

Which pixel each LiDAR point falls on, and the image normalisation of the ResNet 2D branch. numpy only.
"""

from __future__ import annotations

import numpy as np

#: ImageNet statistics used to normalise images for the ResNet 2D branch (RGB, 0..1 scale).
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def pixels_in_image(points: np.ndarray, calib, height: int, width: int,
                    origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Pixel of every point that projects into an image (or into a crop of it).

    The points are projected with ``calib`` (points it does not see, behind the camera or outside its
    ``width`` x ``height``, are dropped), the pixel coordinates are floored, shifted by ``origin`` and kept when
    they fall inside the ``height`` x ``width`` window.

    Args:
        points: (N, >=3) float array, x, y, z in the LiDAR frame first.
        calib: :class:`pu_ros.geometry.Calibration` of the image.
        height: H of the window, in pixels.
        width: W of the window, in pixels.
        origin: ``(x0, y0)`` top-left pixel of the window in the full image (a crop); ``(0, 0)`` for the full image.

    Returns:
        ``(idx, uv)``: (M,) int64 indices into ``points`` (ascending) and (M, 2) int64 (column, row) pixels relative
        to the window, ``0 <= column < width``, ``0 <= row < height``.
    """
    uv, _, vis = calib.project(np.asarray(points)[:, :3])
    idx = np.flatnonzero(vis).astype(np.int64)
    uv = np.floor(uv[idx]).astype(np.int64) - np.asarray(origin, dtype=np.int64)
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    return idx[ok], uv[ok]


def normalize_image(image: np.ndarray) -> np.ndarray:
    """Image in the layout and scale of the ResNet 2D branch: ``(image / 255 - IMAGE_MEAN) / IMAGE_STD``.

    Args:
        image: (H, W, 3) RGB, uint8 (0..255), or float already scaled to 0..1 (e.g. after colour jitter).

    Returns:
        (3, H, W) float32, C-contiguous.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must be (H, W, 3), got shape {image.shape}')
    img = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32, copy=False)
    return np.ascontiguousarray(((img - IMAGE_MEAN) / IMAGE_STD).transpose(2, 0, 1), dtype=np.float32)
