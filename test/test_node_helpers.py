"""Shared pieces of the pipeline nodes without DDS traffic: settings metadata, synchronizer, transforms, labels."""

from dataclasses import dataclass, field, fields
from types import SimpleNamespace

import numpy as np
import pytest

from pu_ros.ros.node_config import NODE_SECTIONS, DiagnosticsConfig, check_value, dotted_defaults


def _f(cls, name):
    return next(f for f in fields(cls) if f.name == name)


def test_check_value_uses_type_range_and_choices():
    from pu_ros.inference.segmenter import SegmenterConfig

    assert check_value(_f(DiagnosticsConfig, 'latency_budget_ms'), 50.0) is None
    assert 'out of range' in check_value(_f(DiagnosticsConfig, 'latency_budget_ms'), 0.0)
    assert 'integer' in check_value(_f(DiagnosticsConfig, 'error_after'), 2.5)
    assert 'not one of' in check_value(_f(SegmenterConfig, 'device'), 'tpu')
    assert 'true or false' in check_value(_f(SegmenterConfig, 'fused'), 1)
    assert 'NaN' in check_value(_f(DiagnosticsConfig, 'period'), float('nan'))


def test_every_setting_has_help_and_a_default():
    for node, sections in NODE_SECTIONS.items():
        for section, load in sections.items():
            try:
                cls = load()
            except ImportError:
                continue  # sampler/upsampler modules come from their own branches
            for f in fields(cls):
                assert (f.metadata or {}).get('help'), f'{node}: {section}.{f.name} has no help'
            assert dotted_defaults(section, cls)


def _msg(stamp_ns, tag=None):
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nsec)), tag=tag)


def test_approximate_sync_pairs_within_slop_and_forgets_older():
    from pu_ros.ros.sync import ApproximateTimeSync

    sync = ApproximateTimeSync(3, queue_size=3, slop=0.05)
    sets = []
    sync.register_callback(lambda *m: sets.append(tuple(x.tag for x in m)))
    sync.add(0, _msg(1_000_000_000, 'c1'))
    sync.add(1, _msg(1_030_000_000, 'i1'))
    assert sets == []  # camera_info still missing
    sync.add(2, _msg(1_000_000_000, 'k1'))
    assert sets == [('c1', 'i1', 'k1')]
    sync.add(0, _msg(2_000_000_000, 'c2'))
    sync.add(1, _msg(2_200_000_000, 'i2'))  # 0.2 s away: never paired
    sync.add(2, _msg(2_200_000_000, 'k2'))
    assert sets == [('c1', 'i1', 'k1')]
    for k in range(3, 6):  # the unmatched cloud is evicted from the full queue and counted
        sync.add(0, _msg(k * 1_000_000_000 + 500_000_000, f'c{k}'))
    assert sync.evicted[0] == 1 and sync.matched == 1


def test_make_synchronizer_falls_back_to_ours_without_message_filters():
    from pu_ros.ros.sync import make_synchronizer

    sync, kind = make_synchronizer(3, 5, 0.1, prefer_message_filters=False)
    assert kind == 'pu_ros' and hasattr(sync, 'add')
    with pytest.raises(ValueError):
        make_synchronizer(1, 5, 0.1, prefer_message_filters=False)


def test_static_transforms_follow_one_edge_both_ways():
    from pu_ros.ros.transforms import StaticTransforms

    q = np.array([0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])  # 90 degrees about z
    ts = SimpleNamespace(header=SimpleNamespace(frame_id='velo_link'), child_frame_id='camera',
                         transform=SimpleNamespace(translation=SimpleNamespace(x=1.0, y=2.0, z=3.0),
                                                   rotation=SimpleNamespace(x=q[0], y=q[1], z=q[2], w=q[3])))
    tf = StaticTransforms()
    tf.add(SimpleNamespace(transforms=[ts]))
    m = tf.lookup('velo_link', 'camera')  # camera points -> velo_link
    assert np.allclose(m @ [1, 0, 0, 1], [1, 3, 3, 1])
    assert np.allclose(tf.lookup('camera', 'velo_link') @ m, np.eye(4))
    assert np.allclose(tf.lookup('x', 'x'), np.eye(4))
    assert tf.lookup('camera', 'base_link') is None


def test_transfer_labels_matches_brute_force_nearest_neighbour():
    from pu_ros.ros.segmentation_io import transfer_labels

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 4)).astype(np.float32)
    ref[5] = np.nan
    query = rng.normal(size=(500, 4)).astype(np.float32)
    query[7, 1] = np.inf
    labels = rng.integers(0, 20, 300).astype(np.uint8)
    got = transfer_labels(query, ref, labels)
    ok = np.isfinite(ref[:, :3]).all(1)
    with np.errstate(invalid='ignore'):
        d = ((query[:, None, :3] - np.where(ok[:, None], ref[:, :3], np.inf)[None]) ** 2).sum(-1)
    want = labels[np.argmin(d, axis=1)]
    want[7] = 0
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    with pytest.raises(ValueError, match='no finite point'):
        transfer_labels(query, np.full((3, 4), np.nan, np.float32), labels[:3])


@dataclass
class _Toy:
    gain: float = field(default=1.0, metadata={'help': 'a gain', 'range': (0.0, 2.0)})
    mode: str = field(default='a', metadata={'help': 'a mode', 'choices': ('a', 'b')})
    steps: int = field(default=3, metadata={'help': 'steps', 'range': (1, 10)})


@pytest.mark.ros
def test_parameter_sections_declare_describe_and_validate_at_runtime():
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from pu_ros.ros.node_params import ParameterSections

    ctx = Context()
    rclpy.init(args=[], context=ctx)
    try:
        node = rclpy.create_node('toy', context=ctx, parameter_overrides=[Parameter('toy.steps', value=5)])
        seen = []

        def on_change(new):
            if new['toy'].gain == 1.5:
                raise ValueError('1.5 is cursed')
            seen.append(new['toy'])

        params = ParameterSections(node, {'toy': _Toy}, on_change=on_change)
        assert params['toy'].steps == 5 and params.flat() == {'toy.gain': 1.0, 'toy.mode': 'a', 'toy.steps': 5}
        desc = node.describe_parameter('toy.gain')
        assert desc.description == 'a gain' and desc.floating_point_range[0].to_value == 2.0
        assert node.describe_parameter('toy.steps').integer_range[0].from_value == 1
        assert 'a, b' in node.describe_parameter('toy.mode').additional_constraints
        res = node.set_parameters([Parameter('toy.gain', value=5.0)])[0]
        assert not res.successful
        res = node.set_parameters([Parameter('toy.mode', value='z')])[0]
        assert not res.successful and 'not one of' in res.reason
        res = node.set_parameters([Parameter('toy.gain', value=1.5)])[0]
        assert not res.successful and 'cursed' in res.reason
        assert params['toy'].gain == 1.0 and node.get_parameter('toy.gain').value == 1.0
        assert node.set_parameters([Parameter('toy.gain', value=0.5)])[0].successful
        assert params['toy'].gain == 0.5 and seen[-1].gain == 0.5
        node.destroy_node()
        bad = rclpy.create_node('toy2', context=ctx, parameter_overrides=[Parameter('toy.mode', value='q')])
        with pytest.raises(ValueError, match='toy.mode'):
            ParameterSections(bad, {'toy': _Toy})
        bad.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_drop_counter_and_latency_stats():
    pytest.importorskip('rclpy')
    from pu_ros.ros.diagnostics import DropCounter, LatencyStats

    d = DropCounter()
    for k in (0, 1, 2, 3, 6, 7):  # frames 4 and 5 missing at 10 Hz
        d.update(k * 100_000_000)
    assert d.dropped == 2
    s = LatencyStats()
    assert s.summary() is None
    for v in range(1, 101):
        s.add(v)
    out = s.summary()
    assert out['max'] == 100 and 50 <= out['p50'] <= 51 and out['n'] == 100 and s.last == 100
