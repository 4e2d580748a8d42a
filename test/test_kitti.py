"""KITTI readers: odometry/SemanticKITTI and object frames from ../shared/data, raw-layout fixtures, bad inputs.

The fixture builders (``write_odometry``, ``write_raw``, ``synthetic_scan``, ``toy_calibration``) are reused by
test_kitti_to_bag.py.
"""

from datetime import datetime, timezone
from pathlib import Path
import shutil

import numpy as np
import pytest

from pu_ros.data.kitti import (
    Frame,
    KittiFormatError,
    KittiSequence,
    detect_layout,
    open_kitti,
    read_calib_file,
    read_labels,
    read_object_labels,
    read_points,
    read_raw_timestamps,
)
from pu_ros.data.labels import LabelMap

# ---------------------------------------------------------------------------------------------- fixture builders


def toy_calibration():
    """A KITTI-like rig written for these tests: (P0, P2, T_cam_lidar) with a small rectifying rotation inside T."""
    K = np.array([[720.0, 0.0, 610.0], [0.0, 720.0, 180.0], [0.0, 0.0, 1.0]])
    P0 = np.hstack([K, np.zeros((3, 1))])
    P2 = P0.copy()
    P2[:, 3] = K @ np.array([0.06, -0.0002, 0.003])  # colour camera 6 cm to the left of camera 0
    axes = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # LiDAR x fwd, y left, z up -> camera
    T = np.eye(4)
    T[:3, :3] = _rot_y(0.004) @ axes
    T[:3, 3] = [0.01, -0.08, -0.27]
    return P0, P2, T


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def synthetic_scan(n, seed):
    """(n, 4) float32 points around the sensor, half of them in front of the camera."""
    rng = np.random.default_rng(seed)
    pts = np.empty((n, 4), dtype=np.float32)
    pts[:, 0] = rng.uniform(-30, 40, n)
    pts[:, 1] = rng.uniform(-15, 15, n)
    pts[:, 2] = rng.uniform(-2, 1.5, n)
    pts[:, 3] = rng.uniform(0, 1, n)
    return pts


def _fmt(values):
    return ' '.join(repr(float(v)) for v in np.asarray(values, dtype=np.float64).ravel())  # exact round trip


def _write_png(path, pixels):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_odometry(folder, scans, labels=None, P=None, T=None, times=None, images=None):
    """Write an odometry-layout sequence: velodyne/, labels/, calib.txt, times.txt, image_X/ PNGs."""
    folder = Path(folder)
    (folder / 'velodyne').mkdir(parents=True)
    for i, pts in enumerate(scans):
        np.asarray(pts, dtype='<f4').tofile(folder / 'velodyne' / f'{i:06d}.bin')
    for i, lab in (labels or {}).items():
        (folder / 'labels').mkdir(exist_ok=True)
        np.asarray(lab, dtype='<u4').tofile(folder / 'labels' / f'{i:06d}.label')
    P0, P2, T0 = toy_calibration()
    Ps = P if P is not None else {0: P0, 1: P0, 2: P2, 3: P2}
    T = T0 if T is None else T
    lines = [f'P{c}: {_fmt(Ps[c])}' for c in range(4)] + [f'Tr: {_fmt(T[:3])}']
    (folder / 'calib.txt').write_text('\n'.join(lines) + '\n')
    times = np.arange(len(scans) + 5) * 0.1037 if times is None else times
    (folder / 'times.txt').write_text(''.join(f'{t:e}\n' for t in times))
    for cam, frames in (images or {}).items():
        for i, pixels in frames.items():
            _write_png(folder / cam / f'{i:06d}.png', pixels)
    return folder


def ns_to_kitti_string(ns):
    """Unix nanoseconds -> '2011-09-26 13:02:25.964389445' (UTC)."""
    sec, frac = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(sec, tz=timezone.utc).strftime('%Y-%m-%d %H:%M:%S') + f'.{frac:09d}'


RAW_T0_NS = int(datetime(2011, 9, 26, 13, 2, 25, tzinfo=timezone.utc).timestamp()) * 1_000_000_000 + 964389445


def write_raw(root, scans, P_rect, R_rect_00, Rt, images=None, image_size=(1242, 375), with_timestamps=True):
    """Write a KITTI raw drive: root/2011_09_26/{calib_*.txt, 2011_09_26_drive_0001_sync/...}.

    Args:
        root: parent folder.
        scans: list of (N, 4) float32.
        P_rect: {camera number: (3, 4)} rectified projections.
        R_rect_00: (3, 3) rectifying rotation.
        Rt: (4, 4) velo -> unrectified camera 0 transform ([R | T]).
        images: {camera number: {frame index: pixels}}.
        image_size: ``(width, height)`` written as ``S_rect_0X``.
        with_timestamps: write ``velodyne_points/timestamps.txt``.

    Returns:
        (drive folder, scan stamps ns, {camera: image stamps ns}).
    """
    date = Path(root) / '2011_09_26'
    drive = date / '2011_09_26_drive_0001_sync'
    (drive / 'velodyne_points' / 'data').mkdir(parents=True)
    for i, pts in enumerate(scans):
        np.asarray(pts, dtype='<f4').tofile(drive / 'velodyne_points' / 'data' / f'{i:010d}.bin')
    n = len(scans)
    jitter = np.array([0, 7, 12345], dtype=np.int64)[np.arange(n) % 3]  # odd nanoseconds test exact parsing
    scan_ns = RAW_T0_NS + np.arange(n, dtype=np.int64) * 103_643_017 + jitter
    if with_timestamps:
        stamps_txt = ''.join(ns_to_kitti_string(t) + '\n' for t in scan_ns)
        (drive / 'velodyne_points' / 'timestamps.txt').write_text(stamps_txt)
    image_ns = {}
    for cam, frames in (images or {}).items():
        folder = drive / f'image_0{cam}'
        for i, pixels in frames.items():
            _write_png(folder / 'data' / f'{i:010d}.png', pixels)
        image_ns[cam] = scan_ns - 4_000_000 - cam  # cameras fire a few ms before the scan time stamp
        (folder / 'timestamps.txt').write_text(''.join(ns_to_kitti_string(t) + '\n' for t in image_ns[cam]))
    lines = ['calib_time: 09-Jan-2012 13:57:47', 'corner_dist: 9.950000e-02']
    w, h = image_size
    for c in range(4):
        Pc = P_rect.get(c, P_rect[2 if c >= 2 else 0])
        K = Pc[:, :3]
        lines += [
            f'S_0{c}: 1.392000e+03 5.120000e+02',
            f'K_0{c}: {_fmt(K)}',
            f'D_0{c}: -3.7e-01 2.0e-01 2.0e-03 1.4e-03 -7.0e-02',
            f'R_0{c}: {_fmt(np.eye(3))}',
            f'T_0{c}: {_fmt([0.06 * c, 0.0, 0.0])}',
            f'S_rect_0{c}: {w:.6e} {h:.6e}',
            f'R_rect_0{c}: {_fmt(R_rect_00 if c == 0 else np.eye(3))}',
            f'P_rect_0{c}: {_fmt(Pc)}',
        ]
    (date / 'calib_cam_to_cam.txt').write_text('\n'.join(lines) + '\n')
    (date / 'calib_velo_to_cam.txt').write_text(
        f'calib_time: 15-Mar-2012 11:37:16\nR: {_fmt(Rt[:3, :3])}\nT: {_fmt(Rt[:3, 3])}\n'
        'delta_f: 0.000000e+00 0.000000e+00\ndelta_c: 0.000000e+00 0.000000e+00\n'
    )
    return drive, scan_ns, image_ns


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- real data: odometry


@pytest.mark.data
def test_odometry_sequence_real(seq00):
    seq = open_kitti(seq00)
    assert isinstance(seq, KittiSequence)
    assert seq.layout == 'odometry' and len(seq) == 10
    assert seq.frame_ids == [f'{i:06d}' for i in range(10)]
    assert seq.camera == 'image_2' and seq.is_color
    times = np.loadtxt(seq00 / 'times.txt')
    np.testing.assert_allclose(seq.stamps, times[:10], atol=1e-9)
    assert not seq.stamps_absolute
    raw = read_calib_file(seq00 / 'calib.txt')
    np.testing.assert_array_equal(seq.calib.P, raw['P2'].reshape(3, 4))
    np.testing.assert_array_equal(seq.calib.T_cam_lidar[:3], raw['Tr'].reshape(3, 4))
    assert (seq.calib.width, seq.calib.height) == (1241, 376)
    # the data README: pixel = P2 . [Tr; 0 0 0 1] . X
    np.testing.assert_allclose(seq.calib.lidar_to_image, raw['P2'].reshape(3, 4) @ seq.calib.T_cam_lidar)
    assert [seq.has_label(i) for i in range(10)] == [True] * 3 + [False] * 7


@pytest.mark.data
def test_odometry_frame_contents_real(seq00):
    from PIL import Image

    seq = open_kitti(seq00)
    f = seq[0]
    assert isinstance(f, Frame)
    expected = np.fromfile(seq00 / 'velodyne' / '000000.bin', dtype='<f4').reshape(-1, 4)
    assert f.points.dtype == np.float32 and f.points.shape == expected.shape
    np.testing.assert_array_equal(f.points, expected)
    assert f.labels.dtype == np.uint32 and f.labels.shape == (f.points.shape[0],)  # label count == point count
    np.testing.assert_array_equal(f.labels, np.fromfile(seq00 / 'labels' / '000000.label', dtype='<u4'))
    assert f.image_encoding == 'rgb8' and f.image.shape == (376, 1241, 3) and f.image.dtype == np.uint8
    np.testing.assert_array_equal(f.image, np.asarray(Image.open(seq00 / 'image_2' / '000000.png')))
    assert f.stamp == 0.0 and f.frame_id == '000000' and f.calib is seq.calib
    f5 = seq[5]
    assert f5.labels is None and f5.image is None and f5.image_encoding is None and f5.image_stamp_ns is None
    assert seq[-1].frame_id == '000009'
    with pytest.raises(IndexError):
        seq[10]


@pytest.mark.data
def test_odometry_poses_real(seq00):
    seq = open_kitti(seq00)
    p0, p1 = seq[0].pose, seq[1].pose
    assert p0.shape == (4, 4) and p0.dtype == np.float64
    np.testing.assert_allclose(p0, np.eye(4), atol=1e-6)
    # converted to the LiDAR frame: the car drives forward, i.e. along the LiDAR x axis
    assert 0.3 < p1[0, 3] < 2.0 and abs(p1[1, 3]) < 0.2 and abs(p1[2, 3]) < 0.2
    np.testing.assert_allclose(p1[:3, :3] @ p1[:3, :3].T, np.eye(3), atol=1e-4)


@pytest.mark.data
def test_odometry_grey_camera_and_root_folder_real(seq00):
    seq = open_kitti(seq00.parent.parent, camera='image_0')  # .../semantickitti holds a single sequence
    assert seq.path == seq00 and seq.camera == 'image_0' and not seq.is_color
    raw = read_calib_file(seq00 / 'calib.txt')
    np.testing.assert_array_equal(seq.calib.P, raw['P0'].reshape(3, 4))
    f3 = seq[3]
    assert f3.image_encoding == 'mono8' and f3.image.shape == (376, 1241) and f3.image.dtype == np.uint8
    assert seq[7].image is None
    assert open_kitti(seq00, camera='image_02').camera == 'image_2'


@pytest.mark.data
def test_labelled_points_project_into_image_real(seq00):
    seq = open_kitti(seq00)
    f = seq[0]
    learning = LabelMap.load().to_learning(f.labels)
    uv, depth, inside = f.calib.project(f.points)
    car, road = learning == 1, learning == 9
    assert np.count_nonzero(inside & car) > 1000
    assert np.count_nonzero(inside & road) > 5000
    # cars and road 10 m or more ahead (the camera sees the ground from ~7 m) within the horizontal field of view
    # land inside the image
    ahead = depth > 10.0
    in_fov = ahead & (np.abs(uv[:, 0] - f.calib.P[0, 2]) < 550)
    for cls in (car, road):
        sel = cls & in_fov
        assert np.count_nonzero(inside[sel]) / np.count_nonzero(sel) > 0.97
    # road is below the horizon row (the principal point), never above it
    assert np.all(uv[inside & road, 1] > f.calib.P[1, 2])
    # a wrong extrinsic (identity) puts almost nothing into the image
    from pu_ros.geometry.calibration import Calibration

    wrong = Calibration(f.calib.P, np.eye(4), f.calib.width, f.calib.height)
    assert np.count_nonzero(wrong.project(f.points)[2] & car) < 0.2 * np.count_nonzero(inside & car)


# ---------------------------------------------------------------------------------------------- real data: object


@pytest.mark.data
def test_object_frames_real(shared_data):
    training = shared_data / 'kitti_object' / 'training'
    seq = open_kitti(training)
    assert seq.layout == 'object' and seq.frame_ids == ['000000', '000008'] and seq.camera == 'image_2'
    np.testing.assert_allclose(seq.stamps, [0.0, 0.1])  # no timestamps in the object layout: index x 0.1 s
    assert open_kitti(training.parent).path == training
    c0, c8 = seq.calib_for(0), seq.calib_for(1)
    assert (c0.width, c0.height) == (1224, 370) and (c8.width, c8.height) == (1242, 375)
    raw = read_calib_file(training / 'calib' / '000008.txt')
    R0 = np.eye(4)
    R0[:3, :3] = raw['R0_rect'].reshape(3, 3)
    Tv = np.eye(4)
    Tv[:3] = raw['Tr_velo_to_cam'].reshape(3, 4)
    np.testing.assert_array_equal(c8.P, raw['P2'].reshape(3, 4))
    np.testing.assert_allclose(c8.T_cam_lidar, R0 @ Tv)
    f8 = seq[1]
    assert f8.frame_id == '000008' and f8.calib == c8 and f8.labels is None and f8.image.shape == (375, 1242, 3)
    _, _, inside = f8.calib.project(f8.points)
    assert inside.mean() > 0.99  # the 000008 scan is cropped to the camera frustum


@pytest.mark.data
def test_object_boxes_contain_points_that_project_into_their_2d_boxes_real(shared_data):
    seq = open_kitti(shared_data / 'kitti_object' / 'training')
    boxes = seq.object_labels(1)
    assert len(boxes) == 10 and sum(b.type == 'Car' for b in boxes) == 6 and boxes[-1].type == 'DontCare'
    f = seq[1]
    c = f.calib
    uv, _, _ = c.project(f.points)
    cam = f.points[:, :3].astype(np.float64) @ c.T_cam_lidar[:3, :3].T + c.T_cam_lidar[:3, 3]  # rectified camera
    checked = 0
    for b in boxes:
        if b.type == 'DontCare':
            continue
        h, w, length = b.dimensions
        d = cam - b.location
        cs, sn = np.cos(b.rotation_y), np.sin(b.rotation_y)
        along, across = cs * d[:, 0] - sn * d[:, 2], sn * d[:, 0] + cs * d[:, 2]
        in_box = (np.abs(along) < length / 2) & (np.abs(across) < w / 2) & (d[:, 1] < 0) & (d[:, 1] > -h)
        if np.count_nonzero(in_box) < 20:
            continue
        left, top, right, bottom = b.bbox
        pu = uv[in_box]
        ok = (pu[:, 0] > left - 5) & (pu[:, 0] < right + 5) & (pu[:, 1] > top - 5) & (pu[:, 1] < bottom + 5)
        assert ok.mean() > 0.95, b
        checked += 1
    assert checked >= 4


# ---------------------------------------------------------------------------------------------- raw layout


def test_raw_layout_fixture(tmp_path):
    P0, P2, T = toy_calibration()
    R_rect = _rot_x(0.01) @ _rot_y(-0.003)
    R_rect4 = np.eye(4)
    R_rect4[:3, :3] = R_rect
    Rt = np.linalg.inv(R_rect4) @ T  # so that R_rect_00 @ [R | T] == T
    scans = [synthetic_scan(500 + 10 * i, i) for i in range(3)]
    images = {2: {i: _rgb(375, 1242, i) for i in range(3)}, 0: {0: _rgb(375, 1242, 9)[..., 0]}}
    drive, scan_ns, image_ns = write_raw(tmp_path, scans, {0: P0, 2: P2}, R_rect, Rt, images=images)

    seq = open_kitti(drive)
    assert seq.layout == 'raw' and len(seq) == 3 and seq.camera == 'image_2' and seq.stamps_absolute
    assert seq.frame_ids == [f'{i:010d}' for i in range(3)]
    np.testing.assert_array_equal(seq.stamps_ns, scan_ns)  # nanosecond-exact date-time parsing
    np.testing.assert_array_equal(seq.calib.P, P2)
    np.testing.assert_allclose(seq.calib.T_cam_lidar, T, atol=1e-12)
    assert (seq.calib.width, seq.calib.height) == (1242, 375)
    f = seq[1]
    np.testing.assert_array_equal(f.points, scans[1])
    np.testing.assert_array_equal(f.image, images[2][1])
    assert f.image_encoding == 'rgb8' and f.labels is None and f.pose is None
    assert f.stamp_ns == scan_ns[1] and f.image_stamp_ns == image_ns[2][1]
    assert f.stamp == pytest.approx(scan_ns[1] / 1e9)

    # the date folder (one drive inside) is accepted too; grey camera -> P_rect_00, mono8, missing frames None
    grey = open_kitti(drive.parent, camera='image_0')
    assert grey.path == drive and grey.camera == 'image_0'
    np.testing.assert_array_equal(grey.calib.P, P0)
    assert grey[0].image_encoding == 'mono8' and grey[1].image is None
    with pytest.raises(KittiFormatError, match='image_3'):
        open_kitti(drive, camera='image_3')


def test_raw_without_images_uses_s_rect_and_without_timestamps_warns(tmp_path):
    P0, P2, T = toy_calibration()
    drive, _, _ = write_raw(tmp_path, [synthetic_scan(50, 1)], {0: P0, 2: P2}, np.eye(3), T,
                            image_size=(1240, 370), with_timestamps=False)
    with pytest.warns(UserWarning, match='timestamps'):
        seq = open_kitti(drive)
    assert seq.camera is None and (seq.calib.width, seq.calib.height) == (1240, 370)
    assert not seq.stamps_absolute and seq.stamps[0] == 0.0
    assert seq[0].image is None


@pytest.mark.data
def test_raw_fixture_from_real_scans_matches_odometry_reader(seq00, tmp_path):
    """The seq00 scans in a raw layout with equivalent calibration files give the same projection."""
    odo = open_kitti(seq00)
    raw = read_calib_file(seq00 / 'calib.txt')
    R_rect = _rot_x(0.002) @ _rot_y(0.001)
    R_rect4 = np.eye(4)
    R_rect4[:3, :3] = R_rect
    Rt = np.linalg.inv(R_rect4) @ odo.calib.T_cam_lidar
    scans = [read_points(seq00 / 'velodyne' / f'{i:06d}.bin') for i in range(2)]
    from PIL import Image

    img = np.asarray(Image.open(seq00 / 'image_2' / '000000.png'))
    drive, _, _ = write_raw(
        tmp_path, scans, {0: raw['P0'].reshape(3, 4), 2: raw['P2'].reshape(3, 4)}, R_rect, Rt, images={2: {0: img}},
        image_size=(1241, 376),
    )
    seq = open_kitti(drive)
    np.testing.assert_allclose(seq.calib.lidar_to_image, odo.calib.lidar_to_image, rtol=1e-9, atol=1e-6)
    uv_raw, _, in_raw = seq.calib.project(scans[0])
    uv_odo, _, in_odo = odo.calib.project(scans[0])
    np.testing.assert_array_equal(in_raw, in_odo)
    np.testing.assert_allclose(uv_raw[in_raw], uv_odo[in_odo], atol=1e-6)
    np.testing.assert_array_equal(seq[0].image, img)


def test_read_raw_timestamps(tmp_path):
    p = tmp_path / 'timestamps.txt'
    p.write_text('2011-09-26 13:02:25.964389445\n2011-09-26 13:02:26.0\n\n')
    out = read_raw_timestamps(p)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [RAW_T0_NS, RAW_T0_NS - 964389445 + 1_000_000_000])
    p.write_text('26/09/2011 13:02\n')
    with pytest.raises(KittiFormatError, match='line 1'):
        read_raw_timestamps(p)


# ---------------------------------------------------------------------------------------------- synthetic odometry


def test_synthetic_odometry_sequence(tmp_path):
    scans = [synthetic_scan(200, i) for i in range(3)]
    labels = {0: np.full(200, 40, dtype=np.uint32) | (np.uint32(3) << 16)}
    folder = write_odometry(tmp_path / 'seq', scans, labels=labels, times=[0.5, 0.6, 0.7, 0.8],
                            images={'image_0': {1: _rgb(40, 60, 1)[..., 0]}})
    seq = open_kitti(folder)
    assert seq.camera == 'image_0' and (seq.calib.width, seq.calib.height) == (60, 40)  # only grey images exist
    np.testing.assert_allclose(seq.stamps, [0.5, 0.6, 0.7])
    np.testing.assert_array_equal(seq[0].labels, labels[0])
    assert seq[1].labels is None and seq[1].image.shape == (40, 60) and seq[0].image is None
    frames = list(seq)
    assert [f.index for f in frames] == [0, 1, 2]


def test_object_labels_parser(tmp_path):
    p = tmp_path / '000001.txt'
    p.write_text(
        'Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n'
        'Pedestrian 0.00 0 0.21 423.17 173.67 433.17 224.03 1.60 0.38 0.30 -5.41 1.64 26.38 0.02 0.87\n'
    )
    boxes = read_object_labels(p)
    assert [b.type for b in boxes] == ['Car', 'Pedestrian']
    np.testing.assert_allclose(boxes[0].location, [-0.65, 1.71, 46.70])
    np.testing.assert_allclose(boxes[0].dimensions, [1.65, 1.67, 3.64])
    assert boxes[0].score is None and boxes[1].score == pytest.approx(0.87)
    p.write_text('Car 0.0 0\n')
    with pytest.raises(KittiFormatError, match='fields'):
        read_object_labels(p)


# ---------------------------------------------------------------------------------------------- bad inputs


@pytest.fixture
def good_seq(tmp_path):
    return write_odometry(tmp_path / 'seq', [synthetic_scan(100, i) for i in range(2)],
                          labels={0: np.full(100, 10, dtype=np.uint32)})


def test_truncated_scan(good_seq):
    path = good_seq / 'velodyne' / '000001.bin'
    path.write_bytes(path.read_bytes()[:-6])
    seq = open_kitti(good_seq)  # lazy: opening works, reading the frame fails clearly
    with pytest.raises(KittiFormatError, match='multiple of 16'):
        seq[1]
    with pytest.raises(KittiFormatError, match='multiple of 16'):
        read_points(path)


def test_label_count_mismatch(good_seq):
    np.full(99, 10, dtype='<u4').tofile(good_seq / 'labels' / '000000.label')
    with pytest.raises(KittiFormatError, match='99 labels but the scan has 100 points'):
        open_kitti(good_seq)[0]
    (good_seq / 'labels' / '000000.label').write_bytes(b'\x00' * 7)
    with pytest.raises(KittiFormatError, match='multiple of 4'):
        read_labels(good_seq / 'labels' / '000000.label')


def test_missing_or_bad_calibration(good_seq):
    calib = good_seq / 'calib.txt'
    text = calib.read_text()
    calib.write_text('\n'.join(ln for ln in text.splitlines() if not ln.startswith('Tr')))
    with pytest.raises(KittiFormatError, match='has no Tr'):
        open_kitti(good_seq)
    calib.write_text('garbage without numbers\n')
    with pytest.raises(KittiFormatError, match='no "KEY: numbers"'):
        open_kitti(good_seq)
    calib.write_text(text.replace('Tr:', 'Tr: 1.0'))
    with pytest.raises(KittiFormatError, match='Tr has 13 values'):
        open_kitti(good_seq)
    calib.unlink()
    with pytest.raises(KittiFormatError, match='calib.txt is missing'):
        open_kitti(good_seq)
    (good_seq / 'times.txt').unlink()
    with pytest.raises(KittiFormatError, match='calib.txt'):
        open_kitti(good_seq)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(KittiFormatError, match='not a KITTI folder'):
        open_kitti(tmp_path)
    with pytest.raises(KittiFormatError, match='does not exist'):
        open_kitti(tmp_path / 'nope')
    (tmp_path / 'seq' / 'velodyne').mkdir(parents=True)
    (tmp_path / 'seq' / 'calib.txt').write_text('P2: 1 0 0 0 0 1 0 0 0 0 1 0\nTr: 1 0 0 0 0 1 0 0 0 0 1 0\n')
    with pytest.raises(KittiFormatError, match=r'no scans \(\*.bin\)'):
        open_kitti(tmp_path / 'seq')
    assert detect_layout(tmp_path / 'seq') == ('odometry', tmp_path / 'seq')


def test_times_shorter_than_scans_and_bad_image(good_seq):
    (good_seq / 'times.txt').write_text('0.0\n')
    with pytest.raises(KittiFormatError, match='times.txt has 1 lines'):
        open_kitti(good_seq)
    (good_seq / 'times.txt').write_text('0.0\n0.1\n')
    (good_seq / 'image_2').mkdir()
    (good_seq / 'image_2' / '000000.png').write_bytes(b'not a png')
    with pytest.raises(KittiFormatError, match='cannot read image'):
        open_kitti(good_seq)  # the image size is read at open
    with pytest.raises(KittiFormatError, match='image_3'):
        open_kitti(good_seq, camera='image_3')
    with pytest.raises(ValueError, match='unknown camera'):
        open_kitti(good_seq, camera='left')


def test_object_layout_missing_calib(tmp_path):
    training = tmp_path / 'training'
    (training / 'velodyne').mkdir(parents=True)
    (training / 'calib').mkdir()
    synthetic_scan(10, 0).tofile(training / 'velodyne' / '000003.bin')
    with pytest.raises(KittiFormatError, match='calib/000003.txt'):
        open_kitti(tmp_path)


def test_several_sequences_are_ambiguous(tmp_path, good_seq):
    root = tmp_path / 'dataset'
    for name in ('00', '01'):
        shutil.copytree(good_seq, root / 'sequences' / name)
    with pytest.raises(KittiFormatError, match='several recordings'):
        open_kitti(root)
    assert open_kitti(root / 'sequences' / '01').layout == 'odometry'
