"""/tf_static over DDS: the player latches it (transient local) and the echo node records TFMessage.

Needs ``tf2_msgs`` (no PyPI wheel: ``requirements/build_tf2_msgs.sh`` builds it into the venv; a sourced ROS 2 has
it); skipped without it.

One ``pu-ros play --loop --start-offset`` subprocess serves the whole module. With a start offset the bag's only
/tf_static message (stamped at the bag start, before the offset) is published once, at the start of the first
pass, and never again while the data topics loop; so a subscriber created after that can only get it from the
publisher's transient-local history, and a volatile subscriber must get nothing.
"""

import os
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
from procs import stop
import pytest

pytest.importorskip('tf2_msgs.msg', reason='tf2_msgs is not importable (run requirements/build_tf2_msgs.sh)')

ROOT = Path(__file__).resolve().parents[1]
POINTS = '/kitti/velo/pointcloud'
CAMERA_INFO = '/kitti/camera_color_left/camera_info'
TF_STATIC = '/tf_static'
LIDAR_FRAME = 'velo_link'
CAMERA_FRAME = 'camera_color_left'

pytestmark = pytest.mark.ros


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    return env


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    """Synthetic sequence, its bag, the bag's /tf_static transform and camera_info P (decoded with rosbags)."""
    from pu_ros.data import bag as bagio
    from pu_ros.data.kitti_to_bag import convert
    from pu_ros.data.synthetic import SceneConfig, write_sequence

    base = tmp_path_factory.mktemp('tf_static')
    seq = write_sequence(base / 'seq', SceneConfig(seed=21, n_frames=3, n_azimuth=64, image_width=64,
                                                    image_height=32), progress=False)
    bag = base / 'bag'
    convert(seq, bag, progress=False)
    tf_msgs = [bagio.deserialize(raw, ty) for t, ty, _, raw in bagio.read_bag(bag, topics=[TF_STATIC])]
    info = next(bagio.deserialize(raw, ty) for t, ty, _, raw in bagio.read_bag(bag, topics=[CAMERA_INFO]))
    assert len(tf_msgs) == 1 and len(tf_msgs[0].transforms) == 1
    return {'seq': seq, 'bag': bag, 'tf': tf_msgs[0].transforms[0], 'P': np.asarray(info.p).reshape(3, 4),
            'info': bagio.bag_info(bag), 'base': base}


@pytest.fixture(scope='module')
def player(scene):
    """A looping player that has certainly published /tf_static already; yields the path of its log file.

    Data topics are received (volatile) by a first EchoSession: /tf_static is the first message the player
    publishes, so once any point cloud has arrived the static transform is out.
    """
    from pu_ros.ros.echo_node import EchoSession

    log = scene['base'] / 'player.log'
    # No start offset: /tf_static sits at the bag start, so every pass of the loop reaches it again; the player
    # must still publish it once (a volatile subscriber below checks that nothing is re-sent).
    cmd = [sys.executable, '-m', 'pu_ros.cli', 'play', str(scene['bag']), '--loop', '--rate', '0.2']
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        with EchoSession({'topics': [POINTS], 'reliable': True, 'depth': 50}, node_name='tf_static_probe') as data:
            arrived = data.spin_until(lambda: len(data.node.records) >= 1, timeout=30)
        assert arrived, f'no point cloud from the player (exit status {proc.poll()}):\n{log.read_text()}'
        assert proc.poll() is None, log.read_text()
        yield log
    finally:
        stop(proc, read=False)


def _late_joiner(wait_s=20.0):
    """A fresh EchoSession on /tf_static plus raw transient-local and volatile TFMessage subscriptions.

    Returns:
        ``(session, latched, volatile, got_latched)``: ``latched`` / ``volatile`` are lists of received
        ``tf2_msgs.msg.TFMessage``; ``got_latched`` tells whether both the echo node and the raw latched
        subscription received something within ``wait_s``.
    """
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from pu_ros.ros.echo_node import EchoSession

    session = EchoSession({'topics': [TF_STATIC]}, node_name='tf_static_late_joiner')
    latched, volatile = [], []
    helper = Node('tf_static_raw', context=session.context)
    for durability, sink in ((DurabilityPolicy.TRANSIENT_LOCAL, latched), (DurabilityPolicy.VOLATILE, volatile)):
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=durability)
        helper.create_subscription(TFMessage, TF_STATIC, sink.append, qos)
    session.executor.add_node(helper)
    session.helper = helper
    got = session.spin_until(lambda: bool(session.node.records) and bool(latched), timeout=wait_s)
    return session, latched, volatile, got


def _close(session):
    session.executor.remove_node(session.helper)
    session.helper.destroy_node()
    session.close()


def test_player_latches_tf_static_for_late_subscribers(scene, player):
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from pu_ros.data import bag as bagio
    from pu_ros.ros.echo_node import bag_records, compare_records

    time.sleep(0.5)  # well after the one /tf_static publication: the data topics are looping by now
    session, latched, volatile, got = _late_joiner()
    try:
        assert got, f'late joiner got nothing on {TF_STATIC}:\n{player.read_text()}'
        # Endpoint discovery can come before the publisher's node name does: wait for the name too.
        session.spin_until(lambda: all(i.node_name != '_NODE_NAME_UNKNOWN_'
                                       for i in session.node.get_publishers_info_by_topic(TF_STATIC)), timeout=10)
        publishers = session.node.get_publishers_info_by_topic(TF_STATIC)
        session.spin_until(lambda: False, timeout=1.5)  # two more passes of the loop: nothing may come
        records = list(session.node.records)
    finally:
        _close(session)
    assert len(publishers) == 1 and publishers[0].node_name == 'bag_player'
    assert publishers[0].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert publishers[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert volatile == [], 'a volatile subscriber got /tf_static: the player republished it instead of latching'
    assert len(latched) == 1 and len(records) == 1

    # the received transform is the bag's: velo_link -> camera_color_left, same stamp, same numbers
    expected = scene['tf']
    (tf,) = latched[0].transforms
    assert (tf.header.frame_id, tf.child_frame_id) == (LIDAR_FRAME, CAMERA_FRAME)
    assert (tf.header.frame_id, tf.child_frame_id) == (expected.header.frame_id, expected.child_frame_id)
    assert bagio.stamp_to_ns(tf.header.stamp) == bagio.stamp_to_ns(expected.header.stamp) == scene['info']['start_ns']
    matrix = bagio.transform_to_matrix
    np.testing.assert_array_equal(matrix(tf.transform), matrix(expected.transform))

    # the echo node guessed TFMessage for a bare '/tf_static' and recorded the same content as the bag holds
    assert records[0]['type'] == 'tf2_msgs/msg/TFMessage'
    assert records[0]['transforms'][0][:2] == [LIDAR_FRAME, CAMERA_FRAME]
    bag_tf, skipped = bag_records(scene['bag'], topics=[TF_STATIC])
    assert skipped == {} and len(bag_tf) == 1
    verdict = compare_records(bag_tf, records)
    assert verdict['ok'], verdict
    log = player.read_text()
    assert 'skipping /tf_static' not in log
    assert any(TF_STATIC in line for line in log.splitlines() if 'playing' in line), log


def test_latched_transform_and_camera_info_reproduce_the_calibration(scene, player):
    """camera_info.P @ inverse(/tf_static as received over DDS) projects like the sequence's Calibration."""
    from pu_ros.data import bag as bagio
    from pu_ros.data.kitti import open_kitti
    from pu_ros.data.kitti_to_bag import camera_frame_calibration

    session, latched, _, got = _late_joiner()
    try:
        assert got, player.read_text()
    finally:
        _close(session)
    T_lidar_cam = bagio.transform_to_matrix(latched[0].transforms[0].transform)  # camera pose in velo_link
    seq = open_kitti(scene['seq'])
    calib = seq.calib
    points = seq[0].points[:, :3].astype(np.float64)
    uv_ref, depth_ref, _ = calib.project(points)
    front = depth_ref > 0.1  # (the tiny synthetic image keeps KITTI's P2: most points fall outside it)
    assert front.sum() > 100

    T_cam_lidar = np.linalg.inv(T_lidar_cam)
    hom = np.c_[points, np.ones(len(points))] @ (scene['P'] @ T_cam_lidar).T
    np.testing.assert_allclose(hom[front, :2] / hom[front, 2:3], uv_ref[front], rtol=0, atol=1e-6)
    # the frame is camera 2's own: KITTI's baseline column of P2 moved into the extrinsics, T' = [I | t] T
    np.testing.assert_allclose(T_cam_lidar, camera_frame_calibration(calib.P, calib.T_cam_lidar)[1], rtol=0,
                               atol=1e-9)
    # the published camera frame has no baseline column: P = K [I | 0] (ROS monocular convention)
    np.testing.assert_allclose(scene['P'][:, :3], calib.K, rtol=0, atol=1e-9)
    assert np.all(scene['P'][:, 3] == 0)


def test_echo_cli_prints_the_latched_transform(player):
    cmd = [sys.executable, '-m', 'pu_ros.cli', 'echo', '--topics', TF_STATIC, '--count', '1', '--timeout', '25']
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr + player.read_text()
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith(f'{TF_STATIC} #0'))
    assert line.endswith(f'{LIDAR_FRAME} -> {CAMERA_FRAME}')
    assert 'TFMessage' in res.stdout  # the summary table
