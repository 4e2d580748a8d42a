"""Openers of the three KITTI layouts (odometry / SemanticKITTI, object, raw): folder -> :class:`KittiSequence`.

Use :func:`pu_ros.data.kitti.open_kitti`, which detects the layout; the module docstring there describes the
folders, timestamps and calibration of each layout.
"""

from __future__ import annotations

from pathlib import Path
import re
import warnings

import numpy as np

from pu_ros.data.kitti_calib import calib_matrix, homogeneous, read_calib_file
from pu_ros.data.kitti_files import KittiFormatError, image_size, read_poses, read_raw_timestamps, read_times
from pu_ros.data.kitti_sequence import CAMERA_NAMES, KittiSequence
from pu_ros.geometry.calibration import Calibration

OBJECT_FRAME_PERIOD_S = 0.1  # KITTI object frames have no time; consecutive frames are spaced like a 10 Hz scan


def _camera_index(camera) -> int:
    """Accept 2, 'image_2', 'image_02', '2' -> 2."""
    if isinstance(camera, (int, np.integer)):
        idx = int(camera)
    else:
        m = re.fullmatch(r'(?:image_?)?0?([0-3])', str(camera).strip())
        if m is None:
            raise ValueError(f'unknown camera {camera!r}; use image_0, image_1, image_2 or image_3')
        idx = int(m.group(1))
    if not 0 <= idx <= 3:
        raise ValueError(f'unknown camera {camera!r}; use image_0, image_1, image_2 or image_3')
    return idx


def _list_files(folder: Path, suffix: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == suffix and p.is_file())


def _pick_camera(camera, available: dict[int, bool], where: Path) -> int | None:
    """Requested camera (must exist) or the first of image_2, image_0, image_3, image_1 that has images."""
    if camera is not None:
        idx = _camera_index(camera)
        if not available.get(idx):
            raise KittiFormatError(f'{where} has no images for camera {CAMERA_NAMES[idx]}')
        return idx
    for idx in (2, 0, 3, 1):
        if available.get(idx):
            return idx
    return None


def _first_image_size(paths: list[Path | None]) -> tuple[int, int]:
    for p in paths:
        if p is not None:
            return image_size(p)
    return 0, 0


def _scan_paths(folder: Path, where: Path) -> list[Path]:
    scans = _list_files(folder, '.bin')
    if not scans:
        raise KittiFormatError(f'{where}: no scans (*.bin) in {folder}')
    return scans


def open_odometry(path: Path, camera) -> KittiSequence:
    """An odometry / SemanticKITTI sequence folder (``velodyne/``, ``calib.txt``, ``times.txt``...)."""
    scans = _scan_paths(path / 'velodyne', path)
    calib_path = path / 'calib.txt'
    if not calib_path.is_file():
        raise KittiFormatError(f'{path}: calib.txt is missing')
    raw_calib = read_calib_file(calib_path)
    Tr = homogeneous(calib_matrix(raw_calib, 'Tr', (3, 4), calib_path))

    stems = [p.stem for p in scans]
    try:
        numbers = [int(s) for s in stems]
    except ValueError:
        raise KittiFormatError(f'{path}: scan names must be frame numbers (found {stems[:3]}...)') from None

    times_path = path / 'times.txt'
    if times_path.is_file():
        times = read_times(times_path)
        if max(numbers) >= times.shape[0]:
            raise KittiFormatError(
                f'{times_path} has {times.shape[0]} lines but scan {stems[numbers.index(max(numbers))]} needs line '
                f'{max(numbers) + 1}'
            )
        stamps_ns = np.round(times[numbers] * 1e9).astype(np.int64)
    else:
        warnings.warn(f'{path}: no times.txt; using frame number x {OBJECT_FRAME_PERIOD_S} s', stacklevel=3)
        stamps_ns = np.round(np.asarray(numbers) * OBJECT_FRAME_PERIOD_S * 1e9).astype(np.int64)

    poses = None
    poses_path = path / 'poses.txt'
    if poses_path.is_file():
        cam_poses = read_poses(poses_path)
        if max(numbers) < cam_poses.shape[0]:
            # camera-0 poses -> LiDAR poses in the first LiDAR frame (SemanticKITTI convention)
            poses = np.linalg.inv(Tr) @ cam_poses[numbers] @ Tr
        else:
            warnings.warn(f'{poses_path} has fewer lines than frames; poses left out', stacklevel=3)

    label_dir = path / 'labels'
    label_paths = [(label_dir / f'{s}.label') for s in stems]
    label_paths = [p if p.is_file() else None for p in label_paths]

    image_sets = {
        c: [p if p.is_file() else None for p in (path / CAMERA_NAMES[c] / f'{s}.png' for s in stems)] for c in range(4)
    }
    cam = _pick_camera(camera, {c: any(v is not None for v in ps) for c, ps in image_sets.items()}, path)
    pkey = f'P{2 if cam is None else cam}'
    P = calib_matrix(raw_calib, pkey, (3, 4), calib_path)
    image_paths = None if cam is None else image_sets[cam]
    width, height = _first_image_size(image_paths or [])
    calib = Calibration(P, Tr, width, height)
    return KittiSequence(
        path,
        'odometry',
        scans,
        stamps_ns,
        cam,
        lambda i: calib,
        label_paths=label_paths,
        image_paths=image_paths,
        poses=poses,
    )


def open_object(path: Path, camera) -> KittiSequence:
    """A KITTI object ``training``/``testing`` folder (per-frame ``calib/``, optional ``label_2/``)."""
    scans = _scan_paths(path / 'velodyne', path)
    stems = [p.stem for p in scans]
    calib_paths = [path / 'calib' / f'{s}.txt' for s in stems]
    missing = [p.name for p in calib_paths if not p.is_file()]
    if missing:
        raise KittiFormatError(f'{path}: calibration missing for {len(missing)} frame(s): calib/{missing[0]} ...')
    image_sets = {
        c: [p if p.is_file() else None for p in (path / CAMERA_NAMES[c] / f'{s}.png' for s in stems)] for c in range(4)
    }
    cam = _pick_camera(camera, {c: any(v is not None for v in ps) for c, ps in image_sets.items()}, path)
    image_paths = None if cam is None else image_sets[cam]
    pkey = f'P{2 if cam is None else cam}'

    def calib_for(i: int) -> Calibration:
        cpath = calib_paths[i]
        raw = read_calib_file(cpath)
        P = calib_matrix(raw, pkey, (3, 4), cpath)
        R0 = homogeneous(calib_matrix(raw, 'R0_rect', (3, 3), cpath))
        Tv = homogeneous(calib_matrix(raw, 'Tr_velo_to_cam', (3, 4), cpath))
        width, height = (0, 0) if image_paths is None or image_paths[i] is None else image_size(image_paths[i])
        return Calibration(P, R0 @ Tv, width, height)

    label_dir = path / 'label_2'
    obj_labels = [p if p.is_file() else None for p in (label_dir / f'{s}.txt' for s in stems)]
    stamps_ns = np.round(np.arange(len(scans)) * OBJECT_FRAME_PERIOD_S * 1e9).astype(np.int64)
    return KittiSequence(
        path,
        'object',
        scans,
        stamps_ns,
        cam,
        calib_for,
        image_paths=image_paths,
        object_label_paths=obj_labels,
    )


def _raw_stamps(folder: Path, numbers: list[int], what: str) -> np.ndarray | None:
    ts_path = folder / 'timestamps.txt'
    if not ts_path.is_file():
        return None
    stamps = read_raw_timestamps(ts_path)
    if numbers and max(numbers) >= stamps.shape[0]:
        raise KittiFormatError(f'{ts_path} has {stamps.shape[0]} lines but {what} {max(numbers):010d} needs more')
    return stamps[numbers]


def open_raw(path: Path, camera) -> KittiSequence:
    """A KITTI raw drive folder (``DATE_drive_XXXX_sync``; calibration in the date folder above it)."""
    velo = path / 'velodyne_points'
    scans = _scan_paths(velo / 'data', path)
    stems = [p.stem for p in scans]
    try:
        numbers = [int(s) for s in stems]
    except ValueError:
        raise KittiFormatError(f'{path}: scan names must be frame numbers (found {stems[:3]}...)') from None
    stamps_ns = _raw_stamps(velo, numbers, 'scan')
    if stamps_ns is None:
        warnings.warn(f'{velo}: no timestamps.txt; using frame number x {OBJECT_FRAME_PERIOD_S} s', stacklevel=3)
        stamps_ns = np.round(np.asarray(numbers) * OBJECT_FRAME_PERIOD_S * 1e9).astype(np.int64)
        absolute = False
    else:
        absolute = True

    date_dir = path.parent
    c2c_path = date_dir / 'calib_cam_to_cam.txt'
    v2c_path = date_dir / 'calib_velo_to_cam.txt'
    for p in (c2c_path, v2c_path):
        if not p.is_file():
            raise KittiFormatError(f'{path}: {p.name} is missing from the date folder {date_dir}')
    c2c = read_calib_file(c2c_path)
    v2c = read_calib_file(v2c_path)
    Rt = np.eye(4)
    Rt[:3, :3] = calib_matrix(v2c, 'R', (3, 3), v2c_path)
    Rt[:3, 3] = calib_matrix(v2c, 'T', (3, 1), v2c_path)[:, 0]
    R_rect = homogeneous(calib_matrix(c2c, 'R_rect_00', (3, 3), c2c_path))

    image_sets = {}
    for c in range(4):
        folder = path / f'image_0{c}' / 'data'
        image_sets[c] = [p if p.is_file() else None for p in (folder / f'{s}.png' for s in stems)]
    cam = _pick_camera(camera, {c: any(v is not None for v in ps) for c, ps in image_sets.items()}, path)
    c = 2 if cam is None else cam
    P = calib_matrix(c2c, f'P_rect_0{c}', (3, 4), c2c_path)
    image_paths = None if cam is None else image_sets[cam]
    width, height = _first_image_size(image_paths or [])
    if (width, height) == (0, 0) and f'S_rect_0{c}' in c2c:
        width, height = (int(round(v)) for v in calib_matrix(c2c, f'S_rect_0{c}', (1, 2), c2c_path)[0])
    calib = Calibration(P, R_rect @ Rt, width, height)

    image_stamps = None
    if cam is not None:
        image_stamps = _raw_stamps(path / f'image_0{cam}', numbers, 'image')
        if image_stamps is None:
            image_stamps = stamps_ns
    return KittiSequence(
        path,
        'raw',
        scans,
        stamps_ns,
        cam,
        lambda i: calib,
        image_paths=image_paths,
        image_stamps_ns=image_stamps,
        stamps_absolute=absolute,
    )

