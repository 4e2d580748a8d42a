"""Pictures of labelled clouds: a bird's-eye view, a camera overlay and a "screenshot" panel of both (numpy + pillow).

Used by ``pu-ros pipeline`` to write one PNG every N frames. Colours are per point (N, 3) uint8, e.g.
``LabelMap.colorize(labels)`` (the class colours of ``config/semantic_kitti.yaml``). No ROS, no torch.

>>> bev = bird_eye_view(points, colors)                          # (600, 600, 3) uint8, x up, y left
>>> over = camera_overlay(image, points, colors, calib)          # the image, darkened, with the points on it
>>> panel(bev, over, title='frame 3', legend=[('car', (100, 150, 245))]).save('frame.png')
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BACKGROUND = (18, 18, 24)


def _check(points: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f'points must be (N, >=3), got {points.shape}')
    if colors.shape != (points.shape[0], 3):
        raise ValueError(f'colors must be (N, 3) for {points.shape[0]} points, got {colors.shape}')
    return points, colors.astype(np.uint8, copy=False)


def _splat(canvas: np.ndarray, rows: np.ndarray, cols: np.ndarray, colors: np.ndarray, radius: int) -> None:
    """Paint squares of half-size ``radius`` px at (rows, cols); later points paint over earlier ones."""
    h, w = canvas.shape[:2]
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            r, c = rows + dr, cols + dc
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            canvas[r[ok], c[ok]] = colors[ok]


def bird_eye_view(points: np.ndarray, colors: np.ndarray, extent: float = 40.0, size: int = 600,
                  radius: int = 1, background=BACKGROUND) -> np.ndarray:
    """Top view of a cloud around the sensor: x (forward) points up, y (left) points left.

    Args:
        points: (N, >=3) float array, x, y, z in the sensor frame (extra columns ignored).
        colors: (N, 3) uint8 colour of each point.
        extent: half-width of the square shown, metres.
        size: output side, pixels.
        radius: half-size of the square drawn per point (0 = one pixel).
        background: RGB of empty pixels.

    Returns:
        (size, size, 3) uint8 RGB image; higher points are drawn over lower ones, the sensor is a white cross.
    """
    points, colors = _check(points, colors)
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = background
    finite = np.isfinite(points[:, :3]).all(axis=1)
    pts, cols = points[finite], colors[finite]
    scale = size / (2.0 * extent)
    rows = np.floor((extent - pts[:, 0]) * scale).astype(np.int64)
    cols_px = np.floor((extent - pts[:, 1]) * scale).astype(np.int64)
    order = np.argsort(pts[:, 2], kind='stable')  # low first, so the tops of objects stay visible
    _splat(canvas, rows[order], cols_px[order], cols[order], radius)
    c = size // 2
    arm = max(3, size // 80)
    canvas[c, c - arm:c + arm + 1] = 255
    canvas[c - arm:c + arm + 1, c] = 255
    return canvas


def camera_overlay(image: np.ndarray, points: np.ndarray, colors: np.ndarray, calib, radius: int = 1,
                   dim: float = 0.55) -> np.ndarray:
    """Project a labelled cloud into its camera image.

    Args:
        image: (H, W, 3) or (H, W) uint8 camera image.
        points: (N, >=3) float array in the LiDAR frame.
        colors: (N, 3) uint8 colour of each point.
        calib: :class:`pu_ros.geometry.Calibration` of ``image`` (P, T_cam_lidar).
        radius: half-size of the square drawn per point.
        dim: factor applied to the image brightness so that the points stand out.

    Returns:
        (H, W, 3) uint8 RGB image; nearer points are drawn over farther ones.
    """
    points, colors = _check(points, colors)
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f'image must be (H, W, 3) or (H, W) uint8, got {img.shape} {img.dtype}')
    out = (img.astype(np.float32) * dim).astype(np.uint8)
    finite = np.isfinite(points[:, :3]).all(axis=1)
    idx = np.flatnonzero(finite)
    uv, depth, visible = calib.project(points[idx, :3])
    idx, uv, depth = idx[visible], uv[visible], depth[visible]
    order = np.argsort(-depth, kind='stable')  # far first
    uv = np.floor(uv[order]).astype(np.int64)
    _splat(out, uv[:, 1], uv[:, 0], colors[idx[order]], radius)
    return out


def _fit_width(img, width: int):
    from PIL import Image

    if img.width == width:
        return img
    return img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.BILINEAR)


def panel(bev: np.ndarray, overlay: np.ndarray | None = None, title: str = '',
          legend: Sequence[tuple[str, Sequence[int]]] = (), width: int = 960):
    """A screenshot-style PNG: camera overlay on top, bird's-eye view bottom left, class legend bottom right.

    Args:
        bev: (S, S, 3) uint8 from :func:`bird_eye_view`.
        overlay: (H, W, 3) uint8 from :func:`camera_overlay`, or None (no camera).
        title: one line written at the top.
        legend: ``(class name, (r, g, b))`` pairs, drawn as swatches.
        width: panel width in pixels.

    Returns:
        ``PIL.Image.Image`` (RGB); save it with ``.save(path)``.
    """
    from PIL import Image, ImageDraw

    title_h = 26
    top = _fit_width(Image.fromarray(np.asarray(overlay, np.uint8)), width) if overlay is not None else None
    side = min(width * 3 // 5, 600)
    bev_img = Image.fromarray(np.asarray(bev, np.uint8)).resize((side, side), Image.Resampling.NEAREST)
    height = title_h + (top.height if top is not None else 0) + side
    canvas = Image.new('RGB', (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 7), title, fill=(235, 235, 235))
    y = title_h
    if top is not None:
        canvas.paste(top, (0, y))
        y += top.height
    canvas.paste(bev_img, (0, y))
    draw.text((6, y + 4), "bird's-eye view (x up)", fill=(200, 200, 200))
    x0, row = side + 16, 18
    for i, (name, color) in enumerate(legend):
        yy = y + 10 + i * row
        if yy + row > height:
            break
        draw.rectangle([x0, yy, x0 + 12, yy + 12], fill=tuple(int(c) for c in color))
        draw.text((x0 + 20, yy), str(name), fill=(225, 225, 225))
    return canvas


def legend_for(labels: np.ndarray, names: Sequence[str], colors: np.ndarray, ignore_index: int | None = 0,
               limit: int = 20) -> list[tuple[str, tuple[int, int, int]]]:
    """Legend entries of the classes present in ``labels``, most frequent first.

    Args:
        labels: (N,) integer learning ids.
        names: class name per learning id.
        colors: (C, 3) uint8 colour per learning id.
        ignore_index: class left out of the legend (None: keep all).
        limit: at most this many entries.
    """
    counts = np.bincount(np.asarray(labels, np.int64).ravel(), minlength=len(names))
    order = [int(i) for i in np.argsort(-counts, kind='stable') if counts[i] > 0 and i != ignore_index]
    return [(f'{names[i]} ({counts[i]})', tuple(int(c) for c in colors[i])) for i in order[:limit]]
