"""pu_ros.ros.conversions: PointCloud2 / Image / CameraInfo <-> numpy through real sensor_msgs messages."""

import array
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

pytestmark = pytest.mark.ros

sensor_msgs = pytest.importorskip('sensor_msgs.msg', reason='ROS 2 message packages are not importable')
serialization = pytest.importorskip('rclpy.serialization')

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402

from pu_ros.geometry.calibration import Calibration  # noqa: E402
from pu_ros.ops import cloud_layout as cl  # noqa: E402
from pu_ros.ros import conversions as cv  # noqa: E402
from pu_ros.ros.conversions import ConversionError  # noqa: E402

SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}
NUMPY_TYPES = ['i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'f4', 'f8']


def roundtrip(msg):
    """Serialize to CDR and back, as a message crossing a process boundary does."""
    return serialization.deserialize_message(serialization.serialize_message(msg), type(msg))


def make_cloud(fields, data, width, height, point_step, row_step, is_bigendian=False):
    """A PointCloud2 built by hand from raw bytes (the way another node / driver would)."""
    msg = PointCloud2()
    msg.header.frame_id = 'test'
    msg.width, msg.height = width, height
    msg.point_step, msg.row_step = point_step, row_step
    msg.is_bigendian = is_bigendian
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]
    msg.data = bytes(data)
    return msg


def xyzi_cloud(points, dtype='<f4', names=('x', 'y', 'z', 'intensity')):
    """Cloud of packed fields of one type from an (N, k) array."""
    pts = np.ascontiguousarray(points, dtype=dtype)
    size = np.dtype(dtype).itemsize
    datatype = {('f', 4): 7, ('f', 8): 8, ('u', 2): 4}[(np.dtype(dtype).kind, size)]
    fields = [(n, i * size, datatype, 1) for i, n in enumerate(names)]
    step = size * len(names)
    return make_cloud(fields, pts.tobytes(), pts.shape[0], 1, step, step * pts.shape[0], dtype.startswith('>'))


# ------------------------------------------------------------------------------------------------ cloud round trips
@st.composite
def structured_arrays(draw):
    """Random structured arrays with gaps/trailing padding, random bytes, organized or not."""
    n_fields = draw(st.integers(1, 5))
    names, formats, offsets, off = [], [], [], 0
    for i in range(n_fields):
        off += draw(st.integers(0, 3))
        t = np.dtype(draw(st.sampled_from(NUMPY_TYPES))).newbyteorder(draw(st.sampled_from(['<', '>'])))
        names.append(f'f{i}')
        formats.append(t)
        offsets.append(off)
        off += t.itemsize
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': off + draw(st.integers(0, 4))})
    height, width = draw(st.integers(1, 4)), draw(st.integers(0, 7))
    seed = draw(st.integers(0, 2**32 - 1))
    raw = np.random.default_rng(seed).integers(0, 256, height * width * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(height, width)


def field_bytes(arr, name):
    """Native-order bytes of one field of a structured array (bit-exact, NaN-safe comparison)."""
    col = np.ascontiguousarray(arr[name]).reshape(-1)
    return col.astype(col.dtype.newbyteorder('=')).tobytes()


@settings(max_examples=80, deadline=None)
@given(structured_arrays(), st.integers(0, 2**40))
def test_array_cloud_round_trip_through_cdr(arr, stamp_ns):
    msg = cv.array_to_cloud(arr, 'velo_link', stamp=stamp_ns)
    assert (msg.height, msg.width) == arr.shape
    assert isinstance(msg.data, array.array) and msg.data.typecode == 'B'
    back = roundtrip(msg)
    assert cv.stamp_to_ns(back.header.stamp) == stamp_ns and back.header.frame_id == 'velo_link'
    out = cv.cloud_to_array(back)
    assert out.shape == (arr.size,) and out.dtype.isnative
    assert out.dtype.names == arr.dtype.names
    for name in arr.dtype.names:
        assert field_bytes(out, name) == field_bytes(arr, name), name


@st.composite
def raw_clouds(draw):
    """Hand-made messages: random layout, endianness, row padding, random bytes."""
    n_fields = draw(st.integers(1, 5))
    fields, off = [], 0
    for i in range(n_fields):
        off += draw(st.integers(0, 3))
        dt = draw(st.integers(1, 8))
        fields.append((f'f{i}', off, dt, 1))
        off += SIZES[dt]
    fields = draw(st.permutations(fields))
    point_step = off + draw(st.integers(0, 4))
    width, height = draw(st.integers(0, 6)), draw(st.integers(1, 3))
    row_step = width * point_step + draw(st.sampled_from([0, 0, 2, 5]))
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, row_step * height, dtype=np.uint8).tobytes()
    return fields, data, width, height, point_step, row_step, draw(st.booleans())


@settings(max_examples=80, deadline=None)
@given(raw_clouds())
def test_cloud_to_array_matches_slow_reference(cloud):
    fields, data, width, height, point_step, row_step, big = cloud
    msg = roundtrip(make_cloud(fields, data, width, height, point_step, row_step, big))
    out = cv.cloud_to_array(msg)
    assert out.dtype.isnative and out.shape == (width * height,)
    swap = big != (sys.byteorder == 'big')
    for name, off, dt, _ in fields:
        expected = b''
        for r in range(height):
            for c in range(width):
                raw = data[r * row_step + c * point_step + off:][: SIZES[dt]]
                expected += raw[::-1] if swap else raw
        assert out[name].tobytes() == expected, name


def test_organized_cloud_flattens_row_major():
    grid = np.zeros((3, 4), dtype=cl.packed_dtype([('x', 'f4'), ('y', 'f4'), ('z', 'f4')]))
    grid['x'] = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = roundtrip(cv.array_to_cloud(grid, 'f'))
    assert (msg.height, msg.width, msg.row_step) == (3, 4, 48)
    assert cv.cloud_to_array(msg)['x'].tolist() == list(range(12))
    flat = cv.array_to_cloud(grid.reshape(-1), 'f', height=3)
    assert (flat.height, flat.width) == (3, 4)
    with pytest.raises(ConversionError, match='height=5'):
        cv.array_to_cloud(grid.reshape(-1), 'f', height=5)


def test_big_endian_cloud_reads_native():
    pts = np.array([[1.0, -2.0, 3.5, 7.0], [4.0, 5.0, 6.0, 8.0]])
    msg = xyzi_cloud(pts, dtype='>f4')
    out = cv.cloud_to_array(msg)
    assert out.dtype.isnative and out['y'].tolist() == [-2.0, 5.0]
    assert np.array_equal(cv.cloud_to_xyzi(msg), pts.astype(np.float32))


def test_cloud_to_array_view_copy_and_field_selection():
    pts = np.arange(20, dtype=np.float32).reshape(5, 4)
    msg = cv.xyzi_to_cloud(pts, 'velo')
    view = cv.cloud_to_array(msg)
    data = np.frombuffer(msg.data, np.uint8)
    assert np.shares_memory(view, data)
    copied = cv.cloud_to_array(msg, copy=True)
    assert not np.shares_memory(copied, data) and copied.tobytes() == view.tobytes()
    sel = cv.cloud_to_array(msg, fields=['intensity', 'x'])
    assert sel.dtype.names == ('intensity', 'x') and sel['intensity'].tolist() == [3, 7, 11, 15, 19]
    sel_copy = cv.cloud_to_array(msg, fields=['z'], copy=True)
    assert not np.shares_memory(sel_copy, data) and sel_copy['z'].tolist() == [2, 6, 10, 14, 18]
    with pytest.raises(ConversionError, match=r"no field\(s\) \['ring'\]"):
        cv.cloud_to_array(msg, fields=['x', 'ring'])


def test_is_dense_is_computed_from_xyz_only():
    dtype = cl.packed_dtype([('x', 'f4'), ('y', 'f4'), ('z', 'f4'), ('label', 'u4')])
    arr = np.zeros(4, dtype)
    arr['label'] = 0x7FC00000  # a NaN bit pattern in a non-xyz field must not matter
    assert cv.array_to_cloud(arr, 'f').is_dense
    arr['z'][2] = np.inf
    assert not cv.array_to_cloud(arr, 'f').is_dense
    assert cv.array_to_cloud(arr, 'f', is_dense=True).is_dense  # an explicit value wins
    ints = np.zeros(3, cl.packed_dtype([('x', 'i2'), ('y', 'i2'), ('z', 'f8')]))
    assert cv.array_to_cloud(ints, 'f').is_dense
    ints['z'][0] = np.nan
    assert not cv.array_to_cloud(ints, 'f').is_dense
    assert cv.array_to_cloud(np.zeros(3, [('a', 'f4')]), 'f').is_dense


# ------------------------------------------------------------------------------------------------ bad clouds
def test_empty_cloud_is_valid():
    msg = roundtrip(cv.xyzi_to_cloud(np.zeros((0, 4), np.float32), 'velo', labels=np.zeros(0, np.uint32),
                                     colors=np.zeros((0, 3), np.uint8), is_dense=None))
    assert msg.width == 0 and len(msg.data) == 0 and msg.is_dense
    assert cv.cloud_to_array(msg).shape == (0,)
    assert cv.cloud_to_xyzi(msg).shape == (0, 4)
    hand = make_cloud([('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1)], b'', 0, 1, 12, 0)
    assert cv.cloud_to_xyzi(hand).shape == (0, 4)
    assert cv.cloud_to_array(hand, skip_nans=True).shape == (0,)


def test_nan_and_inf_points_are_skipped():
    pts = np.array([[1, 2, 3, 0.5], [np.nan, 0, 0, 1], [0, np.inf, 0, 1], [0, 0, -np.inf, 1], [4, 5, 6, np.nan]],
                   np.float32)
    msg = roundtrip(cv.xyzi_to_cloud(pts, 'velo', is_dense=None))
    assert not msg.is_dense
    assert cv.cloud_to_xyzi(msg).shape == (5, 4)  # filtering happens on request only
    kept = cv.cloud_to_xyzi(msg, skip_nans=True)
    assert kept.shape == (2, 4) and kept[0].tolist() == [1, 2, 3, 0.5]
    assert kept[1, :3].tolist() == [4, 5, 6] and np.isnan(kept[1, 3])  # NaN intensity is not a reason to drop
    assert cv.cloud_to_xyzi(msg, skip_nans=False).shape == (5, 4)
    arr = cv.cloud_to_array(msg, skip_nans=True)
    assert arr['x'].tolist() == [1, 4]
    sel = cv.cloud_to_array(msg, fields=['intensity'], skip_nans=True)
    assert sel.dtype.names == ('intensity',) and sel.shape == (2,)
    f64 = xyzi_cloud(pts, dtype='<f8')  # generic (non-float32) path
    assert cv.cloud_to_xyzi(f64, skip_nans=True).shape == (2, 4)
    assert cv.cloud_to_xyzi(cv.xyzi_to_cloud(pts[[0, 4]], 'v'), skip_nans=True).shape == (2, 4)
    assert cv.xyzi_to_cloud(pts[[0, 4]], 'v', is_dense=None).is_dense
    assert not cv.xyzi_to_cloud(pts[[0, 4]], 'v').is_dense  # the default promises nothing


def test_missing_fields():
    no_z = xyzi_cloud(np.ones((3, 3)), names=('x', 'y', 'intensity'))
    with pytest.raises(ConversionError, match=r"no \['z'\] field"):
        cv.cloud_to_xyzi(no_z)
    with pytest.raises(ConversionError, match='skip_nans needs fields x, y, z'):
        cv.cloud_to_array(no_z, skip_nans=True)
    assert cv.cloud_to_array(no_z)['intensity'].tolist() == [1, 1, 1]


@pytest.mark.parametrize('name', ['intensity', 'i', 'remission'])
def test_intensity_field_names(name):
    msg = xyzi_cloud(np.array([[1, 2, 3, 0.25]]), names=('x', 'y', 'z', name))
    assert cv.cloud_to_xyzi(msg).tolist() == [[1, 2, 3, 0.25]]


def test_no_intensity_gives_zeros_and_other_types_are_cast():
    msg = xyzi_cloud(np.array([[1, 2, 3], [4, 5, 6]]), names=('x', 'y', 'z'))
    assert cv.cloud_to_xyzi(msg).tolist() == [[1, 2, 3, 0], [4, 5, 6, 0]]
    mixed = cl.packed_dtype([('intensity', 'u2'), ('x', 'f8'), ('y', 'f8'), ('z', 'f8'), ('ring', 'u1')])
    arr = np.zeros(2, mixed)
    arr['x'], arr['intensity'] = [1.5, 2.5], [100, 200]
    out = cv.cloud_to_xyzi(roundtrip(cv.array_to_cloud(arr, 'v')))
    assert out.dtype == np.float32 and out[:, 0].tolist() == [1.5, 2.5] and out[:, 3].tolist() == [100, 200]


@pytest.mark.parametrize(
    'fields, nbytes, width, point_step, row_step, match',
    [
        ([('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1)], 80, 10, 8, 80, "'z'.*past point_step=8"),
        ([('x', 0, 7, 1)], 40, 10, 4, 40, None),
        ([('x', 0, 7, 1)], 39, 10, 4, 40, '39 bytes'),
        ([('x', 0, 7, 1)], 44, 10, 4, 40, '44 bytes'),
        ([('x', 0, 7, 1)], 40, 10, 4, 36, 'row_step=36'),
        ([('x', 0, 7, 3)], 120, 10, 12, 120, "'x' has count=3"),
        ([('x', 0, 11, 1)], 40, 10, 4, 40, 'unknown PointField datatype 11'),
        ([('x', 0, 7, 1), ('y', 2, 7, 1)], 80, 10, 8, 80, 'overlap'),
    ],
)
def test_bad_cloud_layouts(fields, nbytes, width, point_step, row_step, match):
    msg = roundtrip(make_cloud(fields, bytes(nbytes), width, 1, point_step, row_step))
    if match is None:
        assert cv.cloud_to_array(msg).shape == (width,)
        return
    with pytest.raises(ConversionError, match=match):
        cv.cloud_to_array(msg)
    with pytest.raises(ValueError):
        cv.cloud_to_xyzi(msg)


def test_array_to_cloud_refuses_bad_arrays():
    with pytest.raises(ConversionError, match='structured'):
        cv.array_to_cloud(np.zeros((3, 4), np.float32), 'f')
    with pytest.raises(ConversionError, match="'x'.*int64"):
        cv.array_to_cloud(np.zeros(3, [('x', 'i8')]), 'f')
    with pytest.raises(ConversionError, match='sub-array'):
        cv.array_to_cloud(np.zeros(3, [('xyz', 'f4', (3,))]), 'f')
    with pytest.raises(ConversionError, match='1-D or 2-D'):
        cv.array_to_cloud(np.zeros((2, 2, 2), [('x', 'f4')]), 'f')


# ------------------------------------------------------------------------------------------------ labeled output cloud
def test_xyzi_to_cloud_labels_and_rgb():
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((50, 4)).astype(np.float32)
    labels = rng.integers(0, 20, 50)
    colors = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    msg = roundtrip(cv.xyzi_to_cloud(pts, 'velo_link', stamp=Time(sec=5, nanosec=7), labels=labels, colors=colors,
                                     is_dense=None))
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'intensity', 'label', 'rgb']
    assert [f.datatype for f in msg.fields] == [7, 7, 7, 7, 6, 7]
    assert msg.point_step == 24 and msg.is_dense and msg.header.stamp.sec == 5 and msg.header.stamp.nanosec == 7
    arr = cv.cloud_to_array(msg)
    assert arr['label'].tolist() == labels.tolist()
    assert np.array_equal(cl.unpack_rgb(arr['rgb']), colors)
    assert np.array_equal(cv.cloud_to_xyzi(msg), pts)
    raw = cv.xyzi_to_cloud(pts, 'v', labels=labels.astype(np.uint16), label_field='raw_label')
    assert [f.name for f in raw.fields][-1] == 'raw_label' and raw.point_step == 20
    only_rgb = cv.cloud_to_array(cv.xyzi_to_cloud(pts, 'v', colors=colors))
    assert only_rgb.dtype.names[-1] == 'rgb' and np.array_equal(cl.unpack_rgb(only_rgb['rgb']), colors)


def test_xyzi_to_cloud_accepts_xyz_and_float64():
    xyz = np.array([[1.0, 2.0, 3.0]])
    assert cv.cloud_to_xyzi(cv.xyzi_to_cloud(xyz, 'v')).tolist() == [[1, 2, 3, 0]]
    assert cv.cloud_to_xyzi(cv.xyzi_to_cloud(np.array([[1.0, 2, 3, 4]]), 'v')).tolist() == [[1, 2, 3, 4]]


@pytest.mark.parametrize(
    'kwargs, match',
    [
        ({'points': np.zeros((3, 5), np.float32)}, r'\(N, 4\)'),
        ({'points': np.zeros(4, np.float32)}, r'\(N, 4\)'),
        ({'labels': np.zeros(2, np.uint32)}, r'labels must have shape \(3,\)'),
        ({'labels': np.array([0, -1, 2])}, '0..2'),
        ({'labels': np.array([0, 2**33, 2])}, '0..2'),
        ({'labels': np.zeros(3, np.float32)}, 'integers'),
        ({'colors': np.zeros((3, 4), np.uint8)}, r'colors must have shape \(3, 3\)'),
        ({'colors': np.full((3, 3), 300)}, '0..255'),
    ],
)
def test_xyzi_to_cloud_bad_inputs(kwargs, match):
    args = {'points': np.zeros((3, 4), np.float32), **kwargs}
    with pytest.raises(ConversionError, match=match):
        cv.xyzi_to_cloud(args.pop('points'), 'v', **args)


def test_real_scan_round_trip_bit_identical(seq00):
    scan = np.fromfile(seq00 / 'velodyne' / '000000.bin', dtype=np.float32).reshape(-1, 4)
    msg = roundtrip(cv.xyzi_to_cloud(scan, 'velo_link', stamp=0))
    out = cv.cloud_to_xyzi(msg)
    assert out.shape == scan.shape and msg.width == scan.shape[0]
    assert np.array_equal(out.view(np.uint32), scan.view(np.uint32))
    labels = np.arange(scan.shape[0], dtype=np.uint32) % 20
    labeled = roundtrip(cv.xyzi_to_cloud(scan, 'velo_link', labels=labels))
    assert np.array_equal(cv.cloud_to_array(labeled)['label'], labels)
    assert np.array_equal(cv.cloud_to_xyzi(labeled).view(np.uint32), scan.view(np.uint32))


# ------------------------------------------------------------------------------------------------ images
IMAGE_CASES = [(enc, code, ch) for enc, (code, ch) in cv.IMAGE_ENCODINGS.items()]


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(IMAGE_CASES), st.integers(0, 9), st.integers(0, 7), st.sampled_from([0, 0, 1, 3, 16]),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_image_with_row_padding_reads_like_reference(case, h, w, pad, big, seed):
    enc, code, ch = case
    item = np.dtype(code).itemsize
    step = w * ch * item + pad
    data = np.random.default_rng(seed).integers(0, 256, step * h, dtype=np.uint8).tobytes()
    msg = Image(height=h, width=w, encoding=enc, is_bigendian=big, step=step)
    msg.data = data
    img = cv.image_to_array(roundtrip(msg))
    assert img.shape == ((h, w, ch) if ch > 1 else (h, w)) and img.dtype.isnative
    order = '>' if big and item > 1 else '<' if item > 1 else '|'
    rows = [np.frombuffer(data[r * step: r * step + w * ch * item], order + code) for r in range(h)]
    expected = np.array(rows, dtype=order + code).reshape(img.shape)
    assert img.tobytes() == expected.astype(expected.dtype.newbyteorder('=')).tobytes()


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(IMAGE_CASES), st.integers(0, 9), st.integers(0, 9), st.integers(0, 2**32 - 1))
def test_image_round_trip(case, h, w, seed):
    enc, code, ch = case
    shape = (h, w, ch) if ch > 1 else (h, w)
    raw = np.random.default_rng(seed).integers(0, 256, int(np.prod(shape)) * np.dtype(code).itemsize, np.uint8)
    arr = raw.view(code).reshape(shape)
    msg = roundtrip(cv.array_to_image(arr, enc, 'camera_color_left', stamp=10**9 + 5))
    assert msg.encoding == enc and msg.step == w * ch * np.dtype(code).itemsize
    assert msg.header.stamp.sec == 1 and msg.header.stamp.nanosec == 5
    out = cv.image_to_array(msg)
    assert out.shape == shape and out.tobytes() == arr.tobytes()


def test_image_view_and_copy():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    msg = cv.array_to_image(arr, 'bgr8', 'cam')
    data = np.frombuffer(msg.data, np.uint8)
    assert np.shares_memory(cv.image_to_array(msg), data)
    assert not np.shares_memory(cv.image_to_array(msg, copy=True), data)
    assert cv.image_to_array(msg)[1, 2].tolist() == [18, 19, 20]  # channel order kept as encoded


def test_mono16_big_endian():
    msg = Image(height=1, width=2, encoding='mono16', is_bigendian=True, step=4)
    msg.data = bytes([0x01, 0x02, 0xAB, 0xCD])
    assert cv.image_to_array(msg).tolist() == [[0x0102, 0xABCD]]
    msg.is_bigendian = False
    assert cv.image_to_array(msg).tolist() == [[0x0201, 0xCDAB]]


def test_array_to_image_single_channel_shapes():
    assert cv.array_to_image(np.zeros((2, 3, 1), np.uint8), 'mono8', 'c').step == 3
    assert cv.array_to_image(np.zeros((2, 3), '>u2'), '16UC1', 'c').step == 6
    msg = cv.array_to_image(np.full((2, 3), 1.5, np.float32), '32FC1', 'c')
    assert cv.image_to_array(msg).tolist() == [[1.5] * 3] * 2


@pytest.mark.parametrize(
    'kwargs, match',
    [
        ({'encoding': 'yuv422'}, "unsupported image encoding 'yuv422'"),
        ({'encoding': 'bayer_rggb8'}, 'unsupported'),
        ({'step': 8}, r'step=8 < width \* bytes_per_pixel = 4 \* 3'),
        ({'data': bytes(35)}, '35 bytes, expected step'),
        ({'data': bytes(37)}, '37 bytes'),
    ],
)
def test_bad_images(kwargs, match):
    fields = {'height': 3, 'width': 4, 'encoding': 'rgb8', 'step': 12, 'data': bytes(36), **kwargs}
    data = fields.pop('data')
    msg = Image(**fields)
    msg.data = data
    with pytest.raises(ConversionError, match=match):
        cv.image_to_array(roundtrip(msg))


@pytest.mark.parametrize(
    'arr, encoding, match',
    [
        (np.zeros((2, 2, 3), np.uint8), 'hsv8', 'unsupported'),
        (np.zeros((2, 2, 3), np.float32), 'rgb8', 'rgb8 needs dtype uint8'),
        (np.zeros((2, 2), np.uint8), 'rgb8', r'shape \(H, W, 3\)'),
        (np.zeros((2, 2, 4), np.uint8), 'bgr8', r'shape \(H, W, 3\)'),
        (np.zeros((2, 2, 2), np.uint16), 'mono16', r'shape \(H, W\)'),
        (np.zeros((2, 2), np.uint8), 'mono16', 'uint16'),
    ],
)
def test_array_to_image_refuses_mismatches(arr, encoding, match):
    with pytest.raises(ConversionError, match=match):
        cv.array_to_image(arr, encoding, 'cam')


# ------------------------------------------------------------------------------------------------ camera info, stamps
def kitti_calibration():
    P = np.array([[718.856, 0.0, 607.1928, 45.38225], [0.0, 718.856, 185.2157, -0.1130887],
                  [0.0, 0.0, 1.0, 0.003779761]])
    T = np.eye(4)
    T[:3, 3] = [0.1, -0.2, 0.3]
    return Calibration(P=P, T_cam_lidar=T, width=1241, height=376)


def test_calibration_camera_info_round_trip():
    calib = kitti_calibration()
    msg = roundtrip(cv.calibration_to_camera_info(calib, 'camera_color_left', stamp=42))
    assert (msg.width, msg.height, msg.distortion_model) == (1241, 376, 'plumb_bob')
    assert np.array_equal(np.reshape(msg.k, (3, 3)), calib.P[:, :3])
    assert np.array_equal(np.reshape(msg.r, (3, 3)), np.eye(3)) and list(msg.d) == [0.0] * 5
    back = cv.camera_info_to_calibration(msg, T_cam_lidar=calib.T_cam_lidar)
    assert np.array_equal(back.P, calib.P) and np.array_equal(back.T_cam_lidar, calib.T_cam_lidar)
    assert (back.width, back.height) == (1241, 376)
    assert np.array_equal(cv.camera_info_to_calibration(msg).T_cam_lidar, np.eye(4))


def test_bad_camera_info():
    with pytest.raises(ConversionError, match='all zero'):
        cv.camera_info_to_calibration(CameraInfo(width=10, height=10))
    msg = cv.calibration_to_camera_info(kitti_calibration(), 'c')
    msg.binning_x = 2
    with pytest.raises(ConversionError, match='binning'):
        cv.camera_info_to_calibration(msg)
    msg = cv.calibration_to_camera_info(kitti_calibration(), 'c')
    msg.roi.width, msg.roi.height = 100, 50
    with pytest.raises(ConversionError, match='region of interest'):
        cv.camera_info_to_calibration(msg)
    msg = cv.calibration_to_camera_info(kitti_calibration(), 'c')
    msg.p[3] = np.nan
    with pytest.raises(ConversionError, match='NaN'):
        cv.camera_info_to_calibration(msg)
    good = cv.calibration_to_camera_info(kitti_calibration(), 'c')
    with pytest.raises(ConversionError, match='homogeneous'):
        cv.camera_info_to_calibration(good, T_cam_lidar=np.ones((4, 4)))


@pytest.mark.parametrize('ns', [0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789, -1, -1_500_000_000])
def test_stamps_round_trip(ns):
    stamp = cv.ns_to_stamp(ns)
    assert 0 <= stamp.nanosec < 10**9
    assert cv.stamp_to_ns(stamp) == ns
    assert cv.stamp_to_ns(roundtrip(cv.array_to_cloud(np.zeros(1, [('x', 'f4')]), 'f', stamp=ns)).header.stamp) == ns


def test_stamp_helpers_errors_and_rclpy_time():
    from rclpy.time import Time as RclpyTime

    with pytest.raises(ConversionError, match='int32'):
        cv.ns_to_stamp(2**31 * 10**9)
    with pytest.raises(ConversionError, match='time stamp'):
        cv.stamp_to_ns('yesterday')
    t = RclpyTime(nanoseconds=3_000_000_017)
    assert cv.stamp_to_ns(t) == 3_000_000_017
    msg = cv.array_to_image(np.zeros((1, 1), np.uint8), 'mono8', 'c', stamp=t)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 17)


# ------------------------------------------------------------------------------------------------ sensor_msgs_py
def test_interop_with_sensor_msgs_py():
    pc2 = pytest.importorskip('sensor_msgs_py.point_cloud2', reason='sensor_msgs_py is not installed (no wheel)')
    rng = np.random.default_rng(1)
    pts = rng.standard_normal((40, 4)).astype(np.float32)
    labels = rng.integers(0, 20, 40).astype(np.uint32)
    plain = roundtrip(cv.xyzi_to_cloud(pts, 'velo'))
    assert np.array_equal(pc2.read_points_numpy(plain), pts)  # older versions need one datatype in the cloud
    ours = roundtrip(cv.xyzi_to_cloud(pts, 'velo', labels=labels,
                                      colors=rng.integers(0, 256, (40, 3), dtype=np.uint8)))
    theirs = pc2.read_points(ours, field_names=['x', 'y', 'z', 'intensity', 'label'])
    assert np.asarray(theirs['label']).reshape(-1).tolist() == labels.tolist()
    assert np.array_equal(np.asarray(theirs['intensity']).reshape(-1), pts[:, 3])
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate(['x', 'y', 'z', 'intensity'])]
    made = roundtrip(pc2.create_cloud(ours.header, fields, pts.tolist()))
    assert np.array_equal(cv.cloud_to_xyzi(made), pts)
    made_xyz = roundtrip(pc2.create_cloud_xyz32(ours.header, pts[:, :3].tolist()))
    assert np.array_equal(cv.cloud_to_xyzi(made_xyz), np.c_[pts[:, :3], np.zeros(40, np.float32)])
