"""The echo node under bad input: each malformed message gets one clear error, nothing is lost, the node goes on.

A publisher in the same process (own node, same context) sends malformed clouds and images over DDS, then good
ones; the echo node must record an error for each bad message, log it, and still convert the good ones intact.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.ros

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
