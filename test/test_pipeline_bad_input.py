"""Every bad input of GUIDE section 5 (and more) against the segmentation node, over DDS on loopback, in-process.

For each bad message or parameter set: exactly one new error line (``node.errors``, also logged), nothing
published on the outputs, no exception out of the executor, and the next good message is processed. The
segmenter is a stand-in (labels by height) so that the tests exercise the node, not the network; checkpoint
changes at runtime go through the real loader.
"""

import numpy as np
import pytest
from test_pipeline_nodes import IMAGE, INFO, OUT, RAW, FakeSegmenter, Graph, _cloud, _read, _scan

pytestmark = pytest.mark.ros


@pytest.fixture()
def graph():
    g = Graph()
    yield g
    g.close()


def _expect_one_error(graph, node, out, send, needle):
    """Send a bad input; one new error containing ``needle``, nothing published; then a good cloud gets through."""
    before_err, before_out = len(node.errors), len(out)
    send()
    assert graph.spin_until(lambda: len(node.errors) > before_err, timeout=10), f'no error for {needle}'
    graph.spin_for(0.3)
    new = list(node.errors)[before_err:]
    assert len(new) == 1, new
    assert needle in new[0], new[0]
    assert len(out) == before_out, 'something was published for a bad input'


def _good_roundtrip(graph, pub, out, stamp, frame='velo_link'):
    pts, raw = _scan(500, seed=stamp % 97)
    n = len(out)
    pub.publish(_cloud(pts, frame=frame, stamp=stamp, labels=raw))
    assert graph.spin_until(lambda: len(out) > n, timeout=10), 'the good cloud after a bad input was not processed'
    assert _read(out[-1]).shape == (500,)


def _bad_clouds():
    from sensor_msgs.msg import PointCloud2, PointField

    from pu_ros.ros import conversions as cv

    good = _cloud(_scan(50)[0])
    short = _cloud(_scan(50)[0])
    short.data = short.data[:-16]
    step = _cloud(_scan(50)[0])
    step.point_step = 8
    no_xyz = cv.array_to_cloud(np.zeros(3, [('intensity', '<f4')]), 'velo_link', 1)
    counted = PointCloud2(height=1, width=1, point_step=12, row_step=12,
                          fields=[PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=3)])
    counted.data = bytes(12)
    nan_all = _cloud(np.full((20, 4), np.nan, np.float32))
    inf_all = _cloud(np.full((20, 4), np.inf, np.float32))
    empty = _cloud(np.zeros((0, 4), np.float32))
    assert good.width == 50
    return [('empty', empty, 'empty cloud'), ('all NaN', nan_all, 'no finite point'),
            ('all inf', inf_all, 'no finite point'), ('short data', short, 'data'),
            ('wrong point_step', step, 'point_step'), ('missing x/y/z', no_xyz, "'x'"),
            ('count > 1', counted, 'count')]


def test_bad_clouds_give_one_error_each_and_the_node_goes_on(graph):
    from sensor_msgs.msg import PointCloud2

    from pu_ros.ros.segmentation_node import SegmentationNode

    node = graph.add(SegmentationNode, remaps=[('~/input/points', RAW), ('~/output/points', OUT)],
                     segmenter=FakeSegmenter())
    out = graph.subscribe(PointCloud2, OUT)
    pub = graph.publisher(PointCloud2, RAW)
    graph.connect(pub)
    _good_roundtrip(graph, pub, out, 1)
    for k, (_what, msg, needle) in enumerate(_bad_clouds()):
        _expect_one_error(graph, node, out, lambda m=msg: pub.publish(m), needle)
        _good_roundtrip(graph, pub, out, 100 + k)
    # some non-finite points among good ones are not an error: they are kept and labelled 0 (unlabeled)
    pts = _scan(300)[0]
    pts[:10, 0] = np.nan
    n = len(out)
    pub.publish(_cloud(pts, stamp=999))
    assert graph.spin_until(lambda: len(out) > n)
    arr = _read(out[-1])
    assert arr.shape == (300,) and (arr['label'][:10] == 0).all() and (arr['label'][10:] != 0).all()
    assert node.monitor.frames_failed == len(_bad_clouds()) and node.monitor.consecutive_failures == 0


def test_out_of_range_and_bad_parameters_are_rejected_with_one_line(graph, tmp_path):
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2
    import torch

    from pu_ros.networks.checkpoint import save_checkpoint
    from pu_ros.ros.segmentation_node import SegmentationNode

    fake = FakeSegmenter()
    node = graph.add(SegmentationNode, remaps=[('~/input/points', RAW), ('~/output/points', OUT)], segmenter=fake)
    out = graph.subscribe(PointCloud2, OUT)
    pub = graph.publisher(PointCloud2, RAW)
    graph.connect(pub)
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a torch file at all')
    wrong = save_checkpoint(tmp_path / 'upsampler.pt', {'w': torch.zeros(3)},
                            {'model': {'ratio': 4, 'k': 16, 'blocks': 6}}, {'network': 'puflow'})
    cases = [
        (Parameter('diagnostics.latency_budget_ms', value=-5.0), 'out of range'),
        (Parameter('fusion.queue_size', value=1000), 'out of range'),
        (Parameter('segmentation.device', value='tpu'), 'not one of'),
        (Parameter('segmentation.checkpoint', value=str(tmp_path / 'missing.pt')), 'missing.pt'),
        (Parameter('segmentation.checkpoint', value=str(corrupt)), 'corrupt.pt'),
        (Parameter('segmentation.checkpoint', value=str(wrong)), 'upsampler.pt'),
    ]
    for k, (param, needle) in enumerate(cases):
        before = len(node.errors)
        result = node.set_parameters([param])[0]
        assert not result.successful, param.name
        new = list(node.errors)[before:]
        assert len(new) == 1 and needle in new[0] and param.name in new[0], new
        assert node.segmenter is fake  # the old model stays
        _good_roundtrip(graph, pub, out, 200 + k)
    assert node.get_parameter('diagnostics.latency_budget_ms').value == 1000.0
    assert node.set_parameters([Parameter('diagnostics.latency_budget_ms', value=50.0)])[0].successful
    assert node.monitor.config.latency_budget_ms == 50.0


def _camera_msgs(stamp, frame='camera_color_left', size=(64, 32), info_size=None, encoding='rgb8'):
    from pu_ros.geometry.calibration import Calibration
    from pu_ros.ros import conversions as cv

    w, h = size
    iw, ih = info_size or size
    img = cv.array_to_image(np.full((h, w, 3), 100, np.uint8), 'rgb8', frame, stamp)
    if encoding != 'rgb8':
        img.encoding = encoding
    P = np.array([[30.0, 0, iw / 2, 0], [0, 30.0, ih / 2, 0], [0, 0, 1, 0]])
    info = cv.calibration_to_camera_info(Calibration(P=P, T_cam_lidar=np.eye(4), width=iw, height=ih), frame, stamp)
    return img, info


def test_fused_mode_bad_camera_inputs(graph):
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from pu_ros.ros.segmentation_node import SegmentationNode

    fake = FakeSegmenter(fused=True)
    node = graph.add(SegmentationNode, {'fusion.slop': 0.05, 'fusion.queue_size': 2},
                     remaps=[('~/input/points', RAW), ('~/output/points', OUT), ('~/input/image', IMAGE),
                             ('~/input/camera_info', INFO)], segmenter=fake)
    out = graph.subscribe(PointCloud2, OUT)
    pubs = {'cloud': graph.publisher(PointCloud2, RAW), 'image': graph.publisher(Image, IMAGE),
            'info': graph.publisher(CameraInfo, INFO)}
    graph.connect(*pubs.values())
    pts = _scan(400)[0]

    def send(stamp, cloud_frame='camera_color_left', cam_stamp=None, **camera):
        img, info = _camera_msgs(stamp if cam_stamp is None else cam_stamp, **camera)
        pubs['image'].publish(img)
        pubs['info'].publish(info)
        graph.spin_for(0.2)
        pubs['cloud'].publish(_cloud(pts, frame=cloud_frame, stamp=stamp))

    def good(stamp):
        n = len(out)
        send(stamp)
        assert graph.spin_until(lambda: len(out) > n, timeout=10), list(node.errors)
        assert fake.calls[-1][1] == (32, 64, 3) and fake.calls[-1][2].width == 64

    good(1_000_000_000)
    stamp = [2_000_000_000]

    def nxt():
        stamp[0] += 1_000_000_000
        return stamp[0]

    _expect_one_error(graph, node, out, lambda: send(nxt(), cloud_frame='velo_link'), 'no transform')
    good(nxt())
    _expect_one_error(graph, node, out, lambda: send(nxt(), size=(64, 32), info_size=(128, 32)), '64x32')
    good(nxt())
    _expect_one_error(graph, node, out, lambda: send(nxt(), encoding='mono16'), 'mono16')
    good(nxt())
    _expect_one_error(graph, node, out, lambda: send(nxt(), encoding='yuv422'), 'yuv422')
    good(nxt())

    def never_matching():
        for _ in range(4):  # camera 0.5 s off: nothing pairs, the clouds fall out of the 2-deep queue
            send(nxt(), cam_stamp=stamp[0] + 500_000_000)
    _expect_one_error(graph, node, out, never_matching, 'no image + camera_info within 0.05 s')
    good(nxt())
    assert node.monitor.drops.dropped >= 1

    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return
    from geometry_msgs.msg import TransformStamped  # a LiDAR cloud is fine once /tf_static links the frames

    ts = TransformStamped()
    ts.header.frame_id, ts.child_frame_id = 'velo_link', 'camera_color_left'
    ts.transform.rotation.w = 1.0
    graph.publisher(TFMessage, '/tf_static', latched=True).publish(TFMessage(transforms=[ts]))
    assert graph.spin_until(lambda: node.tf.edges, timeout=10)
    n = len(out)
    send(nxt(), cloud_frame='velo_link')
    assert graph.spin_until(lambda: len(out) > n, timeout=10), list(node.errors)


def test_fused_without_a_2d_checkpoint_says_so_once_and_runs_lidar_only(graph, tmp_path):
    pytest.importorskip('spconv')
    from pu_ros.resources import model_path
    from pu_ros.ros.segmentation_node import SegmentationNode

    try:
        model_path('segmentation_2dpass_3d.pt')
    except FileNotFoundError:
        pytest.skip('packaged 3D model missing')
    node = graph.add(SegmentationNode, {'segmentation.fused': True, 'segmentation.device': 'cpu',
                                        'segmentation.checkpoint': str(model_path('segmentation_2dpass_3d.pt'))})
    assert node.segmenter.fused is False and node._sync is None


def test_diagnostics_levels_debug_topics_and_no_work_without_subscribers(graph):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Float64

    from pu_ros.ros.segmentation_node import SegmentationNode

    fake = FakeSegmenter()
    node = graph.add(SegmentationNode, {'diagnostics.error_after': 2, 'diagnostics.period': 0.2,
                                        'diagnostics.latency_budget_ms': 5000.0},
                     remaps=[('~/input/points', RAW), ('~/output/points', OUT)], segmenter=fake)
    pub = graph.publisher(PointCloud2, RAW)
    assert graph.spin_until(lambda: pub.get_subscription_count() > 0)
    pub.publish(_cloud(_scan(100)[0]))  # nobody listens to the outputs yet: skipped, the model is not run
    assert graph.spin_until(lambda: node.monitor.frames_skipped == 1)
    assert fake.calls == []
    diags = graph.subscribe(DiagnosticArray, '/diagnostics')
    processing = graph.subscribe(Float64, '/segmentation_node/debug/processing_time_ms')
    out = graph.subscribe(PointCloud2, OUT)
    graph.connect(pub)

    def level_after(action):
        action()
        n = len(diags)
        assert graph.spin_until(lambda: len(diags) > n + 1)
        return diags[-1].status[0]

    import time as _time

    fresh = lambda: _time.time_ns()  # noqa: E731
    status = level_after(lambda: _good_roundtrip(graph, pub, out, fresh()))
    assert status.level == DiagnosticStatus.OK, status.message
    assert processing and processing[-1].data > 0
    status = level_after(lambda: _good_roundtrip(graph, pub, out, fresh() - 60 * 10**9))  # a minute late
    assert status.level == DiagnosticStatus.WARN and 'budget' in status.message
    bad = _cloud(np.zeros((0, 4), np.float32), stamp=fresh())
    status = level_after(lambda: [pub.publish(bad), graph.spin_for(0.3)])
    assert status.level == DiagnosticStatus.WARN and 'empty cloud' in status.message
    status = level_after(lambda: [pub.publish(_cloud(np.zeros((0, 4), np.float32), stamp=fresh())),
                                  graph.spin_for(0.3)])
    assert status.level == DiagnosticStatus.ERROR and '2 consecutive' in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values['frames_failed'] == '2' and values['frames_skipped_no_subscriber'] == '1'
    status = level_after(lambda: _good_roundtrip(graph, pub, out, fresh()))
    assert status.level == DiagnosticStatus.OK


def test_resampled_cloud_without_its_original_is_reported(graph):
    from sensor_msgs.msg import PointCloud2

    from pu_ros.ros.segmentation_node import SegmentationNode

    node = graph.add(SegmentationNode, {'resample.use_original': True},
                     remaps=[('~/input/points', RAW), ('~/input/original_points', '/t/nobody'),
                             ('~/output/points', OUT)], segmenter=FakeSegmenter())
    out = graph.subscribe(PointCloud2, OUT)
    pub = graph.publisher(PointCloud2, RAW)
    graph.connect(pub)
    pts = _scan(200)[0]
    pub.publish(_cloud(pts, stamp=1))
    graph.spin_for(0.3)
    assert not node.errors  # the first one waits for its original
    _expect_one_error(graph, node, out, lambda: pub.publish(_cloud(pts, stamp=2)), 'found no original cloud')
    assert '/t/nobody' in node.errors[-1] and node.monitor.drops.dropped == 1
