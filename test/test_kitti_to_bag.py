"""``pu-ros kitti-to-bag``: round trips through rosbag2 (MCAP and sqlite3), stamps, tf, failures leave nothing."""

from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from pu_ros.cli import main
from pu_ros.data import bag as bagio
from pu_ros.data.kitti import open_kitti, read_calib_file
from pu_ros.data.kitti_to_bag import DEFAULT_EPOCH_OFFSET_S, camera_frame_calibration, convert

sys.path.insert(0, str(Path(__file__).parent))
from test_kitti import synthetic_scan, toy_calibration, write_odometry, write_raw  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OFFSET_NS = DEFAULT_EPOCH_OFFSET_S * 1_000_000_000


def _messages(path):
    return [(t, ty, ts, bagio.deserialize(raw, ty)) for t, ty, ts, raw in bagio.read_bag(path)]


def _by_topic(msgs, topic):
    return [(ts, m) for t, _, ts, m in msgs if t == topic]


def _png(path):
    from PIL import Image

    return np.asarray(Image.open(path))


def _projection_from_bag(msgs, info):
    """P' @ T' rebuilt from the bag: camera_info.P and the /tf_static transform (velo_link -> camera)."""
    tf = _by_topic(msgs, '/tf_static')[0][1].transforms[0]
    T_lidar_cam = bagio.transform_to_matrix(tf.transform)
    return np.asarray(info.p).reshape(3, 4) @ np.linalg.inv(T_lidar_cam)


# ---------------------------------------------------------------------------------------------- real seq 00


@pytest.fixture(scope='module')
def seq00_bag(seq00, tmp_path_factory):
    out = tmp_path_factory.mktemp('bags') / 'seq00'
    summary = convert(seq00, out, progress=False)
    return out, summary, _messages(out)


@pytest.mark.data
def test_seq00_topics_counts_qos(seq00_bag):
    out, summary, _ = seq00_bag
    assert summary['clouds'] == 10 and summary['labelled_clouds'] == 3 and summary['images'] == 1
    info = bagio.bag_info(out)
    assert info['storage'] == 'mcap' and (out / 'seq00.mcap').is_file()
    topics = info['topics']
    assert topics['/kitti/velo/pointcloud'] == {'type': 'sensor_msgs/msg/PointCloud2', 'count': 10, 'qos': []}
    assert topics['/kitti/camera_color_left/image_raw']['count'] == 1
    assert topics['/kitti/camera_color_left/camera_info']['type'] == 'sensor_msgs/msg/CameraInfo'
    assert topics['/tf_static']['count'] == 1
    assert topics['/tf_static']['qos'][0]['durability'] == 'transient_local'
    assert info['message_count'] == 13
    assert 'raw SemanticKITTI class id' in info['custom_data']['pu_ros.label_field']
    assert not list(out.parent.glob('.seq00.partial-*'))  # staging folder removed


@pytest.mark.data
def test_seq00_points_and_labels_bit_identical(seq00, seq00_bag):
    _, _, msgs = seq00_bag
    clouds = _by_topic(msgs, '/kitti/velo/pointcloud')
    for i, (_, msg) in enumerate(clouds):
        assert msg.header.frame_id == 'velo_link' and msg.height == 1 and msg.is_dense
        arr = bagio.pointcloud2_to_array(msg)
        raw = np.fromfile(seq00 / 'velodyne' / f'{i:06d}.bin', dtype='<u4').reshape(-1, 4)  # bit patterns
        got = np.stack([arr[n].view(np.uint32) for n in ('x', 'y', 'z', 'intensity')], axis=1)
        np.testing.assert_array_equal(got, raw)
        names = [f.name for f in msg.fields]
        if i < 3:
            assert names == ['x', 'y', 'z', 'intensity', 'label'] and msg.point_step == 20
            assert msg.fields[4].datatype == 6  # UINT32
            labels = np.fromfile(seq00 / 'labels' / f'{i:06d}.label', dtype='<u4')
            np.testing.assert_array_equal(arr['label'], labels & 0xFFFF)
        else:  # frames without ground truth have no label field at all
            assert names == ['x', 'y', 'z', 'intensity'] and msg.point_step == 16


@pytest.mark.data
def test_seq00_image_camera_info_and_tf(seq00, seq00_bag):
    _, _, msgs = seq00_bag
    [(_, img)] = _by_topic(msgs, '/kitti/camera_color_left/image_raw')
    assert img.encoding == 'rgb8' and img.header.frame_id == 'camera_color_left'
    np.testing.assert_array_equal(bagio.image_to_array(img), _png(seq00 / 'image_2' / '000000.png'))
    [(_, info)] = _by_topic(msgs, '/kitti/camera_color_left/camera_info')
    assert (info.width, info.height) == (1241, 376) and info.header.frame_id == 'camera_color_left'
    raw = read_calib_file(seq00 / 'calib.txt')
    P2 = raw['P2'].reshape(3, 4)
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), P2[:, :3])
    assert np.asarray(info.p).reshape(3, 4)[:, 3].tolist() == [0.0, 0.0, 0.0]  # monocular ROS convention
    tf = _by_topic(msgs, '/tf_static')[0][1].transforms[0]
    assert tf.header.frame_id == 'velo_link' and tf.child_frame_id == 'camera_color_left'
    # camera_info.P and the tf rebuild the KITTI projection P2 . Tr
    Tr = np.eye(4)
    Tr[:3] = raw['Tr'].reshape(3, 4)
    M = _projection_from_bag(msgs, info)
    np.testing.assert_allclose(M, P2 @ Tr, rtol=1e-6, atol=1e-3)
    pts = open_kitti(seq00)[0].points[:, :3].astype(np.float64)
    hom_bag = pts @ M[:, :3].T + M[:, 3]
    hom_ref = pts @ (P2 @ Tr)[:, :3].T + (P2 @ Tr)[:, 3]
    front = hom_ref[:, 2] > 1.0
    np.testing.assert_allclose(hom_bag[front, :2] / hom_bag[front, 2:], hom_ref[front, :2] / hom_ref[front, 2:],
                               atol=0.01)  # pixels


@pytest.mark.data
def test_seq00_stamps(seq00, seq00_bag):
    _, summary, msgs = seq00_bag
    assert msgs[0][0] == '/tf_static' and msgs[0][2] == min(m[2] for m in msgs)
    for _, _, ts, msg in msgs:  # header stamps == bag timestamps
        stamp = msg.transforms[0].header.stamp if hasattr(msg, 'transforms') else msg.header.stamp
        assert bagio.stamp_to_ns(stamp) == ts
    times = np.loadtxt(seq00 / 'times.txt')[:10]
    cloud_ts = np.array([ts for ts, _ in _by_topic(msgs, '/kitti/velo/pointcloud')])
    np.testing.assert_array_equal(cloud_ts - OFFSET_NS, np.round(times * 1e9).astype(np.int64))
    assert summary['stamp_offset_ns'] == OFFSET_NS
    assert [ts for ts, _ in _by_topic(msgs, '/kitti/camera_color_left/image_raw')] == [cloud_ts[0]]


@pytest.mark.data
def test_seq00_sqlite3_grey_subset(seq00, tmp_path, capsys):
    out = tmp_path / 'grey'
    rc = main(['kitti-to-bag', str(seq00), '-o', str(out), '--storage', 'sqlite3', '--camera', 'image_0',
               '--start', '2', '--count', '4', '--no-labels', '--quiet'])
    assert rc == 0
    assert capsys.readouterr().out == ''
    info = bagio.bag_info(out)
    assert info['storage'] == 'sqlite3' and list(out.glob('*.db3'))
    assert info['topics']['/kitti/velo/pointcloud']['count'] == 4
    assert '/kitti/camera_color_left/image_raw' not in info['topics']
    msgs = _messages(out)
    clouds = _by_topic(msgs, '/kitti/velo/pointcloud')
    for k, (_, msg) in enumerate(clouds):
        assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'intensity']  # --no-labels
        arr = bagio.pointcloud2_to_array(msg)
        expected = np.fromfile(seq00 / 'velodyne' / f'{k + 2:06d}.bin', dtype='<f4').reshape(-1, 4)
        np.testing.assert_array_equal(arr['x'], expected[:, 0])
    images = _by_topic(msgs, '/kitti/camera_gray_left/image_raw')
    assert len(images) == 3  # image_0 exists for 000000-000004: frames 2, 3, 4
    for k, (_, img) in enumerate(images):
        assert img.encoding == 'mono8' and img.header.frame_id == 'camera_gray_left'
        np.testing.assert_array_equal(bagio.image_to_array(img), _png(seq00 / 'image_0' / f'{k + 2:06d}.png'))
    [info_msg] = [m for _, m in _by_topic(msgs, '/kitti/camera_gray_left/camera_info')][:1]
    P0 = read_calib_file(seq00 / 'calib.txt')['P0'].reshape(3, 4)
    np.testing.assert_allclose(np.asarray(info_msg.p).reshape(3, 4), P0, atol=1e-9)  # P0 has no baseline column


@pytest.mark.data
def test_object_layout_writes_tf_per_calibration(shared_data, tmp_path):
    out = tmp_path / 'obj'
    summary = convert(shared_data / 'kitti_object' / 'training', out, progress=False)
    assert summary['layout'] == 'object' and summary['clouds'] == 2 and summary['images'] == 2
    msgs = _messages(out)
    assert len(_by_topic(msgs, '/tf_static')) == 2  # each object frame has its own calibration
    infos = [m for _, m in _by_topic(msgs, '/kitti/camera_color_left/camera_info')]
    assert [(i.width, i.height) for i in infos] == [(1224, 370), (1242, 375)]
    clouds = [ts for ts, _ in _by_topic(msgs, '/kitti/velo/pointcloud')]
    assert clouds == [OFFSET_NS, OFFSET_NS + 100_000_000]


# ---------------------------------------------------------------------------------------------- fixtures (no data)


def test_synthetic_odometry_round_trip(tmp_path):
    scans = [synthetic_scan(300 + i, i) for i in range(3)]
    labels = {1: (np.arange(301, dtype=np.uint32) % 3 * 10 + 40) | (np.uint32(9) << 16)}
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    seq = write_odometry(tmp_path / 'seq', scans, labels=labels, times=[0.0, 0.1, 0.2, 0.3],
                         images={'image_2': {0: rgb, 2: rgb[::-1].copy()}})
    out = tmp_path / 'bag'
    summary = convert(seq, out, progress=False, epoch_offset_s=100)
    assert summary['labelled_clouds'] == 1 and summary['images'] == 2
    msgs = _messages(out)
    clouds = [m for _, m in _by_topic(msgs, '/kitti/velo/pointcloud')]
    for i, msg in enumerate(clouds):
        arr = bagio.pointcloud2_to_array(msg)
        np.testing.assert_array_equal(np.stack([arr[n] for n in ('x', 'y', 'z', 'intensity')], 1), scans[i])
        assert ('label' in arr.dtype.names) == (i == 1)
    np.testing.assert_array_equal(bagio.pointcloud2_to_array(clouds[1])['label'], labels[1] & 0xFFFF)
    imgs = _by_topic(msgs, '/kitti/camera_color_left/image_raw')
    assert [ts for ts, _ in imgs] == [100_000_000_000, 100_200_000_000]
    np.testing.assert_array_equal(bagio.image_to_array(imgs[1][1]), rgb[::-1])
    # projection from the bag equals the calibration written to calib.txt
    _, P2, T = toy_calibration()
    info = _by_topic(msgs, '/kitti/camera_color_left/camera_info')[0][1]
    np.testing.assert_allclose(_projection_from_bag(msgs, info), P2 @ T, rtol=1e-9, atol=1e-9)


def test_raw_fixture_to_bag_keeps_absolute_and_camera_stamps(tmp_path):
    P0, P2, T = toy_calibration()
    scans = [synthetic_scan(100, i) for i in range(3)]
    rgb = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    drive, scan_ns, image_ns = write_raw(tmp_path / 'raw', scans, {0: P0, 2: P2}, np.eye(3), T,
                                         images={2: {0: rgb, 1: rgb, 2: rgb}}, image_size=(40, 30))
    out = tmp_path / 'rawbag'
    summary = convert(drive, out, storage='sqlite3', progress=False)
    assert summary['stamp_offset_ns'] == 0 and summary['layout'] == 'raw'
    msgs = _messages(out)
    np.testing.assert_array_equal([ts for ts, _ in _by_topic(msgs, '/kitti/velo/pointcloud')], scan_ns)
    np.testing.assert_array_equal([ts for ts, _ in _by_topic(msgs, '/kitti/camera_color_left/image_raw')],
                                  image_ns[2])
    assert [ts for _, _, ts, _ in msgs] == sorted(ts for _, _, ts, _ in msgs)  # written in time order
    assert msgs[0][0] == '/tf_static' and msgs[0][2] == image_ns[2][0]


def test_camera_frame_calibration_keeps_projection():
    _, P2, T = toy_calibration()
    P_cam, T_cam = camera_frame_calibration(P2, T)
    np.testing.assert_allclose(P_cam @ T_cam, P2 @ T, atol=1e-9)
    assert np.all(P_cam[:, 3] == 0)
    np.testing.assert_allclose(T_cam[:3, :3], T[:3, :3])


def test_quaternion_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.normal(size=4)
        R = bagio.quaternion_to_rotation(q)
        np.testing.assert_allclose(bagio.quaternion_to_rotation(bagio.rotation_to_quaternion(R)), R, atol=1e-12)


# ---------------------------------------------------------------------------------------------- failures


@pytest.fixture
def small_seq(tmp_path):
    return write_odometry(tmp_path / 'in' / 'seq', [synthetic_scan(100, i) for i in range(4)])


def test_existing_output_refused_then_overwritten(small_seq, tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('x')
    assert main(['kitti-to-bag', str(small_seq), '-o', str(out), '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'exists already' in err and err.count('\n') == 1
    assert (out / 'keep.txt').read_text() == 'x'
    assert main(['kitti-to-bag', str(small_seq), '-o', str(out), '--overwrite']) == 0
    assert 'wrote' in capsys.readouterr().out
    assert not (out / 'keep.txt').exists() and bagio.bag_info(out)['topics']['/kitti/velo/pointcloud']['count'] == 4


def test_truncated_scan_leaves_no_output(small_seq, tmp_path, capsys):
    bad = small_seq / 'velodyne' / '000002.bin'
    bad.write_bytes(bad.read_bytes()[:-3])
    out = tmp_path / 'out'
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(['kitti-to-bag', str(small_seq), '-o', str(out), '--quiet']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('pu-ros kitti-to-bag: error:') and 'multiple of 16' in err and '\n' not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no staging folder left behind


def test_truncated_scan_keeps_old_output_with_overwrite(small_seq, tmp_path):
    out = tmp_path / 'out'
    convert(small_seq, out, progress=False)
    old = bagio.bag_info(out)
    bad = small_seq / 'velodyne' / '000003.bin'
    bad.write_bytes(b'\x00' * 5)
    assert main(['kitti-to-bag', str(small_seq), '-o', str(out), '--overwrite', '--quiet']) == 2
    assert bagio.bag_info(out) == old  # the previous bag survives a failed overwrite


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['--start', '9'], 'outside the 4 frames'),
        (['--count', '0'], 'at least 1'),
        (['--camera', 'image_2'], 'no images for camera image_2'),
    ],
)
def test_bad_arguments(small_seq, tmp_path, capsys, args, message):
    out = tmp_path / 'out'
    assert main(['kitti-to-bag', str(small_seq), '-o', str(out), '--quiet', *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_input_subprocess(tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, '-m', 'pu_ros.cli', 'kitti-to-bag', str(tmp_path / 'missing'), '-o', str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('pu-ros kitti-to-bag: error:') and 'does not exist' in lines[0]
    assert not out.exists()


def test_bag_helpers_reject_bad_paths(tmp_path):
    with pytest.raises(bagio.BagError, match='does not exist'):
        bagio.bag_info(tmp_path / 'missing')
    with pytest.raises(bagio.BagError, match='does not exist'):
        list(bagio.read_bag(tmp_path / 'missing'))
    (tmp_path / 'notabag').mkdir()
    with pytest.raises(bagio.BagError, match='cannot open bag'):
        bagio.bag_info(tmp_path / 'notabag')
    with pytest.raises(bagio.BagError, match='folder .* does not exist'):
        bagio.BagWriter(tmp_path / 'no' / 'such' / 'bag')
    with pytest.raises(bagio.BagError, match='unknown storage'):
        bagio.BagWriter(tmp_path / 'bag', storage='rosbag1')


@pytest.mark.ros
def test_cdr_readable_by_rclpy(tmp_path):
    """The bytes in the bag deserialize with the real ROS 2 message classes (rclpy + sensor_msgs wheels)."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    scans = [synthetic_scan(64, 5)]
    rgb = np.random.default_rng(2).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    seq = write_odometry(tmp_path / 'seq', scans, labels={0: np.full(64, 252, dtype=np.uint32)},
                         images={'image_2': {0: rgb}})
    out = tmp_path / 'bag'
    convert(seq, out, progress=False)
    classes = {'sensor_msgs/msg/PointCloud2': PointCloud2, 'sensor_msgs/msg/Image': Image,
               'sensor_msgs/msg/CameraInfo': CameraInfo}
    seen = set()
    for _, msgtype, ts, raw in bagio.read_bag(out):
        if msgtype not in classes:
            continue
        msg = deserialize_message(raw, classes[msgtype])
        assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == ts
        if msgtype.endswith('PointCloud2'):
            assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'intensity', 'label'] and msg.width == 64
            arr = np.frombuffer(bytes(msg.data), dtype=np.uint8).view(
                np.dtype({'names': ['xyzi', 'label'], 'formats': [('<f4', 4), '<u4'], 'offsets': [0, 16],
                          'itemsize': 20}))
            np.testing.assert_array_equal(arr['xyzi'], scans[0])
            assert np.all(arr['label'] == 252)
        elif msgtype.endswith('Image'):
            assert msg.encoding == 'rgb8' and (msg.height, msg.width, msg.step) == (8, 12, 36)
            np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(8, 12, 3), rgb)
        else:
            assert (msg.width, msg.height) == (12, 8) and msg.distortion_model == 'plumb_bob'
        seen.add(msgtype)
    assert seen == set(classes)
