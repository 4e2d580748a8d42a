"""A KITTI recording opened by :func:`pu_ros.data.kitti.open_kitti`: :class:`KittiSequence` and its :class:`Frame`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pu_ros.data.kitti_files import ObjectLabel, read_image, read_labels, read_object_labels, read_points
from pu_ros.geometry.calibration import Calibration

CAMERA_NAMES = ('image_0', 'image_1', 'image_2', 'image_3')
COLOR_CAMERAS = (2, 3)


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

