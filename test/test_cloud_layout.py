"""pu_ros.ops.cloud_layout: PointField layouts <-> dtypes, bytes -> points, packed rgb (pure numpy, no ROS)."""

import sys

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from pu_ros.ops import cloud_layout as cl
from pu_ros.ops.cloud_layout import ConversionError

SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}


def reference_decode(data, fields, width, height, point_step, row_step, is_bigendian):
    """Slow, obvious twin of bytes_to_points: {name: list of native-order field bytes}, one slice per point."""
    out = {name: [] for name, _, _, _ in fields}
    swap = bool(is_bigendian) != (sys.byteorder == 'big')
    for r in range(height):
        for c in range(width):
            base = r * row_step + c * point_step
            for name, off, dt, _ in fields:
                raw = bytes(data[base + off: base + off + SIZES[dt]])
                out[name].append(raw[::-1] if swap else raw)
    return out


@st.composite
def layouts(draw):
    """Random field lists with gaps and trailing padding, random size, row padding and endianness."""
    n_fields = draw(st.integers(1, 6))
    fields, off = [], 0
    for i in range(n_fields):
        off += draw(st.integers(0, 3))
        dt = draw(st.integers(1, 8))
        fields.append((f'f{i}', off, dt, draw(st.sampled_from([1, 1, 1, 0]))))
        off += SIZES[dt]
    order = draw(st.permutations(range(n_fields)))  # message field order need not be offset order
    fields = [fields[i] for i in order]
    point_step = off + draw(st.integers(0, 5))
    width = draw(st.integers(0, 6))
    height = draw(st.integers(1, 4))
    row_step = width * point_step + draw(st.sampled_from([0, 0, 1, 3, 8]))
    big = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, row_step * height, dtype=np.uint8).tobytes()
    return fields, point_step, width, height, row_step, big, data


@settings(max_examples=150, deadline=None)
@given(layouts())
def test_bytes_to_points_matches_reference(layout):
    fields, point_step, width, height, row_step, big, data = layout
    dtype = cl.fields_to_dtype(fields, point_step, big)
    assert dtype.itemsize == point_step
    pts = cl.bytes_to_points(data, width, height, point_step, row_step, dtype)
    assert pts.shape == (width * height,)
    native = pts.astype(pts.dtype.newbyteorder('='))
    ref = reference_decode(data, fields, width, height, point_step, row_step, big)
    for name, values in ref.items():
        got = [native[name][i].tobytes() for i in range(native.shape[0])]
        assert got == values, name


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_dtype_to_fields_inverts_fields_to_dtype(layout):
    fields, point_step, *_ = layout
    dtype = cl.fields_to_dtype(fields, point_step, False)
    expected = sorted((name, off, dt, 1) for name, off, dt, _ in fields)
    assert sorted(cl.dtype_to_fields(dtype)) == expected


def test_fields_to_dtype_layout_and_byte_order():
    fields = [('x', 0, cl.FLOAT32, 1), ('ring', 4, cl.UINT16, 1), ('tag', 6, cl.UINT8, 1), ('t', 8, cl.FLOAT64, 1)]
    le = cl.fields_to_dtype(fields, 32, is_bigendian=False)
    be = cl.fields_to_dtype(fields, 32, is_bigendian=True)
    assert le.itemsize == be.itemsize == 32
    assert le.fields['t'][1] == 8 and le.fields['ring'][0] == np.dtype('<u2')
    assert be.fields['x'][0] == np.dtype('>f4') and be.fields['tag'][0] == np.dtype('u1')


class _Field:
    def __init__(self, name, offset, datatype, count):
        self.name, self.offset, self.datatype, self.count = name, offset, datatype, count


def test_fields_accepts_pointfield_like_objects_and_count_zero_as_one():
    dtype = cl.fields_to_dtype([_Field('x', 0, cl.FLOAT32, 0), _Field('y', 4, cl.FLOAT32, 1)], 8)
    assert dtype.names == ('x', 'y') and dtype.fields['y'][0] == np.float32


@pytest.mark.parametrize(
    'fields, point_step, match',
    [
        ([('x', 0, cl.FLOAT32, 3)], 12, "'x'.*count=3"),
        ([('x', 0, 9, 1)], 8, "'x'.*unknown PointField datatype 9"),
        ([('x', 0, 0, 1)], 8, 'unknown PointField datatype 0'),
        ([('x', 0, cl.FLOAT32, 1), ('y', 2, cl.FLOAT32, 1)], 8, "'x' and 'y' overlap"),
        ([('x', 0, cl.FLOAT64, 1), ('y', 4, cl.UINT8, 1)], 16, 'overlap'),
        ([('x', 0, cl.FLOAT32, 1), ('y', 4, cl.FLOAT32, 1)], 6, "'y'.*past point_step=6"),
        ([('x', 0, cl.FLOAT32, 1), ('x', 4, cl.FLOAT32, 1)], 8, "duplicate PointField name 'x'"),
        ([('', 0, cl.FLOAT32, 1)], 4, 'empty name'),
        ([('x', -4, cl.FLOAT32, 1)], 4, 'negative offset'),
        ([('x', 0, cl.FLOAT32, -1)], 4, 'negative count'),
        ([('x', 0)], 4, 'field tuple'),
        ([object()], 4, 'PointField-like'),
        ([], -1, 'point_step'),
    ],
)
def test_fields_to_dtype_refuses_bad_layouts(fields, point_step, match):
    with pytest.raises(ConversionError, match=match):
        cl.fields_to_dtype(fields, point_step)


def test_conversion_error_is_a_value_error():
    assert issubclass(ConversionError, ValueError)


def test_bytes_to_points_is_zero_copy_without_row_padding():
    src = np.arange(24, dtype=np.float32)
    data = bytearray(src.tobytes())
    dtype = cl.fields_to_dtype([('x', 0, cl.FLOAT32), ('y', 4, cl.FLOAT32), ('z', 8, cl.FLOAT32)], 16)
    pts = cl.bytes_to_points(data, 3, 2, 16, 48, dtype)
    assert np.shares_memory(pts, np.frombuffer(data, np.uint8))
    assert pts['z'].tolist() == [2.0, 6.0, 10.0, 14.0, 18.0, 22.0]
    pts['x'][0] = 99.0  # writeable view over a writeable buffer
    assert np.frombuffer(data, np.float32)[0] == 99.0


def test_bytes_to_points_skips_row_padding():
    rows = np.arange(12, dtype=np.float32).reshape(2, 6)  # 2 rows of 2 points (x, y) + 8 bytes of padding
    rows[:, 4:] = -1.0
    dtype = cl.fields_to_dtype([('x', 0, cl.FLOAT32), ('y', 4, cl.FLOAT32)], 8)
    pts = cl.bytes_to_points(rows.tobytes(), 2, 2, 8, 24, dtype)
    assert pts['x'].tolist() == [0.0, 2.0, 6.0, 8.0]
    assert pts['y'].tolist() == [1.0, 3.0, 7.0, 9.0]


def test_bytes_to_points_reads_array_array_and_memoryview():
    import array

    src = np.array([1.5, -2.0], dtype='<f4')
    dtype = cl.fields_to_dtype([('x', 0, cl.FLOAT32)], 4)
    for data in (array.array('B', src.tobytes()), memoryview(src.tobytes()), src.tobytes()):
        assert cl.bytes_to_points(data, 2, 1, 4, 8, dtype)['x'].tolist() == [1.5, -2.0]


def test_bytes_to_points_empty_cloud():
    dtype = cl.fields_to_dtype([('x', 0, cl.FLOAT32)], 4)
    pts = cl.bytes_to_points(b'', 0, 1, 4, 0, dtype)
    assert pts.shape == (0,) and pts.dtype == dtype
    assert cl.bytes_to_points(b'', 0, 0, 4, 0, dtype).shape == (0,)


@pytest.mark.parametrize(
    'nbytes, width, height, point_step, row_step, match',
    [
        (15, 4, 1, 4, 16, r'15 bytes, expected row_step \* height = 16'),
        (17, 4, 1, 4, 16, '17 bytes'),
        (16, 4, 1, 4, 12, r'row_step=12 < width \* point_step'),
        (16, 4, 1, 2, 8, 'smaller than the fields need'),
        (0, 4, 1, 0, 0, 'point_step is 0'),
        (16, -1, 1, 4, 16, 'negative size'),
        (4, 0, 1, 4, 0, '4 bytes, expected'),
    ],
)
def test_bytes_to_points_refuses_bad_sizes(nbytes, width, height, point_step, row_step, match):
    dtype = cl.fields_to_dtype([('x', 0, cl.FLOAT32)], 4)
    with pytest.raises(ConversionError, match=match):
        cl.bytes_to_points(bytes(nbytes), width, height, point_step, row_step, dtype)


def test_bytes_to_points_refuses_non_contiguous_buffer():
    dtype = cl.fields_to_dtype([('x', 0, cl.UINT8)], 1)
    with pytest.raises(ConversionError, match='contiguous'):
        cl.bytes_to_points(np.zeros(8, np.uint8)[::2], 4, 1, 1, 4, dtype)


@pytest.mark.parametrize(
    'dtype, match',
    [
        (np.dtype('f4'), 'structured'),
        (np.dtype([('x', 'f4', (3,))]), "'x'.*sub-array"),
        (np.dtype([('x', 'i8')]), "'x'.*int64"),
        (np.dtype([('flag', '?')]), "'flag'"),
        (np.dtype([('s', 'S4')]), "'s'"),
    ],
)
def test_dtype_to_fields_refuses_unsupported(dtype, match):
    with pytest.raises(ConversionError, match=match):
        cl.dtype_to_fields(dtype)


def test_dtype_to_fields_all_datatypes():
    types = ['i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'f4', 'f8']
    dtype = cl.packed_dtype([(f'c{i}', t) for i, t in enumerate(types)])
    fields = cl.dtype_to_fields(dtype)
    assert [f[2] for f in fields] == [cl.INT8, cl.UINT8, cl.INT16, cl.UINT16, cl.INT32, cl.UINT32, cl.FLOAT32,
                                      cl.FLOAT64]
    assert [f[1] for f in fields] == [0, 1, 2, 4, 6, 10, 14, 18] and dtype.itemsize == 26


def test_packed_and_xyzi_label_dtypes():
    d = cl.packed_dtype({'a': '>f4', 'b': np.uint8})
    assert d.isnative and d.itemsize == 5
    full = cl.xyzi_label_dtype()
    assert full.names == ('x', 'y', 'z', 'intensity', 'label', 'rgb') and full.itemsize == 24
    assert full.fields['label'][0] == np.uint32 and full.fields['rgb'][1] == 20
    assert cl.xyzi_label_dtype(label=False, rgb=False).itemsize == 16
    assert cl.xyzi_label_dtype(rgb=False, label_field='raw_label').names[-1] == 'raw_label'


def test_make_structured():
    x = np.arange(5, dtype=np.float32)
    lab = np.arange(5, dtype=np.uint32) * 2
    s = cl.make_structured({'x': x, 'label': lab})
    assert s.dtype.names == ('x', 'label') and s.dtype.itemsize == 8
    assert s['label'].tolist() == [0, 2, 4, 6, 8]
    s2 = cl.make_structured({'x': x, 'label': lab}, dtype=cl.packed_dtype([('label', 'u2'), ('x', 'f8')]))
    assert s2['x'].dtype == np.float64 and s2['label'].tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(ConversionError, match='different lengths'):
        cl.make_structured({'x': x, 'y': x[:3]})
    with pytest.raises(ConversionError, match="'x' must be 1-D"):
        cl.make_structured({'x': x.reshape(5, 1)})
    with pytest.raises(ConversionError, match='do not match'):
        cl.make_structured({'x': x}, dtype=cl.packed_dtype([('y', 'f4')]))
    with pytest.raises(ConversionError, match='at least one'):
        cl.make_structured({})


def test_points_to_bytes_array_makes_native_contiguous():
    be = np.zeros(4, dtype=cl.fields_to_dtype([('x', 0, cl.FLOAT32), ('i', 6, cl.UINT16)], 8, is_bigendian=True))
    be['x'] = [1, 2, 3, 4]
    out = cl.points_to_bytes_array(be[::-1])
    assert out.dtype.isnative and out.flags.c_contiguous and out.dtype.itemsize == 8
    assert out['x'].tolist() == [4, 3, 2, 1]
    same = np.zeros(3, cl.xyzi_label_dtype())
    assert cl.points_to_bytes_array(same) is same


def test_pack_rgb_bit_pattern():
    packed = cl.pack_rgb(np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3]], np.uint8))
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == [0xFF0000, 0x00FF00, 0x0000FF, 0x010203]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 200), st.integers(0, 2**32 - 1))
def test_pack_unpack_rgb_round_trip(n, seed):
    colors = np.random.default_rng(seed).integers(0, 256, (n, 3), dtype=np.uint8)
    assert np.array_equal(cl.unpack_rgb(cl.pack_rgb(colors)), colors)
    assert np.array_equal(cl.unpack_rgb(cl.pack_rgb(colors.astype(np.int64))), colors)


def test_unpack_rgba_uint32_ignores_alpha():
    assert cl.unpack_rgb(np.array([0xFF102030], np.uint32)).tolist() == [[0x10, 0x20, 0x30]]
    assert cl.unpack_rgb(np.array([0x00102030], '>u4')).tolist() == [[0x10, 0x20, 0x30]]


def test_rgb_bad_inputs():
    with pytest.raises(ConversionError, match=r'\(N, 3\)'):
        cl.pack_rgb(np.zeros((4, 4), np.uint8))
    with pytest.raises(ConversionError, match='0..255'):
        cl.pack_rgb(np.array([[256, 0, 0]]))
    with pytest.raises(ConversionError, match='uint8'):
        cl.pack_rgb(np.zeros((2, 3), np.float32))
    with pytest.raises(ConversionError, match='rgb must be'):
        cl.unpack_rgb(np.zeros(3, np.float64))


def test_rosbags_messages_use_the_same_layout_code():
    """The bag writer/reader hand rosbags' own PointField/PointCloud2 classes (data: uint8 ndarray) to this module."""
    typesys = pytest.importorskip('rosbags.typesys')
    ts = typesys.get_typestore(typesys.Stores.ROS2_KILTED)
    PointField = ts.types['sensor_msgs/msg/PointField']
    pts = np.arange(12, dtype=np.float32).reshape(3, 4)
    labels = np.array([7, 8, 9], np.uint32)
    arr = cl.make_structured({'x': pts[:, 0], 'y': pts[:, 1], 'z': pts[:, 2], 'intensity': pts[:, 3],
                              'label': labels}, dtype=cl.xyzi_label_dtype(rgb=False))
    fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in cl.dtype_to_fields(arr.dtype)]
    data = cl.points_to_bytes_array(arr).view(np.uint8)  # rosbags keeps uint8[] as a numpy array
    back = cl.bytes_to_points(data, 3, 1, arr.dtype.itemsize, 3 * arr.dtype.itemsize,
                              cl.fields_to_dtype(fields, arr.dtype.itemsize, is_bigendian=False))
    assert back['label'].tolist() == [7, 8, 9] and back['intensity'].tolist() == [3, 7, 11]
    assert np.shares_memory(back, data)
