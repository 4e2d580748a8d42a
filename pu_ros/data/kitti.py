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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
import re
import warnings

import numpy as np

from pu_ros.geometry.calibration import Calibration

LAYOUTS = ('odometry', 'object', 'raw')
OBJECT_FRAME_PERIOD_S = 0.1  # KITTI object frames have no time; consecutive frames are spaced like a 10 Hz scan
CAMERA_NAMES = ('image_0', 'image_1', 'image_2', 'image_3')
COLOR_CAMERAS = (2, 3)


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
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KittiFormatError(f'cannot read scan {path}: {exc.strerror or exc}') from None
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
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KittiFormatError(f'cannot read labels {path}: {exc.strerror or exc}') from None
    if len(data) % 4:
        raise KittiFormatError(f'label file {path} has {len(data)} bytes, not a multiple of 4 (uint32 per point)')
    labels = np.frombuffer(data, dtype='<u4').astype(np.uint32)
    if num_points is not None and labels.shape[0] != num_points:
        raise KittiFormatError(f'label file {path} has {labels.shape[0]} labels but the scan has {num_points} points')
    return labels


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


def _calib_matrix(calib: dict[str, np.ndarray], key: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    if key not in calib:
        raise KittiFormatError(f'calibration {path} has no {key} (keys: {", ".join(sorted(calib))})')
    value = calib[key]
    if value.size != shape[0] * shape[1]:
        raise KittiFormatError(f'calibration {path}: {key} has {value.size} values, expected {shape[0] * shape[1]}')
    if not np.all(np.isfinite(value)):
        raise KittiFormatError(f'calibration {path}: {key} contains NaN or inf')
    return value.reshape(shape)


def _homogeneous(m: np.ndarray) -> np.ndarray:
    """3×3 or 3×4 -> 4×4 homogeneous matrix."""
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


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


def read_times(path: str | Path) -> np.ndarray:
    """Read an odometry ``times.txt``: (M,) float64 seconds, one per line."""
    path = Path(path)
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise KittiFormatError(f'cannot read times {path}: {exc}') from None
    if values.ndim != 1:
        raise KittiFormatError(f'times {path} must have one number per line')
    return values


def read_poses(path: str | Path) -> np.ndarray:
    """Read an odometry ``poses.txt`` (12 numbers per line, a 3×4 row-major pose): (M, 4, 4) float64."""
    path = Path(path)
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise KittiFormatError(f'cannot read poses {path}: {exc}') from None
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


# --------------------------------------------------------------------------------------------------- frames


@dataclass
class Frame:
    """One LiDAR scan with what belongs to it.

    Attributes:
        index: position in the sequence (0..len-1).
        stamp: seconds (odometry: from ``times.txt``, relative to the drive start; object: ``index * 0.1``;
            raw: seconds since the Unix epoch).
        points: (N, 4) float32 ``x, y, z, intensity`` in the LiDAR frame.
        labels: (N,) uint32 raw SemanticKITTI labels (instance in the upper 16 bits) or None.
        image: (H, W, 3) uint8 RGB, (H, W) uint8 grey, or None when the camera has no image for this frame.
        image_encoding: ``'rgb8'``, ``'mono8'`` or None.
        pose: (4, 4) float64 LiDAR pose in the frame of the first LiDAR scan of the drive
            (odometry ``poses.txt`` converted with ``Tr``: ``Tr^-1 @ pose @ Tr``), or None.
        frame_id: the file stem (``'000000'``).
        stamp_ns: ``stamp`` in integer nanoseconds (exact for raw timestamps).
        image_stamp_ns: camera time of ``image`` in nanoseconds (raw layout: from the camera's own
            ``timestamps.txt``; otherwise equal to ``stamp_ns``), or None without an image.
        calib: the calibration of this frame (object frames each have their own).
    """

    index: int
    stamp: float
    points: np.ndarray
    labels: np.ndarray | None = None
    image: np.ndarray | None = None
    image_encoding: str | None = None
    pose: np.ndarray | None = None
    frame_id: str = ''
    stamp_ns: int = 0
    image_stamp_ns: int | None = None
    calib: Calibration | None = None


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


class KittiSequence:
    """A KITTI drive (or a set of object frames) with lazy per-frame reads.

    Build it with :func:`open_kitti`. ``seq[i]`` reads scan, labels and image of frame ``i`` and returns a
    :class:`Frame`; ``len(seq)`` is the number of scans.

    Attributes:
        path: the folder that was opened.
        layout: ``'odometry'``, ``'object'`` or ``'raw'``.
        camera: ``'image_0'`` .. ``'image_3'`` (odometry naming, also for raw ``image_0X``) or None without images.
        calib: :class:`Calibration` of ``camera`` (of the first frame for the object layout).
        frame_ids: list of file stems, one per scan.
        stamps_ns: (len,) int64 nanoseconds per scan.
        stamps_absolute: True when stamps are Unix time (raw), False when relative (odometry, object).
        has_labels: True when at least one frame has a SemanticKITTI ``.label`` file.
    """

    def __init__(
        self,
        path: Path,
        layout: str,
        scan_paths: list[Path],
        stamps_ns: np.ndarray,
        camera_index: int | None,
        calib_for: Callable[[int], Calibration],
        label_paths: list[Path | None] | None = None,
        image_paths: list[Path | None] | None = None,
        image_stamps_ns: np.ndarray | None = None,
        poses: np.ndarray | None = None,
        object_label_paths: list[Path | None] | None = None,
        stamps_absolute: bool = False,
    ):
        """Internal: use :func:`open_kitti`."""
        n = len(scan_paths)
        self.path = Path(path)
        self.layout = layout
        self._scans = list(scan_paths)
        self.frame_ids = [p.stem for p in scan_paths]
        self.stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
        assert self.stamps_ns.shape == (n,)
        self._camera_index = camera_index
        self.camera = None if camera_index is None else CAMERA_NAMES[camera_index]
        self._calib_for = lru_cache(maxsize=None)(calib_for)
        self._labels = label_paths or [None] * n
        self._images = image_paths or [None] * n
        self._image_stamps_ns = image_stamps_ns
        self._poses = poses
        self._object_labels = object_label_paths or [None] * n
        self.stamps_absolute = stamps_absolute
        self.has_labels = any(p is not None for p in self._labels)
        self.calib = self._calib_for(0)

    @property
    def stamps(self) -> np.ndarray:
        """(len,) float64 seconds per scan."""
        return self.stamps_ns / 1e9

    @property
    def is_color(self) -> bool:
        """True when ``camera`` is a colour camera (image_2 / image_3)."""
        return self._camera_index in COLOR_CAMERAS

    def __len__(self) -> int:
        """Number of scans."""
        return len(self._scans)

    def _index(self, i: int) -> int:
        n = len(self._scans)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f'frame {i} out of range for {n} frames')
        return i

    def calib_for(self, i: int) -> Calibration:
        """Calibration of frame ``i`` (the same object for every frame except in the object layout)."""
        return self._calib_for(self._index(i))

    def has_image(self, i: int) -> bool:
        """Whether frame ``i`` has an image of ``camera``."""
        return self._images[self._index(i)] is not None

    def has_label(self, i: int) -> bool:
        """Whether frame ``i`` has a ``.label`` file."""
        return self._labels[self._index(i)] is not None

    def object_labels(self, i: int) -> list[ObjectLabel] | None:
        """KITTI object boxes of frame ``i`` (object layout with ``label_2/``), else None."""
        p = self._object_labels[self._index(i)]
        return None if p is None else read_object_labels(p)

    def __getitem__(self, i: int) -> Frame:
        """Read frame ``i`` (negative indices count from the end)."""
        i = self._index(i)
        points = read_points(self._scans[i])
        labels = None
        if self._labels[i] is not None:
            labels = read_labels(self._labels[i], num_points=points.shape[0])
        image = encoding = image_stamp = None
        if self._images[i] is not None:
            image, encoding = read_image(self._images[i])
            image_stamp = int(self.stamps_ns[i] if self._image_stamps_ns is None else self._image_stamps_ns[i])
        pose = None if self._poses is None else self._poses[i].copy()
        return Frame(
            index=i,
            stamp=float(self.stamps_ns[i]) / 1e9,
            points=points,
            labels=labels,
            image=image,
            image_encoding=encoding,
            pose=pose,
            frame_id=self.frame_ids[i],
            stamp_ns=int(self.stamps_ns[i]),
            image_stamp_ns=image_stamp,
            calib=self._calib_for(i),
        )

    def __iter__(self) -> Iterator[Frame]:
        """Frames in order."""
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        """Short description."""
        return (
            f'KittiSequence({self.layout}, {len(self)} frames, camera={self.camera}, '
            f'labels={self.has_labels}, path={str(self.path)!r})'
        )


# --------------------------------------------------------------------------------------------------- layouts


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


def _open_odometry(path: Path, camera) -> KittiSequence:
    scans = _scan_paths(path / 'velodyne', path)
    calib_path = path / 'calib.txt'
    if not calib_path.is_file():
        raise KittiFormatError(f'{path}: calib.txt is missing')
    raw_calib = read_calib_file(calib_path)
    Tr = _homogeneous(_calib_matrix(raw_calib, 'Tr', (3, 4), calib_path))

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
    P = _calib_matrix(raw_calib, pkey, (3, 4), calib_path)
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


def _open_object(path: Path, camera) -> KittiSequence:
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
        P = _calib_matrix(raw, pkey, (3, 4), cpath)
        R0 = _homogeneous(_calib_matrix(raw, 'R0_rect', (3, 3), cpath))
        Tv = _homogeneous(_calib_matrix(raw, 'Tr_velo_to_cam', (3, 4), cpath))
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


def _open_raw(path: Path, camera) -> KittiSequence:
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
    Rt[:3, :3] = _calib_matrix(v2c, 'R', (3, 3), v2c_path)
    Rt[:3, 3] = _calib_matrix(v2c, 'T', (3, 1), v2c_path)[:, 0]
    R_rect = _homogeneous(_calib_matrix(c2c, 'R_rect_00', (3, 3), c2c_path))

    image_sets = {}
    for c in range(4):
        folder = path / f'image_0{c}' / 'data'
        image_sets[c] = [p if p.is_file() else None for p in (folder / f'{s}.png' for s in stems)]
    cam = _pick_camera(camera, {c: any(v is not None for v in ps) for c, ps in image_sets.items()}, path)
    c = 2 if cam is None else cam
    P = _calib_matrix(c2c, f'P_rect_0{c}', (3, 4), c2c_path)
    image_paths = None if cam is None else image_sets[cam]
    width, height = _first_image_size(image_paths or [])
    if (width, height) == (0, 0) and f'S_rect_0{c}' in c2c:
        width, height = (int(round(v)) for v in _calib_matrix(c2c, f'S_rect_0{c}', (1, 2), c2c_path)[0])
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
    opener = {'odometry': _open_odometry, 'object': _open_object, 'raw': _open_raw}[layout]
    return opener(folder, camera)
