"""Readers of single KITTI files: Velodyne scans, SemanticKITTI labels, images, times/poses, object labels.

Each reader takes one path and raises :class:`KittiFormatError` (a ``ValueError``) with one clear line for a
missing, unreadable or malformed file. Calibration files are read by :mod:`pu_ros.data.kitti_calib`; whole
recordings by :func:`pu_ros.data.kitti.open_kitti`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re

import numpy as np


class KittiFormatError(ValueError):
    """A KITTI folder or file is missing, unreadable or inconsistent."""


# --------------------------------------------------------------------------------------------------- files


def read_points(path: str | Path) -> np.ndarray:
    """Read a KITTI Velodyne scan.

    Args:
        path: ``.bin`` file of little-endian float32 ``x, y, z, remission`` records.

    Returns:
        (N, 4) float32 array in the LiDAR frame.

    Raises:
        KittiFormatError: unreadable file or a size that is not a multiple of 16 bytes.
    """
    path = Path(path)
    data = _read_bytes(path, 'scan')
    if len(data) % 16:
        raise KittiFormatError(
            f'scan {path} has {len(data)} bytes, not a multiple of 16 (float32 x, y, z, intensity): truncated?'
        )
    return np.frombuffer(data, dtype='<f4').astype(np.float32).reshape(-1, 4)


def read_labels(path: str | Path, num_points: int | None = None) -> np.ndarray:
    """Read a SemanticKITTI ``.label`` file.

    Args:
        path: file of little-endian uint32, one per point (lower 16 bits class, upper 16 bits instance).
        num_points: when given, the number of points of the matching scan; a different count is an error.

    Returns:
        (N,) uint32 raw labels, instance bits included.

    Raises:
        KittiFormatError: unreadable file, size not a multiple of 4, or a count different from ``num_points``.
    """
    path = Path(path)
    data = _read_bytes(path, 'labels')
    if len(data) % 4:
        raise KittiFormatError(f'label file {path} has {len(data)} bytes, not a multiple of 4 (uint32 per point)')
    labels = np.frombuffer(data, dtype='<u4').astype(np.uint32)
    if num_points is not None and labels.shape[0] != num_points:
        raise KittiFormatError(f'label file {path} has {labels.shape[0]} labels but the scan has {num_points} points')
    return labels


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KittiFormatError(f'cannot read {what} {path}: {exc.strerror or exc}') from None


def read_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a PNG (or any Pillow-readable image).

    Returns:
        ``(image, encoding)``: (H, W, 3) uint8 RGB with ``'rgb8'`` or (H, W) uint8 with ``'mono8'``.

    Raises:
        KittiFormatError: unreadable or unsupported image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode in ('L', 'LA', 'I;16', 'I'):
                if im.mode != 'L':
                    raise KittiFormatError(f'image {path} has mode {im.mode}; only 8-bit grey or RGB is supported')
                return np.asarray(im, dtype=np.uint8), 'mono8'
            if im.mode != 'RGB':
                im = im.convert('RGB')
            return np.asarray(im, dtype=np.uint8), 'rgb8'
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise KittiFormatError(f'cannot read image {path}: {exc}') from None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (the pixels are not decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise KittiFormatError(f'cannot read image {path}: {exc}') from None


def _load_numbers(path: Path, what: str, ndmin: int) -> np.ndarray:
    """float64 table of a whitespace-separated text file (at least ``ndmin`` dimensions)."""
    try:
        return np.loadtxt(path, dtype=np.float64, ndmin=ndmin)
    except (OSError, ValueError) as exc:
        raise KittiFormatError(f'cannot read {what} {path}: {exc}') from None


def read_times(path: str | Path) -> np.ndarray:
    """Read an odometry ``times.txt``: (M,) float64 seconds, one per line."""
    path = Path(path)
    values = _load_numbers(path, 'times', ndmin=1)
    if values.ndim != 1:
        raise KittiFormatError(f'times {path} must have one number per line')
    return values


def read_poses(path: str | Path) -> np.ndarray:
    """Read an odometry ``poses.txt`` (12 numbers per line, a 3×4 row-major pose): (M, 4, 4) float64."""
    path = Path(path)
    values = _load_numbers(path, 'poses', ndmin=2)
    if values.shape[1] != 12:
        raise KittiFormatError(f'poses {path} must have 12 numbers per line, found {values.shape[1]}')
    poses = np.tile(np.eye(4), (values.shape[0], 1, 1))
    poses[:, :3, :] = values.reshape(-1, 3, 4)
    return poses


_RAW_STAMP = re.compile(r'^\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\s*$')


def read_raw_timestamps(path: str | Path) -> np.ndarray:
    """Read a KITTI raw ``timestamps.txt`` (``2011-09-26 13:02:25.964389445`` per line, UTC).

    Returns:
        (M,) int64 nanoseconds since the Unix epoch.
    """
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise KittiFormatError(f'cannot read timestamps {path}: {getattr(exc, "strerror", None) or exc}') from None
    out = np.empty(len(lines), dtype=np.int64)
    for i, line in enumerate(lines):
        m = _RAW_STAMP.match(line)
        if m is None:
            raise KittiFormatError(f'timestamps {path} line {i + 1}: {line!r} is not "YYYY-MM-DD HH:MM:SS.fffffffff"')
        day, clock, frac = m.groups()
        try:
            seconds = np.datetime64(f'{day}T{clock}', 's').astype(np.int64)
        except ValueError:
            raise KittiFormatError(f'timestamps {path} line {i + 1}: invalid date {line!r}') from None
        out[i] = int(seconds) * 1_000_000_000 + int((frac or '0').ljust(9, '0'))
    return out


@dataclass
class ObjectLabel:
    """One KITTI object annotation (a ``label_2`` line).

    Attributes:
        type: class name (``Car``, ``Pedestrian``, ``DontCare``...).
        truncated: 0..1 fraction outside the image.
        occluded: 0 visible .. 3 unknown.
        alpha: observation angle (rad).
        bbox: (4,) float64 image box ``left, top, right, bottom`` (pixels).
        dimensions: (3,) float64 ``height, width, length`` (m).
        location: (3,) float64 bottom-centre ``x, y, z`` in the rectified camera frame (m).
        rotation_y: yaw around the camera y axis (rad).
        score: detection score (results files only), else None.
    """

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: np.ndarray
    dimensions: np.ndarray
    location: np.ndarray
    rotation_y: float
    score: float | None = None


def read_object_labels(path: str | Path) -> list[ObjectLabel]:
    """Read a KITTI object ``label_2/XXXXXX.txt`` file into a list of :class:`ObjectLabel`."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KittiFormatError(f'cannot read object labels {path}: {getattr(exc, "strerror", None) or exc}') from None
    out = []
    for n, line in enumerate(text.splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (15, 16):
            raise KittiFormatError(f'object labels {path} line {n + 1}: {len(parts)} fields, expected 15 or 16')
        try:
            v = [float(x) for x in parts[1:]]
        except ValueError:
            raise KittiFormatError(f'object labels {path} line {n + 1}: non-numeric field') from None
        out.append(
            ObjectLabel(
                type=parts[0],
                truncated=v[0],
                occluded=int(v[1]),
                alpha=v[2],
                bbox=np.array(v[3:7]),
                dimensions=np.array(v[7:10]),
                location=np.array(v[10:13]),
                rotation_y=v[13],
                score=v[14] if len(v) == 15 else None,
            )
        )
    return out
