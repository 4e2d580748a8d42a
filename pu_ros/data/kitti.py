"""Readers for KITTI LiDAR/camera recordings in three layouts.

``open_kitti(path)`` detects the layout and returns a :class:`KittiSequence` whose frames are read lazily:

- **odometry / SemanticKITTI**: ``sequences/XX/`` with ``velodyne/*.bin``, optional ``labels/*.label``,
  ``image_0`` (grey) / ``image_2`` (colour) PNGs, ``calib.txt`` (``P0..P3``, ``Tr``), ``times.txt`` (seconds from
  the start of the drive) and optional ``poses.txt`` (camera-0 poses). ``times.txt`` may have more lines than
  there are scans; scan ``XXXXXX.bin`` uses line ``int(XXXXXX)``.
- **object**: ``training/`` (or ``testing/``) with ``velodyne/``, ``image_2/``, ``calib/XXXXXX.txt`` (``P0..P3``,
  ``R0_rect``, ``Tr_velo_to_cam``) and optional ``label_2/`` boxes. Object frames carry no timestamps: frame ``i``
  (position in the sorted list) gets ``i * 0.1`` s. Each frame has its own calibration (``Frame.calib``).
- **raw**: ``DATE/DATE_drive_XXXX_sync/`` with ``velodyne_points/data/*.bin`` + ``timestamps.txt``,
  ``image_0X/data/*.png`` + ``timestamps.txt`` and the calibration in the DATE folder
  (``calib_cam_to_cam.txt``, ``calib_velo_to_cam.txt``). Timestamps are absolute (UTC) date-time strings.

Calibration follows :class:`pu_ros.geometry.Calibration` (``pixel ~ P @ T_cam_lidar @ X``):
odometry ``P = Pc``, ``T = Tr``; object ``P = Pc``, ``T = R0_rect @ Tr_velo_to_cam``; raw ``P = P_rect_0c``,
``T = R_rect_00 @ [R | T]`` where ``c`` is the camera number (0 grey left, 1 grey right, 2 colour left,
3 colour right).

The code is split by job: single files in :mod:`pu_ros.data.kitti_files`, calibration files in
:mod:`pu_ros.data.kitti_calib`, the lazy :class:`KittiSequence` / :class:`Frame` in :mod:`pu_ros.data.kitti_sequence`
and the three layout openers in :mod:`pu_ros.data.kitti_layouts`; every public name stays importable from here.
"""

from __future__ import annotations

from pathlib import Path

from pu_ros.data.kitti_calib import read_calib_file
from pu_ros.data.kitti_files import (
    KittiFormatError,
    ObjectLabel,
    image_size,
    read_image,
    read_labels,
    read_object_labels,
    read_points,
    read_poses,
    read_raw_timestamps,
    read_times,
)
from pu_ros.data.kitti_layouts import OBJECT_FRAME_PERIOD_S, open_object, open_odometry, open_raw
from pu_ros.data.kitti_sequence import CAMERA_NAMES, COLOR_CAMERAS, Frame, KittiSequence

__all__ = [
    'CAMERA_NAMES', 'COLOR_CAMERAS', 'LAYOUTS', 'OBJECT_FRAME_PERIOD_S', 'Frame', 'KittiFormatError',
    'KittiSequence', 'ObjectLabel', 'detect_layout', 'image_size', 'open_kitti', 'read_calib_file', 'read_image',
    'read_labels', 'read_object_labels', 'read_points', 'read_poses', 'read_raw_timestamps', 'read_times',
]

LAYOUTS = ('odometry', 'object', 'raw')


def _single_child(folder: Path, pattern: str) -> Path | None:
    children = sorted(p for p in folder.glob(pattern) if p.is_dir())
    if len(children) == 1:
        return children[0]
    if len(children) > 1:
        names = ', '.join(p.name for p in children[:5])
        raise KittiFormatError(f'{folder} holds several recordings ({names}...); pass one of them')
    return None


def detect_layout(path: str | Path) -> tuple[str, Path]:
    """Find the layout of a KITTI folder.

    Accepts an odometry sequence folder (``.../sequences/00``), a dataset root with exactly one sequence, an
    object ``training``/``testing`` folder (or its parent), a raw drive folder (``.../DATE_drive_XXXX_sync``) or a
    date folder with exactly one drive.

    Returns:
        ``(layout, folder)``: one of :data:`LAYOUTS` and the folder the reader should use.

    Raises:
        KittiFormatError: no known layout.
    """
    path = Path(path)
    if not path.exists():
        raise KittiFormatError(f'{path} does not exist')
    if not path.is_dir():
        raise KittiFormatError(f'{path} is not a folder')
    if (path / 'velodyne_points').is_dir():
        return 'raw', path
    if (path / 'velodyne').is_dir():
        if (path / 'calib').is_dir():
            return 'object', path
        if (path / 'calib.txt').is_file() or (path / 'times.txt').is_file() or (path / 'labels').is_dir():
            return 'odometry', path
        raise KittiFormatError(
            f'{path} has velodyne/ but neither calib.txt (odometry layout) nor calib/ (object layout)'
        )
    if (path / 'sequences').is_dir():
        child = _single_child(path / 'sequences', '*')
        if child is not None:
            return detect_layout(child)
    for name in ('training', 'testing'):
        if (path / name / 'velodyne').is_dir():
            return detect_layout(path / name)
    child = _single_child(path, '*_sync')
    if child is not None:
        return detect_layout(child)
    raise KittiFormatError(
        f'{path} is not a KITTI folder: expected velodyne/ + calib.txt (odometry sequence), velodyne/ + calib/ '
        f'(object training), or velodyne_points/ (raw drive)'
    )


def open_kitti(path: str | Path, camera: str | int | None = None) -> KittiSequence:
    """Open a KITTI odometry sequence, object folder or raw drive.

    Args:
        path: see :func:`detect_layout` for the folders accepted.
        camera: ``'image_2'`` (colour left), ``'image_0'`` (grey left), ``'image_3'``/``'image_1'``, raw-style
            ``'image_02'`` or the camera number; None picks image_2 when it has images, then image_0.

    Returns:
        a :class:`KittiSequence`; frames are read when indexed.

    Raises:
        KittiFormatError: missing scans or calibration, unreadable files, a requested camera without images.
    """
    layout, folder = detect_layout(path)
    opener = {'odometry': open_odometry, 'object': open_object, 'raw': open_raw}[layout]
    return opener(folder, camera)
