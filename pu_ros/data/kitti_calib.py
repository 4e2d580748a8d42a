"""KITTI calibration text files: ``KEY: v1 v2 ...`` lines, and the matrices read from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pu_ros.data.kitti_files import KittiFormatError


def read_calib_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read a KITTI calibration text file of ``KEY: v1 v2 ...`` lines.

    Lines whose values are not all numbers (``calib_time: 09-Jan-2012 13:57:47``) are skipped.

    Returns:
        dict key -> 1-D float64 array of the values (reshape as needed: 12 for 3×4, 9 for 3×3).

    Raises:
        KittiFormatError: unreadable file or no numeric entry at all.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KittiFormatError(f'cannot read calibration {path}: {getattr(exc, "strerror", None) or exc}') from None
    out: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        key, sep, values = line.partition(':')
        if not sep or not key.strip():
            continue
        try:
            arr = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            continue
        if arr.size:
            out[key.strip()] = arr
    if not out:
        raise KittiFormatError(f'calibration {path} has no "KEY: numbers" lines')
    return out


def calib_matrix(calib: dict[str, np.ndarray], key: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    if key not in calib:
        raise KittiFormatError(f'calibration {path} has no {key} (keys: {", ".join(sorted(calib))})')
    value = calib[key]
    if value.size != shape[0] * shape[1]:
        raise KittiFormatError(f'calibration {path}: {key} has {value.size} values, expected {shape[0] * shape[1]}')
    if not np.all(np.isfinite(value)):
        raise KittiFormatError(f'calibration {path}: {key} contains NaN or inf')
    return value.reshape(shape)


def homogeneous(m: np.ndarray) -> np.ndarray:
    """3×3 or 3×4 -> 4×4 homogeneous matrix."""
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out

