"""PNG renders of point sets with Pillow (no matplotlib needed): orthographic views, depth-shaded dots."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _view_rotation(azimuth_deg: float = 35.0, elevation_deg: float = 25.0) -> np.ndarray:
    a, e = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return rx @ rz


def render_points(points: np.ndarray, size: int = 320, title: str = '', extent: float | None = None,
                  dot: int = 1):
    """One panel: (N, >=3) points seen from a fixed oblique direction, far points darker. Returns a PIL image.

    Args:
        points: (N, >=3) array.
        size: panel width and height (px).
        title: text drawn at the top.
        extent: half-width of the view in data units (default: fit the points).
        dot: dot radius (px).
    """
    from PIL import Image, ImageDraw

    canvas = np.full((size, size, 3), 255, np.uint8)
    p = np.asarray(points, dtype=np.float64)[:, :3]
    if len(p):
        q = (p - p.mean(0)) @ _view_rotation().T
        ext = extent or float(np.abs(q[:, [0, 2]]).max()) * 1.05 or 1.0
        u = np.round(((q[:, 0] / ext) * 0.45 + 0.5) * size).astype(int)
        v = np.round((0.5 - (q[:, 2] / ext) * 0.45) * size + 8).astype(int)
        depth = (q[:, 1] - q[:, 1].min()) / max(np.ptp(q[:, 1]), 1e-9)
        order = np.argsort(-depth)  # far first: nearer dots are written later and stay on top
        shade = (40 + 170 * depth[order]).astype(np.uint8)
        colour = np.stack([shade, shade, np.minimum(255, shade.astype(int) + 60).astype(np.uint8)], 1)
        for dy in range(-dot, dot + 1):
            for dx in range(-dot, dot + 1):
                x, y = u[order] + dx, v[order] + dy
                ok = (x >= 0) & (x < size) & (y >= 0) & (y < size)
                canvas[y[ok], x[ok]] = colour[ok]
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    draw.text((6, 4), f'{title} ({len(p)} pts)', fill=(0, 0, 0))
    return img


def render_grid(sets: dict, path: str | Path, size: int = 320) -> Path:
    """Panels of several point sets side by side (same scale), saved as a PNG.

    Args:
        sets: title -> (N, >=3) points.
        path: output PNG.
        size: panel size (px).
    """
    from PIL import Image

    arrays = [np.asarray(v)[:, :3] for v in sets.values()]
    ref = arrays[0]
    q = (np.concatenate(arrays) - ref.mean(0)) @ _view_rotation().T
    extent = float(np.abs(q[:, [0, 2]]).max()) * 1.05
    panels = [render_points(v, size, k, extent) for k, v in sets.items()]
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    grid = Image.new('RGB', (cols * size, rows * size), (255, 255, 255))
    for i, panel in enumerate(panels):
        grid.paste(panel, ((i % cols) * size, (i // cols) * size))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
