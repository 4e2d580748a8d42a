"""PointCloud2 / Image / CameraInfo <-> numpy, without per-point Python.

Reading views ``msg.data`` through numpy (zero-copy where the layout allows); writing fills ``msg.data`` with one
``array.array('B')`` built by a single memcpy. (Assigning a numpy array or a memoryview to ``msg.data`` makes the
generated setter iterate per byte: 60-107 ms for 1.9 MB instead of well under 1 ms.) The messages built here are
created with rosidl's ``check_fields=True`` so that the setter stores that ``array.array`` as is instead of copying it
again; a consequence is that assigning ``bytes`` to ``data`` of such a message later takes the slow validated path:
assign an ``array.array('B')`` instead.

Byte layouts and their checks live in :mod:`pu_ros.ops.cloud_layout` (no ROS imports), shared with the rosbag
writer. Every bad message raises :class:`~pu_ros.ops.cloud_layout.ConversionError` (a ``ValueError``).

Arrays returned by the readers may share memory with the message (``copy=False``, the default): writing to them
writes into the message, and they stay valid as long as the message does. Pass ``copy=True`` for an independent
array (done with one fast byte copy).
"""

from __future__ import annotations

import array
from collections.abc import Sequence

import numpy as np

from pu_ros.geometry.calibration import Calibration
from pu_ros.ops.cloud_layout import (
    NATIVE_BIGENDIAN,
    ConversionError,
    bytes_to_points,
    dtype_to_fields,
    fields_to_dtype,
    pack_rgb,
    points_to_bytes_array,
    xyzi_label_dtype,
)

try:
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
    from std_msgs.msg import Header
except ImportError as exc:  # pragma: no cover - exercised only without the ROS wheels
    raise ImportError(
        'pu_ros.ros.conversions needs the ROS 2 message packages: source a ROS 2 installation or '
        '`pip install ros-rclpy ros-rmw-fastrtps-cpp ros-sensor-msgs ros-std-msgs ros-builtin-interfaces`'
    ) from exc

__all__ = [
    'ConversionError', 'INTENSITY_FIELDS', 'IMAGE_ENCODINGS', 'array_to_cloud', 'array_to_image',
    'calibration_to_camera_info', 'camera_info_to_calibration', 'cloud_to_array', 'cloud_to_xyzi',
    'image_to_array', 'ns_to_stamp', 'stamp_to_ns', 'xyzi_to_cloud',
]

#: Field names read as intensity by :func:`cloud_to_xyzi`, first match wins.
INTENSITY_FIELDS = ('intensity', 'i', 'remission')

#: Supported image encodings -> (numpy type code without byte order, channels).
IMAGE_ENCODINGS = {
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4),
    'mono8': ('u1', 1), 'mono16': ('u2', 1),
    '8UC1': ('u1', 1), '8UC3': ('u1', 3), '8UC4': ('u1', 4), '16UC1': ('u2', 1), '32FC1': ('f4', 1),
}

_NS = 1_000_000_000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


# --------------------------------------------------------------------------------------------------------- stamps
def stamp_to_ns(stamp) -> int:
    """Nanoseconds since the epoch of a ``builtin_interfaces/Time`` (or anything with ``sec`` and ``nanosec``).

    Args:
        stamp: a Time message, an ``rclpy.time.Time`` (``nanoseconds`` attribute) or an int (returned as is).

    Returns:
        int nanoseconds.
    """
    if isinstance(stamp, int | np.integer):
        return int(stamp)
    if hasattr(stamp, 'sec') and hasattr(stamp, 'nanosec'):
        return int(stamp.sec) * _NS + int(stamp.nanosec)
    if hasattr(stamp, 'nanoseconds'):
        return int(stamp.nanoseconds)
    raise ConversionError(f'cannot read a time stamp from {type(stamp).__name__}')


def ns_to_stamp(ns: int) -> Time:
    """A ``builtin_interfaces/Time`` for an integer number of nanoseconds.

    Args:
        ns: nanoseconds since the epoch (negative allowed; ``nanosec`` is always in 0..999999999).

    Returns:
        Time message.

    Raises:
        ConversionError: the seconds do not fit in int32.
    """
    sec, nanosec = divmod(int(ns), _NS)
    if not _INT32_MIN <= sec <= _INT32_MAX:
        raise ConversionError(f'time stamp {ns} ns does not fit builtin_interfaces/Time (int32 seconds)')
    return Time(sec=sec, nanosec=nanosec)


def _as_stamp(stamp) -> Time:
    if stamp is None:
        return Time()
    if isinstance(stamp, Time):
        return stamp
    if hasattr(stamp, 'to_msg'):  # rclpy.time.Time
        return stamp.to_msg()
    return ns_to_stamp(stamp_to_ns(stamp))


def _header(frame_id: str, stamp) -> Header:
    return Header(frame_id=str(frame_id), stamp=_as_stamp(stamp))


# --------------------------------------------------------------------------------------------------------- helpers
def _new_msg(cls):
    """A message with rosidl field checking on: ``data = array.array('B')`` is then stored without another copy.

    Without the flag (the default) the setter copies every value through ``array.array('B', value)``.
    Older rosidl (Humble) has no flag but always stores an ``array.array`` as is.
    """
    try:
        return cls(check_fields=True)
    except (AssertionError, TypeError):  # pragma: no cover - older rosidl
        return cls()


def _byte_array(arr: np.ndarray) -> array.array:
    """``array.array('B')`` holding the bytes of a C-contiguous array (one memcpy)."""
    out = array.array('B')
    out.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return out


def _fast_copy(arr: np.ndarray) -> np.ndarray:
    """Copy a structured array; a raw byte copy when contiguous (numpy's structured copy is ~30x slower)."""
    if arr.flags.c_contiguous and arr.ndim == 1:
        return arr.view(np.uint8).copy().view(arr.dtype)
    return arr.copy()


def _finite_xyz_mask(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(N,) bool, True where x, y and z are all finite (integer columns are always finite)."""
    mask = np.ones(x.shape[0], dtype=bool)
    for col in (x, y, z):
        if col.dtype.kind == 'f':
            mask &= np.isfinite(col)
    return mask


def _rows_all_finite(rows: np.ndarray) -> bool:
    """Whether x, y, z (the first 3 columns of an (N, k) float array) are all finite.

    Tries one contiguous ``isfinite`` over the whole array first (about 3x faster than three strided column
    checks); only when that finds a non-finite value anywhere are the x, y, z columns checked one by one.
    """
    if rows.dtype.kind != 'f' or np.isfinite(rows).all():
        return True
    return bool(_finite_xyz_mask(rows[:, 0], rows[:, 1], rows[:, 2]).all())


def _xyz_all_finite(pts: np.ndarray) -> bool:
    """Whether the x, y, z fields of a structured (N,) array are all finite (same fast path as above).

    When the records are contiguous and x, y, z are 4-byte aligned float32, the whole buffer is checked as
    float32 in one pass (other fields may then look non-finite, in which case the exact per-field check runs).
    """
    fields = pts.dtype.fields
    if (pts.ndim == 1 and pts.flags.c_contiguous and pts.dtype.itemsize % 4 == 0
            and all(fields[c][0] == np.float32 and fields[c][1] % 4 == 0 for c in ('x', 'y', 'z'))
            and np.isfinite(pts.view(np.float32)).all()):
        return True
    return bool(_finite_xyz_mask(pts['x'], pts['y'], pts['z']).all())


# --------------------------------------------------------------------------------------------------------- clouds
def cloud_to_array(msg: PointCloud2, fields: Sequence[str] | None = None, skip_nans: bool = False,
                   copy: bool = False) -> np.ndarray:
    """Read a PointCloud2 into a structured array.

    Args:
        msg: the cloud. Organized clouds (height > 1) are flattened row-major; ``is_bigendian`` is honoured.
        fields: names of the fields to keep (all when None), in this order.
        skip_nans: drop points whose x, y or z is NaN or inf (needs x, y, z fields).
        copy: return an array that does not share memory with ``msg.data``.

    Returns:
        Structured array (height * width,) in native byte order. Field offsets and padding of the message are
        kept. Without ``copy`` it is a view of ``msg.data`` when the message is native-endian, its rows are
        unpadded and no point was dropped.

    Raises:
        ConversionError: bad field list (count > 1, overlap, unknown datatype, past point_step), wrong
            point_step/row_step, data length not ``row_step * height``, unknown names in ``fields``, or
            ``skip_nans`` without x/y/z.
    """
    dtype = fields_to_dtype(msg.fields, msg.point_step, msg.is_bigendian)
    pts = bytes_to_points(msg.data, msg.width, msg.height, msg.point_step, msg.row_step, dtype)
    names = dtype.names
    mask = None
    if skip_nans:
        missing = [n for n in ('x', 'y', 'z') if n not in names]
        if missing:
            raise ConversionError(f'skip_nans needs fields x, y, z; missing {missing} (cloud has {list(names)})')
        if not _xyz_all_finite(pts):
            mask = _finite_xyz_mask(pts['x'], pts['y'], pts['z'])
    if fields is not None:
        fields = list(fields)
        missing = [n for n in fields if n not in names]
        if missing:
            raise ConversionError(f'cloud has no field(s) {missing}; it has {list(names)}')
        pts = pts[fields]  # a view keeping offsets
    owned = False
    if not pts.dtype.isnative:
        pts = pts.astype(pts.dtype.newbyteorder('='))
        owned = True
    if mask is not None:
        pts = np.compress(mask, pts)
        owned = True
    if copy and not owned and np.may_share_memory(pts, np.frombuffer(msg.data, np.uint8)):
        pts = _fast_copy(pts)
    return pts


def cloud_to_xyzi(msg: PointCloud2, skip_nans: bool = False) -> np.ndarray:
    """Read x, y, z and intensity of a PointCloud2 as the pipeline's point array.

    Args:
        msg: the cloud; intensity comes from the first of ``intensity``, ``i``, ``remission`` present, zeros
            when none is.
        skip_nans: drop points whose x, y or z is NaN or inf (on request: it costs one more pass over the
            points, about as long as the copy).

    Returns:
        (N, 4) float32 array x, y, z, intensity (a new array, never a view of the message); other field types
        are cast to float32.

    Raises:
        ConversionError: x, y or z missing, or any layout error of :func:`cloud_to_array`.
    """
    pts = cloud_to_array(msg)
    names = pts.dtype.names
    missing = [n for n in ('x', 'y', 'z') if n not in names]
    if missing:
        raise ConversionError(f'cloud has no {missing} field(s); it has {list(names)}')
    ifield = next((n for n in INTENSITY_FIELDS if n in names), None)
    n = pts.shape[0]
    cols = ['x', 'y', 'z'] + ([ifield] if ifield else [])
    offs = [pts.dtype.fields[c][1] for c in cols]
    if (n and ifield and all(pts.dtype.fields[c][0] == np.float32 for c in cols)
            and offs == list(range(offs[0], offs[0] + 16, 4)) and pts.strides == (pts.dtype.itemsize,)):
        # x, y, z, intensity are 4 consecutive native float32: view them as (N, 4) and copy once.
        out = np.ndarray((n, 4), np.float32, buffer=pts, offset=offs[0], strides=(pts.dtype.itemsize, 4)).copy()
    else:
        out = np.zeros((n, 4), np.float32)
        for j, c in enumerate(cols):
            out[:, j] = pts[c]
    if skip_nans and not _rows_all_finite(out):
        out = np.compress(_finite_xyz_mask(out[:, 0], out[:, 1], out[:, 2]), out, axis=0)
    return out


def array_to_cloud(arr: np.ndarray, frame_id: str, stamp=None, height: int = 1,
                   is_dense: bool | None = None) -> PointCloud2:
    """Build a PointCloud2 from a structured array.

    Args:
        arr: structured array (N,) or (H, W) with scalar int8/16/32, uint8/16/32, float32 or float64 fields;
            its field offsets and padding become the message layout.
        frame_id: ``header.frame_id``.
        stamp: ``header.stamp``: a Time message, an ``rclpy.time.Time``, int nanoseconds, or None (zero).
        height: rows for a 1-D ``arr`` (N must be a multiple); ignored for 2-D arrays.
        is_dense: the message's ``is_dense``; None computes it (True when x, y, z are all finite or absent).

    Returns:
        PointCloud2 in native byte order, ``point_step == arr.dtype.itemsize``, rows unpadded.

    Raises:
        ConversionError: not structured, unsupported field type, or N not a multiple of ``height``.
    """
    arr = np.asarray(arr)
    if arr.dtype.names is None:
        raise ConversionError(f'array_to_cloud needs a structured array, got dtype {arr.dtype}')
    if arr.ndim == 2:
        height, width = arr.shape
    elif arr.ndim == 1:
        height = int(height)
        if height < 1 or arr.shape[0] % height:
            raise ConversionError(f'cannot split {arr.shape[0]} points into height={height} rows')
        width = arr.shape[0] // height
    else:
        raise ConversionError(f'array_to_cloud needs a 1-D or 2-D array, got shape {arr.shape}')
    fields = dtype_to_fields(arr.dtype)
    data = points_to_bytes_array(arr)
    if is_dense is None:
        names = arr.dtype.names
        if all(c in names for c in ('x', 'y', 'z')) and data.size:
            is_dense = _xyz_all_finite(data.reshape(-1))
        else:
            is_dense = True
    msg = _new_msg(PointCloud2)
    msg.header = _header(frame_id, stamp)
    msg.height = int(height)
    msg.width = int(width)
    msg.fields = [PointField(name=name, offset=off, datatype=dt, count=cnt) for name, off, dt, cnt in fields]
    msg.is_bigendian = NATIVE_BIGENDIAN
    msg.point_step = int(arr.dtype.itemsize)
    msg.row_step = int(arr.dtype.itemsize * width)
    msg.data = _byte_array(data)
    msg.is_dense = bool(is_dense)
    return msg


def xyzi_to_cloud(points: np.ndarray, frame_id: str, stamp=None, labels: np.ndarray | None = None,
                  colors: np.ndarray | None = None, label_field: str = 'label',
                  is_dense: bool | None = False) -> PointCloud2:
    """Build the pipeline's (labeled) output cloud: x, y, z, intensity [, label] [, rgb].

    Args:
        points: (N, 4) x, y, z, intensity or (N, 3) x, y, z (intensity 0); cast to float32.
        frame_id: ``header.frame_id``.
        stamp: ``header.stamp`` (see :func:`array_to_cloud`).
        labels: optional (N,) non-negative integers < 2**32, written as a uint32 field named ``label_field``.
        colors: optional (N, 3) uint8 RGB, written as RViz's packed float32 ``rgb`` field.
        label_field: name of the label field.
        is_dense: the message's ``is_dense``. The default False promises nothing (consumers check points, as
            with most LiDAR drivers) and costs nothing; None computes it from x, y, z (one extra pass over the
            points, about as long as the copy itself); pass True when the caller knows every point is finite.

    Returns:
        PointCloud2 (height 1, native byte order, packed 16/20/24-byte points).

    Raises:
        ConversionError: wrong shapes, lengths that differ, labels out of range or not integers.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ConversionError(f'points must have shape (N, 4) or (N, 3), got {pts.shape}')
    if pts.dtype.kind not in 'fiu':
        raise ConversionError(f'points must be numeric, got {pts.dtype}')
    n = pts.shape[0]
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ConversionError(f'labels must have shape ({n},), got {labels.shape}')
        if labels.dtype.kind not in 'iu':
            raise ConversionError(f'labels must be integers, got {labels.dtype}')
        if n and (labels.dtype.kind == 'i' and labels.min() < 0 or labels.max() > 0xFFFFFFFF):
            raise ConversionError('labels must be in 0..2**32-1')
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (n, 3):
            raise ConversionError(f'colors must have shape ({n}, 3), got {colors.shape}')
    dtype = xyzi_label_dtype(label=labels is not None, rgb=colors is not None, label_field=label_field)
    k = dtype.itemsize // 4
    if k == 4 and pts.shape[1] == 4 and pts.dtype == np.float32 and pts.flags.c_contiguous:
        cloud = pts.view(dtype).reshape(n)  # already the layout: no copy before the one into msg.data
    else:
        buf = np.zeros((n, k), np.uint32)
        buf[:, : pts.shape[1]].view(np.float32)[...] = pts
        if labels is not None:
            buf[:, 4] = labels
        if colors is not None:
            buf[:, k - 1] = pack_rgb(colors).view(np.uint32)
        cloud = buf.view(dtype).reshape(n)
    if is_dense is None:
        is_dense = _rows_all_finite(pts) if n else True
    return array_to_cloud(cloud, frame_id, stamp=stamp, is_dense=is_dense)


# --------------------------------------------------------------------------------------------------------- images
def image_to_array(msg: Image, copy: bool = False) -> np.ndarray:
    """Read a sensor_msgs/Image into an array.

    Args:
        msg: image with one of :data:`IMAGE_ENCODINGS`. Row padding (``step > width * bytes_per_pixel``) is
            skipped; ``is_bigendian`` is honoured for 16/32-bit encodings. Channel order is kept as encoded
            (``bgr8`` stays B, G, R).
        copy: return an array that does not share memory with ``msg.data``.

    Returns:
        (H, W, C) for multi-channel encodings, (H, W) for single-channel ones; uint8, uint16 or float32, native
        byte order. Without ``copy`` a (possibly strided) view of ``msg.data`` when no byte swap is needed.

    Raises:
        ConversionError: unsupported encoding, ``step < width * bytes_per_pixel``, or data length not
            ``step * height``.
    """
    enc = msg.encoding
    if enc not in IMAGE_ENCODINGS:
        raise ConversionError(f'unsupported image encoding {enc!r}; supported: {sorted(IMAGE_ENCODINGS)}')
    code, channels = IMAGE_ENCODINGS[enc]
    dtype = np.dtype(('>' if msg.is_bigendian else '<') + code) if code[1] != '1' else np.dtype(code)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    pixel = dtype.itemsize * channels
    if height > 0 and step < width * pixel:
        raise ConversionError(f'image step={step} < width * bytes_per_pixel = {width} * {pixel} ({enc})')
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size != step * height:
        raise ConversionError(f'image data has {buf.size} bytes, expected step * height = {step} * {height} = '
                              f'{step * height} ({enc} {width}x{height})')
    shape = (height, width, channels) if channels > 1 else (height, width)
    if height == 0 or width == 0:
        return np.zeros(shape, dtype.newbyteorder('='))
    strides = (step, pixel, dtype.itemsize) if channels > 1 else (step, pixel)
    img = np.ndarray(shape, dtype, buffer=buf, strides=strides)
    if not dtype.isnative:
        return img.astype(dtype.newbyteorder('='))
    return img.copy() if copy else img


def array_to_image(arr: np.ndarray, encoding: str, frame_id: str, stamp=None) -> Image:
    """Build a sensor_msgs/Image from an array.

    Args:
        arr: (H, W, C) or (H, W) array whose dtype and channel count match ``encoding`` (e.g. uint8 (H, W, 3)
            for rgb8/bgr8, uint16 (H, W) for mono16/16UC1, float32 (H, W) for 32FC1); (H, W, 1) is accepted
            for single-channel encodings.
        encoding: one of :data:`IMAGE_ENCODINGS`.
        frame_id: ``header.frame_id``.
        stamp: ``header.stamp`` (see :func:`array_to_cloud`).

    Returns:
        Image in native byte order with unpadded rows (``step = W * C * itemsize``).

    Raises:
        ConversionError: unsupported encoding, or shape/dtype that does not match it.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ConversionError(f'unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}')
    code, channels = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(arr)
    if arr.dtype.newbyteorder('=') != np.dtype(code):
        raise ConversionError(f'{encoding} needs dtype {np.dtype(code)}, got {arr.dtype}')
    if arr.ndim == 3 and channels == 1 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    expected = 'H, W' + (f', {channels}' if channels > 1 else '')
    if arr.ndim != (3 if channels > 1 else 2) or (channels > 1 and arr.shape[2] != channels):
        raise ConversionError(f'{encoding} needs an array of shape ({expected}), got {arr.shape}')
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder('='))
    height, width = arr.shape[:2]
    msg = _new_msg(Image)
    msg.header = _header(frame_id, stamp)
    msg.height = int(height)
    msg.width = int(width)
    msg.encoding = encoding
    msg.is_bigendian = NATIVE_BIGENDIAN
    msg.step = int(width * channels * arr.dtype.itemsize)
    msg.data = _byte_array(arr)
    return msg


# --------------------------------------------------------------------------------------------------------- camera
def camera_info_to_calibration(msg: CameraInfo, T_cam_lidar: np.ndarray | None = None) -> Calibration:
    """Calibration (projection P, image size) from a CameraInfo.

    Args:
        msg: camera info; uses ``p`` (3x4), ``width`` and ``height``. Distortion is ignored (P applies to the
            rectified image).
        T_cam_lidar: optional (4, 4) LiDAR -> camera transform (identity when None; CameraInfo has no extrinsics).

    Returns:
        :class:`~pu_ros.geometry.calibration.Calibration`.

    Raises:
        ConversionError: P all zero (uncalibrated camera), NaN/inf in P, binning or a sub-window ROI (not
            supported), or a bad ``T_cam_lidar``.
    """
    P = np.asarray(msg.p, dtype=np.float64).reshape(-1)
    if P.size != 12:
        raise ConversionError(f'CameraInfo.p must have 12 values, got {P.size}')
    if not np.any(P):
        raise ConversionError('CameraInfo.p is all zero (camera not calibrated)')
    if int(msg.binning_x) > 1 or int(msg.binning_y) > 1:
        raise ConversionError(f'CameraInfo binning {msg.binning_x}x{msg.binning_y} is not supported')
    roi = msg.roi
    if (roi.width or roi.height) and (roi.x_offset, roi.y_offset, roi.width, roi.height) != (
            0, 0, msg.width, msg.height):
        raise ConversionError('CameraInfo with a region of interest (sub-window) is not supported')
    try:
        return Calibration(P=P.reshape(3, 4), T_cam_lidar=np.eye(4) if T_cam_lidar is None else T_cam_lidar,
                           width=int(msg.width), height=int(msg.height))
    except ValueError as exc:
        raise ConversionError(f'bad calibration from CameraInfo: {exc}') from exc


def calibration_to_camera_info(calib: Calibration, frame_id: str, stamp=None) -> CameraInfo:
    """CameraInfo for a Calibration (rectified camera, no distortion).

    Args:
        calib: calibration; ``P`` becomes ``p``, ``P[:, :3]`` becomes ``k``.
        frame_id: ``header.frame_id``.
        stamp: ``header.stamp`` (see :func:`array_to_cloud`).

    Returns:
        CameraInfo with ``r`` identity, ``d`` five zeros, ``distortion_model`` ``'plumb_bob'``.
    """
    msg = CameraInfo()
    msg.header = _header(frame_id, stamp)
    msg.width = int(calib.width)
    msg.height = int(calib.height)
    msg.distortion_model = 'plumb_bob'
    msg.d = array.array('d', [0.0] * 5)
    msg.k = np.ascontiguousarray(calib.P[:, :3], dtype=np.float64).reshape(9)
    msg.r = np.eye(3, dtype=np.float64).reshape(9)
    msg.p = np.ascontiguousarray(calib.P, dtype=np.float64).reshape(12)
    return msg

