"""The echo node under bad input, and the exit codes of its entry points.

Under bad input: each malformed message gets one clear error, nothing is lost, the node goes on.

A publisher in the same process (own node, same context) sends malformed clouds and images over DDS, then good
ones; the echo node must record an error for each bad message, log it, and still convert the good ones intact.
"""

import os
from pathlib import Path
import subprocess
import sys

import numpy as np
from procs import stop
import pytest

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
POINTS = '/kitti/velo/pointcloud'
IMAGE = '/kitti/camera_color_left/image_raw'


def _bad_messages():
    from sensor_msgs.msg import Image, PointCloud2, PointField

    from pu_ros.ros import conversions as cv

    good = cv.xyzi_to_cloud(np.arange(40, dtype=np.float32).reshape(10, 4), 'velo_link')
    short = cv.xyzi_to_cloud(np.ones((10, 4), np.float32), 'velo_link')
    short.data = short.data[:-16]  # data length no longer width * point_step
    wrong_step = cv.xyzi_to_cloud(np.ones((10, 4), np.float32), 'velo_link')
    wrong_step.point_step = 8  # fields end past point_step
    counted = PointCloud2(height=1, width=1, point_step=12, row_step=12,
                          fields=[PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=3)])
    counted.data = bytes(12)
    no_xyz = cv.array_to_cloud(np.zeros(3, [('intensity', '<f4')]), 'velo_link')
    bad_encoding = cv.array_to_image(np.zeros((4, 6, 3), np.uint8), 'rgb8', 'camera_color_left')
    bad_encoding.encoding = 'yuv422_yuy2'
    short_image = cv.array_to_image(np.zeros((4, 6, 3), np.uint8), 'rgb8', 'camera_color_left')
    short_image.data = short_image.data[:-5]
    good_image = cv.array_to_image(np.arange(72, dtype=np.uint8).reshape(4, 6, 3), 'rgb8', 'camera_color_left')
    assert isinstance(good_image, Image)
    bad = [(POINTS, short, 'data'), (POINTS, wrong_step, 'point_step'), (POINTS, counted, 'count'),
           (POINTS, no_xyz, "'x'"), (IMAGE, bad_encoding, 'yuv422_yuy2'), (IMAGE, short_image, 'data')]
    return bad, [(POINTS, good), (IMAGE, good_image)]


def test_bad_messages_are_reported_and_good_ones_still_arrive():
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    from pu_ros.ros.echo_node import EchoSession

    bad, good = _bad_messages()
    with EchoSession({'topics': [POINTS, IMAGE], 'reliable': True, 'depth': 50}, keep_arrays=True) as echo:
        pub_node = rclpy.create_node('bad_input_publisher', context=echo.context)
        echo.executor.add_node(pub_node)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {POINTS: pub_node.create_publisher(PointCloud2, POINTS, qos),
                IMAGE: pub_node.create_publisher(Image, IMAGE, qos)}
        assert echo.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), timeout=20)
        for topic, msg, _ in bad:
            pubs[topic].publish(msg)
        for topic, msg in good:
            pubs[topic].publish(msg)
        expected = len(bad) + len(good)
        assert echo.spin_until(lambda: len(echo.node.records) >= expected, timeout=20), echo.node.records
        records = echo.node.records
        by_topic = {t: [r for r in records if r['topic'] == t] for t in (POINTS, IMAGE)}
        for topic in (POINTS, IMAGE):
            sent = [b for b in bad if b[0] == topic]
            got = by_topic[topic]
            assert len(got) == len(sent) + 1, 'a message was lost'
            for (_, _, needle), rec in zip(sent, got[:-1]):
                assert 'error' in rec and needle in rec['error'], rec
            assert 'error' not in got[-1], got[-1]
        assert set(echo.node._errors_logged) == {POINTS, IMAGE}  # one error line per topic, not per message
        kept = {r['topic']: a for r, a in zip(records, echo.node.arrays) if 'error' not in r}
        assert np.array_equal(kept[POINTS]['points'], np.arange(40, dtype=np.float32).reshape(10, 4))
        assert np.array_equal(kept[IMAGE]['image'], np.arange(72, dtype=np.uint8).reshape(4, 6, 3))
        echo.executor.remove_node(pub_node)
        pub_node.destroy_node()


# ----------------------------------------------------------------------------------------------- entry points


def _env():
    return {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}


def _echo_main(topic, count):
    """``python -m pu_ros.ros.echo_node`` (the ``ros2 run`` entry point) on one reliable PointCloud2 topic."""
    cmd = [sys.executable, '-m', 'pu_ros.ros.echo_node', '--ros-args', '-p',
           f"topics:=['{topic}:sensor_msgs/msg/PointCloud2']", '-p', f'count:={count}', '-p', 'reliable:=true']
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_main_exit_code_says_whether_count_was_reached():
    import signal
    import time

    import rclpy
    from rclpy.context import Context
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from pu_ros.ros import conversions as cv

    reached = _echo_main('/echo_main/reached', 2)
    short = _echo_main('/echo_main/short', 5)
    ctx = Context()
    rclpy.init(args=[], context=ctx)
    try:
        node = rclpy.create_node('echo_main_publisher', context=ctx)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {'reached': node.create_publisher(PointCloud2, '/echo_main/reached', qos),
                'short': node.create_publisher(PointCloud2, '/echo_main/short', qos)}
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in pubs.values()):
            time.sleep(0.05)
        assert all(p.get_subscription_count() for p in pubs.values()), 'the echo nodes never subscribed'
        time.sleep(0.3)
        msg = cv.xyzi_to_cloud(np.ones((5, 4), np.float32), 'velo_link')
        for _ in range(3):
            pubs['reached'].publish(msg)
        pubs['short'].publish(msg)
        out_reached, _ = reached.communicate(timeout=20)  # stops by itself after 2 messages
        time.sleep(0.5)
        short.send_signal(signal.SIGINT)  # Ctrl-C after 1 of the 5 messages
        out_short, _ = short.communicate(timeout=20)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
        for proc in (reached, short):
            if proc.poll() is None:
                stop(proc)
    assert reached.returncode == 0, out_reached
    assert '/echo_main/reached' in out_reached and 'Traceback' not in out_reached
    assert short.returncode == 1, out_short
    assert '/echo_main/short' in out_short and 'Traceback' not in out_short


def test_cli_echo_exit_code_when_count_is_not_reached():
    cmd = [sys.executable, '-m', 'pu_ros.cli', 'echo', '--topics', '/echo_cli/nobody:sensor_msgs/msg/Image',
           '--count', '3', '--timeout', '1']
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=30)
    assert res.returncode == 1, res.stdout + res.stderr
    assert 'no message received' in res.stdout
