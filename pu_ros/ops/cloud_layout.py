"""Byte layout of point clouds: PointField lists <-> numpy structured dtypes, raw bytes <-> structured arrays.

Pure numpy (no rclpy), so the ROS message conversions (``pu_ros.ros.conversions``) and the rosbag writer (which
uses the ``rosbags`` library's own message classes) share one implementation.

A PointCloud2 describes each point by a list of fields ``(name, offset, datatype, count)`` and a ``point_step``
(bytes per point, padding allowed). Here such a list becomes a numpy structured dtype with explicit offsets and
``itemsize == point_step``, so the message bytes can be viewed as an array without copying.

Decisions:
- ``count > 1`` (array-valued fields) is refused with a :class:`ConversionError` naming the field: no consumer in
  this package needs them and a silent partial read would be worse.
- ``count == 0`` is read as ``count == 1``. Some drivers publish 0 for scalar fields; the ROS message definition
  says nothing about 0, and treating it as "no data" would make such clouds unusable.
- Overlapping fields, fields that end past ``point_step``, duplicate or empty names and unknown datatypes are all
  refused (:class:`ConversionError`, a ``ValueError``).
- ``len(data)`` must equal ``row_step * height`` exactly, and ``row_step >= width * point_step``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import sys

import numpy as np

# sensor_msgs/PointField datatype constants.
INT8 = 1
UINT8 = 2
INT16 = 3
UINT16 = 4
INT32 = 5
UINT32 = 6
FLOAT32 = 7
FLOAT64 = 8

#: PointField datatype -> numpy type code without byte order.
DATATYPE_TO_CODE = {INT8: 'i1', UINT8: 'u1', INT16: 'i2', UINT16: 'u2', INT32: 'i4', UINT32: 'u4', FLOAT32: 'f4',
                    FLOAT64: 'f8'}
#: (numpy kind, itemsize) -> PointField datatype.
_KIND_SIZE_TO_DATATYPE = {('i', 1): INT8, ('u', 1): UINT8, ('i', 2): INT16, ('u', 2): UINT16, ('i', 4): INT32,
                          ('u', 4): UINT32, ('f', 4): FLOAT32, ('f', 8): FLOAT64}
#: PointField datatype -> size in bytes.
DATATYPE_SIZE = {dt: int(code[1]) for dt, code in DATATYPE_TO_CODE.items()}

NATIVE_BIGENDIAN = sys.byteorder == 'big'


class ConversionError(ValueError):
    """A message or array cannot be converted: bad layout, wrong sizes, unsupported type or encoding."""


def _field_tuple(field) -> tuple[str, int, int, int]:
    """(name, offset, datatype, count) of a PointField-like object or a 3/4-tuple."""
    if isinstance(field, tuple | list):
        if len(field) == 3:
            name, offset, datatype = field
            count = 1
        elif len(field) == 4:
            name, offset, datatype, count = field
        else:
            raise ConversionError(f'a field tuple must be (name, offset, datatype[, count]), got {field!r}')
    else:
        try:
            name, offset, datatype, count = field.name, field.offset, field.datatype, field.count
        except AttributeError as exc:
            raise ConversionError(f'not a PointField-like object: {field!r}') from exc
    return str(name), int(offset), int(datatype), int(count)


def fields_to_dtype(fields: Iterable, point_step: int, is_bigendian: bool = False) -> np.dtype:
    """Build the structured dtype that views one point of a PointCloud2.

    Args:
        fields: sequence of PointField-like objects (attributes ``name``, ``offset``, ``datatype``, ``count``) or
            tuples ``(name, offset, datatype[, count])``.
        point_step: bytes per point; becomes the dtype's ``itemsize`` (bytes not covered by a field are padding).
        is_bigendian: byte order of the multi-byte fields.

    Returns:
        A structured ``np.dtype`` with the fields at their offsets, ``itemsize == point_step``, in the given byte
        order (not necessarily native).

    Raises:
        ConversionError: count > 1, unknown datatype, negative offset, a field past ``point_step``, overlapping
            fields, duplicate or empty names, or a negative ``point_step``.
    """
    point_step = int(point_step)
    if point_step < 0:
        raise ConversionError(f'point_step must be >= 0, got {point_step}')
    order = '>' if is_bigendian else '<'
    names, formats, offsets = [], [], []
    spans = []
    for field in fields:
        name, offset, datatype, count = _field_tuple(field)
        if not name:
            raise ConversionError('a PointField has an empty name')
        if name in names:
            raise ConversionError(f'duplicate PointField name {name!r}')
        if datatype not in DATATYPE_TO_CODE:
            raise ConversionError(f'field {name!r} has unknown PointField datatype {datatype} (expected 1..8)')
        if count > 1:
            raise ConversionError(f'field {name!r} has count={count}; array-valued fields (count > 1) are not '
                                  'supported')
        if count < 0:
            raise ConversionError(f'field {name!r} has negative count {count}')
        size = DATATYPE_SIZE[datatype]
        if offset < 0:
            raise ConversionError(f'field {name!r} has negative offset {offset}')
        if offset + size > point_step:
            raise ConversionError(f'field {name!r} (offset {offset}, {size} bytes) ends past point_step={point_step}')
        names.append(name)
        formats.append((order if size > 1 else '|') + DATATYPE_TO_CODE[datatype])
        offsets.append(offset)
        spans.append((offset, offset + size, name))
    spans.sort()
    for (_, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:]):
        if start_b < end_a:
            raise ConversionError(f'fields {name_a!r} and {name_b!r} overlap')
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets, 'itemsize': point_step})


def dtype_to_fields(dtype) -> list[tuple[str, int, int, int]]:
    """List the PointFields of a structured dtype.

    Args:
        dtype: structured dtype whose fields are scalar int8/uint8/int16/uint16/int32/uint32/float32/float64
            (any byte order; the caller decides the message's ``is_bigendian``).

    Returns:
        ``[(name, offset, datatype, count)]`` in offset order, ``count`` always 1.

    Raises:
        ConversionError: not a structured dtype, a sub-array / nested field, or an unsupported field type
            (e.g. int64, bool, strings).
    """
    dtype = np.dtype(dtype)
    if dtype.names is None:
        raise ConversionError(f'expected a structured dtype, got {dtype}')
    out = []
    for name in dtype.names:
        fdtype, offset = dtype.fields[name][:2]
        if fdtype.subdtype is not None:
            raise ConversionError(f'field {name!r} is a sub-array {fdtype}; count > 1 is not supported')
        datatype = _KIND_SIZE_TO_DATATYPE.get((fdtype.kind, fdtype.itemsize))
        if datatype is None:
            raise ConversionError(f'field {name!r} has type {fdtype}, which has no PointField datatype '
                                  '(use int8/16/32, uint8/16/32, float32 or float64)')
        out.append((name, int(offset), datatype, 1))
    out.sort(key=lambda f: f[1])
    return out


def packed_dtype(names_and_types: Iterable[tuple[str, object]] | Mapping[str, object]) -> np.dtype:
    """A packed (no padding), native-byte-order structured dtype.

    Args:
        names_and_types: ``[(name, type)]`` or ``{name: type}``; types are anything ``np.dtype`` accepts.

    Returns:
        Structured dtype with fields in the given order at consecutive offsets.
    """
    items = list(names_and_types.items()) if isinstance(names_and_types, Mapping) else list(names_and_types)
    return np.dtype([(str(name), np.dtype(t).newbyteorder('=')) for name, t in items])


def xyzi_label_dtype(label: bool = True, rgb: bool = True, label_field: str = 'label') -> np.dtype:
    """The packed dtype of a published labeled cloud: x, y, z, intensity float32 [, label uint32] [, rgb float32].

    Args:
        label: include the uint32 label field.
        rgb: include the packed-colour float32 ``rgb`` field (see :func:`pack_rgb`).
        label_field: name of the label field (e.g. ``'label'`` or ``'raw_label'``).

    Returns:
        Packed native-order structured dtype (16, 20 or 24 bytes per point).
    """
    cols = [('x', np.float32), ('y', np.float32), ('z', np.float32), ('intensity', np.float32)]
    if label:
        cols.append((label_field, np.uint32))
    if rgb:
        cols.append(('rgb', np.float32))
    return packed_dtype(cols)


def make_structured(columns: Mapping[str, np.ndarray], dtype=None) -> np.ndarray:
    """Assemble 1-D columns of equal length into a packed structured array.

    Args:
        columns: ``{name: (N,) array}``, in field order.
        dtype: optional structured dtype to fill (must contain exactly these names); by default a packed dtype
            built from the columns' own dtypes.

    Returns:
        Structured array of shape (N,).

    Raises:
        ConversionError: a column is not 1-D, the lengths differ, or ``dtype`` names do not match.
    """
    cols = {str(k): np.asarray(v) for k, v in columns.items()}
    if not cols:
        raise ConversionError('make_structured needs at least one column')
    for name, col in cols.items():
        if col.ndim != 1:
            raise ConversionError(f'column {name!r} must be 1-D, got shape {col.shape}')
    lengths = {col.shape[0] for col in cols.values()}
    if len(lengths) != 1:
        raise ConversionError(f'columns have different lengths: { {k: v.shape[0] for k, v in cols.items()} }')
    if dtype is None:
        dtype = packed_dtype([(k, v.dtype) for k, v in cols.items()])
    else:
        dtype = np.dtype(dtype)
        if dtype.names is None or set(dtype.names) != set(cols):
            raise ConversionError(f'dtype fields {dtype.names} do not match columns {tuple(cols)}')
    out = np.empty(lengths.pop(), dtype=dtype)
    for name, col in cols.items():
        out[name] = col
    return out


def bytes_to_points(data, width: int, height: int, point_step: int, row_step: int, dtype) -> np.ndarray:
    """View the raw bytes of a point cloud as a flat structured array.

    Args:
        data: bytes-like (``bytes``, ``bytearray``, ``array.array('B')``, ``memoryview``, uint8 ndarray) of exactly
            ``row_step * height`` bytes.
        width: points per row.
        height: rows (1 for unorganized clouds).
        point_step: bytes from one point to the next within a row.
        row_step: bytes from one row to the next (``>= width * point_step``; larger means row padding).
        dtype: structured dtype of one point with ``itemsize <= point_step`` (see :func:`fields_to_dtype`).

    Returns:
        Structured array of shape (height * width,), rows flattened row-major, in ``dtype``'s byte order.
        Zero-copy (a view sharing memory with ``data``; writeable when ``data`` is) unless rows are padded,
        in which case it is a compact copy.

    Raises:
        ConversionError: negative sizes, ``dtype`` larger than ``point_step``, ``row_step < width * point_step``,
            or ``len(data) != row_step * height``.
    """
    width, height, point_step, row_step = int(width), int(height), int(point_step), int(row_step)
    dtype = np.dtype(dtype)
    if min(width, height, point_step, row_step) < 0:
        raise ConversionError(f'negative size: width={width} height={height} point_step={point_step} '
                              f'row_step={row_step}')
    if point_step == 0 and width * height > 0:
        raise ConversionError(f'point_step is 0 for a cloud of {width}x{height} points')
    if dtype.itemsize > point_step and width * height > 0:
        raise ConversionError(f'point_step={point_step} is smaller than the fields need ({dtype.itemsize} bytes)')
    if height > 0 and row_step < width * point_step:
        raise ConversionError(f'row_step={row_step} < width * point_step = {width} * {point_step}')
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        raise ConversionError(f'data is not a contiguous bytes-like object: {type(data).__name__} ({exc})') from exc
    expected = row_step * height
    if buf.size != expected:
        raise ConversionError(f'data has {buf.size} bytes, expected row_step * height = {row_step} * {height} = '
                              f'{expected}')
    n = width * height
    if n == 0:
        return np.empty(0, dtype=dtype)
    if dtype.itemsize == point_step and row_step == width * point_step:
        return buf.view(dtype)  # contiguous: a plain view
    view = np.ndarray(shape=(height, width), dtype=dtype, buffer=buf, strides=(row_step, point_step))
    return view.reshape(n)  # a view when rows are not padded (height == 1 included), else one compact copy


def points_to_bytes_array(arr: np.ndarray) -> np.ndarray:
    """Native-order, C-contiguous version of a structured point array (no copy when it already is one).

    Args:
        arr: structured array of any shape.

    Returns:
        Structured array with native byte order (padding and offsets kept), C-contiguous, same shape.
    """
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder('='))
    return np.ascontiguousarray(arr)


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """Pack 8-bit colours into the float32 ``rgb`` field RViz and PCL read.

    Args:
        colors: (N, 3) uint8 (or integer in 0..255) R, G, B.

    Returns:
        (N,) float32 whose bit pattern is ``0x00RRGGBB`` (a reinterpretation, not a numeric conversion).

    Raises:
        ConversionError: wrong shape or values outside 0..255.
    """
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise ConversionError(f'colors must have shape (N, 3), got {colors.shape}')
    if colors.dtype != np.uint8:
        if not np.issubdtype(colors.dtype, np.integer):
            raise ConversionError(f'colors must be uint8 (or integers in 0..255), got {colors.dtype}')
        if colors.size and (colors.min() < 0 or colors.max() > 255):
            raise ConversionError('colors must be in 0..255')
    c = colors.astype(np.uint32)
    packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    return packed.view(np.float32)


def unpack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Unpack a packed ``rgb`` (float32 bit pattern) or ``rgba`` (uint32) field into colours.

    Args:
        rgb: (N,) float32 or uint32/int32 with bits ``0xAARRGGBB`` (alpha ignored).

    Returns:
        (N, 3) uint8 R, G, B.

    Raises:
        ConversionError: not 1-D or not a 4-byte type.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 1 or rgb.dtype.itemsize != 4 or rgb.dtype.kind not in 'fiu':
        raise ConversionError(f'rgb must be (N,) float32 or uint32, got {rgb.dtype} {rgb.shape}')
    bits = np.ascontiguousarray(rgb.astype(rgb.dtype.newbyteorder('='), copy=False)).view(np.uint32)
    out = np.empty((bits.shape[0], 3), dtype=np.uint8)
    out[:, 0] = (bits >> 16) & 0xFF
    out[:, 1] = (bits >> 8) & 0xFF
    out[:, 2] = bits & 0xFF
    return out


__all__ = [
    'INT8', 'UINT8', 'INT16', 'UINT16', 'INT32', 'UINT32', 'FLOAT32', 'FLOAT64', 'DATATYPE_SIZE',
    'DATATYPE_TO_CODE', 'NATIVE_BIGENDIAN', 'ConversionError', 'bytes_to_points', 'dtype_to_fields',
    'fields_to_dtype', 'make_structured', 'pack_rgb', 'packed_dtype',
    'points_to_bytes_array', 'unpack_rgb', 'xyzi_label_dtype',
]
