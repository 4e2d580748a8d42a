"""Bag player: pacing math, QoS, parameters/YAML/launch in step, and replay over DDS of a synthetic bag.

DDS tests run the player in a subprocess (``python -m pu_ros.cli play``) and receive in this process; every wait
has a timeout so a discovery problem fails the test instead of hanging it.
"""

import ast
import os
from pathlib import Path
import py_compile
import re
import signal
import subprocess
import sys
import time

import numpy as np
from procs import stop
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
POINTS = '/kitti/velo/pointcloud'
IMAGE = '/kitti/camera_color_left/image_raw'
FRAMES = 10
PERIOD_NS = 100_000_000

pytestmark = pytest.mark.ros


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    return env


def _play_cmd(bag, *extra):
    return [sys.executable, '-m', 'pu_ros.cli', 'play', str(bag), *map(str, extra)]


def _run(cmd, timeout=30):
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


class Player:
    """A ``pu-ros play`` subprocess that is always killed at the end."""

    def __init__(self, bag, *extra):
        self.proc = subprocess.Popen(_play_cmd(bag, *extra), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout=20):
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            stop(self.proc)
        return False


@pytest.fixture(scope='module')
def synthetic_bag(tmp_path_factory):
    """A 10-frame synthetic KITTI bag (small scans and images), 0.1 s apart; returns (bag path, bag_info)."""
    from pu_ros.data.bag import bag_info
    from pu_ros.data.kitti_to_bag import convert
    from pu_ros.data.synthetic import SceneConfig, write_sequence

    base = tmp_path_factory.mktemp('player')
    seq = write_sequence(base / 'seq', SceneConfig(seed=3, n_frames=FRAMES, n_azimuth=64, image_width=64,
                                                    image_height=32), progress=False)
    convert(seq, base / 'bag', progress=False)
    return base / 'bag', bag_info(base / 'bag')


@pytest.fixture()
def echo():
    """Factory of EchoSessions (closed at the end of the test)."""
    from pu_ros.ros.echo_node import EchoSession

    sessions = []

    def make(settings, **kwargs):
        sessions.append(EchoSession(settings, **kwargs))
        return sessions[-1]

    yield make
    for s in sessions:
        s.close()


# ----------------------------------------------------------------------------------------------- pure helpers


def test_pace_maps_bag_time_to_wall_time_with_rate():
    from pu_ros.ros.player_node import Pace

    pace = Pace(rate=2.0, bag_origin_ns=1_000_000_000_000, wall_origin_ns=5_000)
    assert pace.due_ns(1_000_000_000_000) == 5_000
    assert pace.due_ns(1_001_000_000_000) == 5_000 + 500_000_000  # 1 s of bag at rate 2 -> 0.5 s
    assert pace.bag_time_ns(5_000 + 500_000_000) == 1_001_000_000_000
    slow = Pace(rate=0.5, bag_origin_ns=0, wall_origin_ns=0)
    assert slow.due_ns(100_000_000) == 200_000_000
    stamps = np.arange(0, 10) * PERIOD_NS
    assert np.all(np.diff([pace.due_ns(s) for s in stamps]) > 0)  # order is kept


def test_parse_remaps():
    from pu_ros.ros.player_node import parse_remaps

    assert parse_remaps(['/a:=/b', ' /c := /d ']) == {'/a': '/b', '/c': '/d'}
    assert parse_remaps([]) == {}
    for bad in ('/a=/b', ':=/b', '/a:='):
        with pytest.raises(ValueError, match='OLD:=NEW'):
            parse_remaps([bad])


def test_resolve_message_type():
    from sensor_msgs.msg import PointCloud2

    from pu_ros.ros.player_node import resolve_message_type

    assert resolve_message_type('sensor_msgs/msg/PointCloud2') == (PointCloud2, None)
    assert resolve_message_type('sensor_msgs/PointCloud2') == (PointCloud2, None)
    cls, reason = resolve_message_type('no_such_pkg_msgs/msg/Thing')
    assert cls is None and 'not importable' in reason
    cls, reason = resolve_message_type('sensor_msgs/msg/NoSuchType')
    assert cls is None and 'NoSuchType' in reason
    assert resolve_message_type('garbage')[0] is None


def test_qos_choices():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from pu_ros.ros.player_node import qos_for

    assert qos_for('reliable', False).reliability == ReliabilityPolicy.RELIABLE
    assert qos_for('reliable', False).durability == DurabilityPolicy.VOLATILE
    assert qos_for('sensor', False).reliability == ReliabilityPolicy.BEST_EFFORT
    latched = qos_for('sensor', True, depth=3)
    assert latched.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert latched.reliability == ReliabilityPolicy.RELIABLE and latched.depth == 3
    with pytest.raises(ValueError, match='unknown qos'):
        qos_for('fast', False)


# ----------------------------------------------------------------------------------------------- config in step


def _player_parameters(bag):
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    from pu_ros.ros.player_node import BagPlayer

    ctx = Context()
    rclpy.init(args=[], context=ctx)
    try:
        plain = Node('plain', context=ctx)
        builtin = set(plain._parameters)  # use_sim_time and friends
        plain.destroy_node()
        node = BagPlayer({'bag': str(bag)}, context=ctx)
        names = set(node._parameters) - builtin
        descriptors = {n: node.describe_parameter(n) for n in names}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
    return names, descriptors


def test_player_yaml_keys_match_declared_parameters(synthetic_bag):
    names, descriptors = _player_parameters(synthetic_bag[0])
    doc = yaml.safe_load((ROOT / 'config' / 'player.yaml').read_text())
    keys = set(doc['/**']['ros__parameters'])
    assert keys == names
    assert all(d.description for d in descriptors.values())
    for required in ('bag', 'rate', 'loop', 'start_offset', 'publish_clock', 'qos'):
        assert required in keys


def test_player_yaml_loads_as_ros_params_file(synthetic_bag):
    """The YAML parses with rcl's parser and its values reach the node (rate 1.0 from the file, overridden here)."""
    import rclpy
    from rclpy.context import Context

    from pu_ros.ros.player_node import BagPlayer

    ctx = Context()
    rclpy.init(args=['x', '--ros-args', '--params-file', str(ROOT / 'config' / 'player.yaml'),
                     '-p', f'bag:={synthetic_bag[0]}', '-p', 'rate:=3.0'], context=ctx)
    try:
        node = BagPlayer(context=ctx)
        assert node.rate == 3.0 and node.loop is False and node.get_parameter('qos').value == 'reliable'
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def _launch_calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, {k.arg: k.value for k in node.keywords if k.arg}


def test_launch_file_compiles_and_names_existing_executables(tmp_path):
    launch = ROOT / 'launch' / 'replay.launch.py'
    py_compile.compile(str(launch), cfile=str(tmp_path / 'replay.pyc'), doraise=True)
    setup_tree = ast.parse((ROOT / 'setup.py').read_text())
    nodes = next(ast.literal_eval(n.value) for n in ast.walk(setup_tree)
                 if isinstance(n, ast.Assign) and any(getattr(t, 'id', None) == 'NODES' for t in n.targets))
    tree = ast.parse(launch.read_text())
    executables, launch_args = [], []
    for call, kw in _launch_calls(tree):
        if 'executable' in kw:
            assert ast.literal_eval(kw['package']) == 'pu_ros'
            executables.append(ast.literal_eval(kw['executable']))
        if getattr(call.func, 'id', None) == 'DeclareLaunchArgument':
            launch_args.append(ast.literal_eval(call.args[0]))
    assert executables == ['player_node']
    assert set(executables) <= set(nodes)
    # every launch argument except the file choice names a player parameter
    params = set(yaml.safe_load((ROOT / 'config' / 'player.yaml').read_text())['/**']['ros__parameters'])
    assert set(launch_args) - {'params_file'} <= params
    assert 'bag' in launch_args


# ----------------------------------------------------------------------------------------------- errors


def test_missing_bag_gives_clear_error(tmp_path):
    res = _run(_play_cmd(tmp_path / 'no_such_bag'))
    assert res.returncode != 0
    assert 'no_such_bag does not exist' in res.stderr


@pytest.mark.parametrize('kind', ['metadata', 'mcap'])
def test_corrupt_bag_gives_clear_error(tmp_path, kind):
    if kind == 'metadata':
        bag = tmp_path / 'bag'
        bag.mkdir()
        (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: [this is not a bag\n')
    else:
        bag = tmp_path / 'broken.mcap'
        bag.write_bytes(b'\x89MCAP0\r\n' + os.urandom(256))
    res = _run(_play_cmd(bag))
    assert res.returncode == 2
    assert 'pu-ros play: error' in res.stderr and 'cannot open bag' in res.stderr
    assert 'Traceback' not in res.stderr


def test_bad_arguments_give_clear_errors(synthetic_bag):
    bag = synthetic_bag[0]
    res = _run(_play_cmd(bag, '--start-offset', 99))
    assert res.returncode == 2 and 'past the end of the bag' in res.stderr
    res = _run(_play_cmd(bag, '--remap', 'nonsense'))
    assert res.returncode == 2 and 'OLD:=NEW' in res.stderr
    res = _run([sys.executable, '-m', 'pu_ros.ros.player_node', '--ros-args', '-p', 'rate:=500.0',
                '-p', f'bag:={bag}'])
    assert res.returncode == 2 and 'rate' in res.stderr and 'Traceback' not in res.stderr
    res = _run([sys.executable, '-m', 'pu_ros.ros.player_node'])
    assert res.returncode == 2 and 'parameter "bag" is empty' in res.stderr


def test_unknown_type_topics_are_skipped_with_one_warning(tmp_path):
    from rosbags.typesys import get_types_from_msg

    from pu_ros.data import bag as bagio
    from pu_ros.ops.cloud_layout import make_structured

    store = bagio.get_typestore()
    msgtype = 'pu_ros_test_msgs/msg/Blob'
    if msgtype not in store.types:
        store.register(get_types_from_msg('uint8[] data', msgtype))
    xyz = np.arange(12, dtype=np.float32).reshape(3, 4)
    cloud = make_structured({k: xyz[:, i] for i, k in enumerate(('x', 'y', 'z', 'intensity'))})
    with bagio.BagWriter(tmp_path / 'bag') as bag:
        bag.add_topic(POINTS, 'sensor_msgs/msg/PointCloud2')
        bag.add_topic('/blob', msgtype)
        for i in range(3):
            stamp = 1_000_000_000 + i * 10_000_000
            bag.write(POINTS, stamp, bagio.pointcloud2(cloud, stamp, 'velo_link'))
            bag.write('/blob', stamp, store.types[msgtype](data=np.zeros(4, np.uint8)))
    res = _run(_play_cmd(tmp_path / 'bag', '--rate', 5))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    warnings = [line for line in out.splitlines() if '/blob' in line and 'WARN' in line]
    assert len(warnings) == 1 and 'pu_ros_test_msgs' in warnings[0] and 'not importable' in warnings[0]
    assert f'{POINTS}: 3' in out  # the importable topic was still played


# ----------------------------------------------------------------------------------------------- over DDS


def _stamps(echo_session, topic=POINTS):
    return [r['stamp_ns'] for r in echo_session.node.records if r['topic'] == topic]


def _publisher_reliability(echo_session, topic):
    """Reliability policies the publishers of ``topic`` offer, as the ROS graph reports them."""
    return {i.qos_profile.reliability for i in echo_session.node.get_publishers_info_by_topic(topic)}


def _assert_pace(echo_session, rate, topic=POINTS):
    """Wall time between arrivals is bag time between them / rate, within a generous band.

    The slope is the median over all pairs of messages (Theil-Sen), so one message delayed by a loaded machine
    does not decide the result.
    """
    recs = [r for r in echo_session.node.records if r['topic'] == topic]
    stamps = np.array([r['stamp_ns'] for r in recs], np.float64)
    arrivals = np.array([r['received_ns'] for r in recs], np.float64)
    i, j = np.triu_indices(len(recs), 1)
    slope = np.median((arrivals[j] - arrivals[i]) / (stamps[j] - stamps[i]))  # wall s per bag s
    assert 0.5 < slope * rate < 1.7, (rate, slope, np.diff(arrivals) / 1e6)


def _clock_listener(echo_session):
    """List that fills with the /clock times (ns) received by a node added to the session."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    clock_ns = []
    node = rclpy.create_node('clock_listener', context=echo_session.context)
    node.create_subscription(Clock, '/clock', lambda m: clock_ns.append(m.clock.sec * 10**9 + m.clock.nanosec),
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    echo_session.executor.add_node(node)
    return clock_ns


def test_play_delivers_every_scan_in_order_and_slow_rate_takes_longer(synthetic_bag, echo):
    bag, info = synthetic_bag
    session = echo({'topics': [POINTS], 'reliable': True, 'depth': 50})
    with Player(bag, '--rate', 0.5, '--wait-for-subscribers', 20, '--topics', POINTS) as player:
        assert session.spin_until(lambda: len(_stamps(session)) >= 1, timeout=25), player.proc.poll()
        qos = _publisher_reliability(session, POINTS)  # asked while the player's publisher exists
        assert session.spin_until(lambda: len(_stamps(session)) >= FRAMES, timeout=25), player.proc.poll()
        rc, out = player.wait()
    assert rc == 0, out
    from rclpy.qos import ReliabilityPolicy

    assert qos == {ReliabilityPolicy.RELIABLE}  # the default matches reliable and best-effort subscribers
    stamps = _stamps(session)
    assert stamps == [info['start_ns'] + i * PERIOD_NS for i in range(FRAMES)]
    _assert_pace(session, 0.5)


@pytest.fixture(scope='module')
def pace_bag(tmp_path_factory):
    """40 tiny point clouds 0.1 s apart (4 s of bag: long enough for the pace to show through a loaded machine)."""
    from pu_ros.data import bag as bagio
    from pu_ros.ops.cloud_layout import make_structured

    xyz = np.arange(12, dtype=np.float32).reshape(3, 4)
    cloud = make_structured({k: xyz[:, i] for i, k in enumerate(('x', 'y', 'z', 'intensity'))})
    path = tmp_path_factory.mktemp('pace') / 'bag'
    with bagio.BagWriter(path) as bag:
        bag.add_topic(POINTS, 'sensor_msgs/msg/PointCloud2')
        for i in range(40):
            stamp = 1_000_000_000 + i * PERIOD_NS
            bag.write(POINTS, stamp, bagio.pointcloud2(cloud, stamp, 'velo_link'))
    return path


@pytest.mark.parametrize('rate', [2.0, 4.0])
def test_fast_rates_are_not_capped(pace_bag, echo, rate):
    session = echo({'topics': [POINTS], 'reliable': True, 'depth': 100})
    with Player(pace_bag, '--rate', rate, '--wait-for-subscribers', 20) as player:
        assert session.spin_until(lambda: len(_stamps(session)) >= 40, timeout=30), player.proc.poll()
        rc, out = player.wait()
    assert rc == 0, out
    assert _stamps(session) == [1_000_000_000 + i * PERIOD_NS for i in range(40)]
    _assert_pace(session, rate)


def test_interrupt_without_loop_exits_130(synthetic_bag, echo):
    bag, _ = synthetic_bag
    session = echo({'topics': [POINTS], 'reliable': True, 'depth': 50})
    with Player(bag, '--rate', 0.5, '--wait-for-subscribers', 20, '--topics', POINTS) as player:
        assert session.spin_until(lambda: len(_stamps(session)) >= 2, timeout=25), player.proc.poll()
        player.proc.send_signal(signal.SIGINT)
        rc, out = player.wait(timeout=10)
    assert rc == 130, out  # unlike a loop, an interrupted single pass is not a success
    assert len(_stamps(session)) < FRAMES
    assert 'Traceback' not in out


def test_wait_for_subscribers_times_out_and_plays_anyway(synthetic_bag, echo):
    bag, info = synthetic_bag
    session = echo({'topics': [POINTS], 'reliable': True, 'depth': 50})
    # the image topic never gets a subscriber: the player waits its 4 s, then plays both topics
    with Player(bag, '--rate', 5, '--wait-for-subscribers', 4, '--topics', POINTS, IMAGE) as player:
        assert session.spin_until(lambda: len(_stamps(session)) >= FRAMES, timeout=25), player.proc.poll()
        rc, out = player.wait()
    assert rc == 0, out
    assert _stamps(session) == [info['start_ns'] + i * PERIOD_NS for i in range(FRAMES)]
    assert f'no subscriber after 4 s on {IMAGE}' in out, out
    # the wait, on the player's own log clock (how soon this process discovers it does not matter)
    waited = _log_time(out, 'playback started') - _log_time(out, 'waiting up to 4 s')
    assert 3.9 < waited < 12.0, (waited, out)
    assert f'{IMAGE}: {FRAMES}' in out  # published with nobody listening


def _log_time(out, text):
    """Time stamp (s) of the first ROS log line of ``out`` containing ``text``."""
    for line in out.splitlines():
        m = re.match(r'\[\w+\] \[(\d+\.\d+)\]', line)
        if m and text in line:
            return float(m.group(1))
    raise AssertionError(f'no log line with {text!r} in:\n{out}')


def test_bag_error_mid_playback_fails_cleanly(tmp_path):
    import sqlite3

    from pu_ros.data import bag as bagio
    from pu_ros.ops.cloud_layout import make_structured

    xyz = np.arange(12, dtype=np.float32).reshape(3, 4)
    cloud = make_structured({k: xyz[:, i] for i, k in enumerate(('x', 'y', 'z', 'intensity'))})
    with bagio.BagWriter(tmp_path / 'bag', storage='sqlite3') as bag:
        bag.add_topic(POINTS, 'sensor_msgs/msg/PointCloud2')
        for i in range(10):
            stamp = 1_000_000_000 + i * 20_000_000
            bag.write(POINTS, stamp, bagio.pointcloud2(cloud, stamp, 'velo_link'))
    db = next((tmp_path / 'bag').glob('*.db3'))
    with sqlite3.connect(db) as con:  # the 6th record is damaged: its payload is text, not CDR bytes
        con.execute("UPDATE messages SET data = 'damaged' WHERE id = 6")
    con.close()
    res = _run(_play_cmd(tmp_path / 'bag', '--rate', 5))
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert 'Traceback' not in out and 'playback failed' in out and str(tmp_path / 'bag') in out


def test_linger_waits_for_a_reliable_subscriber_that_does_not_acknowledge(synthetic_bag):
    """A stopped (SIGSTOP) reliable subscriber never acknowledges: the player waits ``--linger`` s, then exits."""
    import threading

    bag, _ = synthetic_bag
    sub = subprocess.Popen([sys.executable, '-m', 'pu_ros.cli', 'echo', '--topics', POINTS, '--reliable',
                            '--quiet', '--depth', '1'], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        with Player(bag, '--rate', 10, '--wait-for-subscribers', 20, '--linger', 3, '--topics', POINTS) as player:
            lines, matched = [], threading.Event()

            def read():
                for line in player.proc.stdout:
                    lines.append((time.monotonic(), line))
                    if 'every topic has a subscriber' in line:
                        matched.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            assert matched.wait(timeout=25), ''.join(line for _, line in lines)
            sub.send_signal(signal.SIGSTOP)
            t_stop = time.monotonic()
            player.proc.wait(timeout=20)
            t_exit = time.monotonic()
            reader.join(timeout=5)
        out = ''.join(line for _, line in lines)
        assert player.proc.returncode == 0, out
        assert f'{POINTS}: {FRAMES}' in out
        # 0.5 s settle + 0.09 s of playback + 3 s of linger; without the linger it exits within ~1 s
        assert 2.5 < t_exit - t_stop < 15, (t_exit - t_stop, out)
    finally:
        # Resumed, the subscriber may be re-creating shared-memory ports (a likely, unconfirmed cause of the CI hang);
        # a SIGKILL right then could leave a half-created segment that hangs every later participant (test/procs.py),
        # so it is stopped with SIGINT and killed only if it ignores that.
        sub.send_signal(signal.SIGCONT)
        stop(sub)


def test_start_offset_skips_early_messages(synthetic_bag, echo):
    bag, info = synthetic_bag
    session = echo({'topics': [POINTS], 'reliable': True, 'depth': 50})
    with Player(bag, '--start-offset', 0.45, '--rate', 4, '--wait-for-subscribers', 20, '--topics', POINTS) as player:
        rc, out = player.wait(timeout=25)
        session.spin_until(lambda: len(_stamps(session)) >= 5, timeout=5)
    assert rc == 0, out
    assert _stamps(session) == [info['start_ns'] + i * PERIOD_NS for i in range(5, FRAMES)]


def test_loop_replays_until_interrupted_and_clock_jumps_back(synthetic_bag, echo):
    bag, info = synthetic_bag
    session = echo({'topics': [POINTS], 'reliable': True, 'depth': 50})
    clock_ns = _clock_listener(session)
    with Player(bag, '--loop', '--clock', '--rate', 5, '--wait-for-subscribers', 20, '--topics', POINTS) as player:
        assert session.spin_until(lambda: len(_stamps(session)) >= FRAMES + 5, timeout=25)
        assert player.proc.poll() is None  # still playing
        player.proc.send_signal(signal.SIGINT)
        rc, out = player.wait(timeout=10)
    assert rc == 0, out  # a loop stopped with Ctrl-C is a clean exit
    stamps = _stamps(session)
    assert stamps[:FRAMES] == [info['start_ns'] + i * PERIOD_NS for i in range(FRAMES)]
    assert stamps[FRAMES] == info['start_ns']  # second pass starts again at the beginning
    # /clock follows: it reaches the end of the bag, jumps back to its start once, and never leaves the bag's span
    clock = np.array(clock_ns)
    back = np.flatnonzero(np.diff(clock) < 0)
    assert len(back) == 1, clock
    j = back[0]
    assert clock[j] >= info['start_ns'] + (FRAMES - 2) * PERIOD_NS
    assert info['start_ns'] <= clock[j + 1] <= info['start_ns'] + 2 * PERIOD_NS
    # the 40 Hz timer may run a little past the last stamp when the machine lags: allow one bag period
    assert clock.min() >= info['start_ns'] and clock.max() <= info['end_ns'] + PERIOD_NS


def test_clock_is_published_and_sim_time_nodes_follow_it(synthetic_bag, echo):
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    bag, info = synthetic_bag
    session = echo({'topics': [POINTS], 'reliable': True, 'depth': 50})
    clock_ns = []
    follower = Node('sim_time_follower', context=session.context,
                    parameter_overrides=[Parameter('use_sim_time', value=True)])
    follower.create_subscription(Clock, '/clock', lambda m: clock_ns.append(m.clock.sec * 10**9 + m.clock.nanosec),
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    session.executor.add_node(follower)
    try:
        with Player(bag, '--clock', '--rate', 2, '--wait-for-subscribers', 20, '--topics', POINTS) as player:
            assert session.spin_until(lambda: len(_stamps(session)) >= FRAMES, timeout=25)
            rc, out = player.wait()
            session.spin_until(lambda: False, timeout=0.2)
        assert rc == 0, out
        assert len(clock_ns) >= FRAMES
        # the 40 Hz timer may run a little past the last stamp when the machine lags: allow one bag period
        assert all(info['start_ns'] <= c <= info['end_ns'] + PERIOD_NS for c in clock_ns)
        assert np.all(np.diff(clock_ns) >= 0)
        assert clock_ns[-1] == info['end_ns']
        # the use_sim_time node's clock is the bag's (2011), not the wall clock
        now = follower.get_clock().now().nanoseconds
        assert info['start_ns'] <= now <= info['end_ns']
    finally:
        session.executor.remove_node(follower)
        follower.destroy_node()


def test_remap_and_topic_selection(synthetic_bag, echo):
    bag, _ = synthetic_bag
    session = echo({'topics': ['/points:sensor_msgs/msg/PointCloud2'], 'reliable': True, 'depth': 50})
    with Player(bag, '--topics', POINTS, '--remap', f'{POINTS}:=/points', '--rate', 5,
                '--wait-for-subscribers', 20) as player:
        rc, out = player.wait(timeout=25)
        session.spin_until(lambda: len(_stamps(session, '/points')) >= FRAMES, timeout=5)
    assert rc == 0, out
    assert len(_stamps(session, '/points')) == FRAMES
    assert '/points: 10' in out and 'image_raw' not in out.split('done:')[-1]


def test_sensor_qos_publisher_reaches_best_effort_subscriber(synthetic_bag, echo):
    bag, info = synthetic_bag
    session = echo({'topics': [POINTS], 'reliable': False, 'depth': 50})
    with Player(bag, '--qos', 'sensor', '--rate', 2, '--wait-for-subscribers', 20,
                '--topics', POINTS) as player:
        assert session.spin_until(lambda: len(_stamps(session)) >= 1, timeout=25), player.proc.poll()
        qos = _publisher_reliability(session, POINTS)
        session.spin_until(lambda: len(_stamps(session)) >= FRAMES, timeout=25)
        rc, out = player.wait()
    assert rc == 0, out
    # a reliable writer would reach this best-effort reader too: ask the graph what the writer offers
    from rclpy.qos import ReliabilityPolicy

    assert qos == {ReliabilityPolicy.BEST_EFFORT}
    # best effort may drop under load, but what arrives is in order and from the bag
    stamps = _stamps(session)
    assert stamps and stamps == sorted(stamps)
    assert set(stamps) <= {info['start_ns'] + i * PERIOD_NS for i in range(FRAMES)}


def test_player_parameters_come_from_the_shared_dataclass_and_refuse_runtime_changes(synthetic_bag):
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from pu_ros.ros.node_config import PlayerConfig
    from pu_ros.ros.player_node import BagPlayer

    ctx = Context()
    rclpy.init(args=[], context=ctx)
    try:
        node = BagPlayer({'bag': str(synthetic_bag[0]), 'rate': 2.0}, context=ctx)
        assert node.params[''] == PlayerConfig(bag=str(synthetic_bag[0]), rate=2.0)
        assert node.describe_parameter('rate').floating_point_range[0].from_value == 0.01
        result = node.set_parameters([Parameter('rate', value=3.0)])[0]
        assert not result.successful and 'read-only' in result.reason
        node.destroy_node()
        with pytest.raises(ValueError, match='qos'):
            BagPlayer({'bag': str(synthetic_bag[0]), 'qos': 'fast'}, context=ctx)
    finally:
        rclpy.try_shutdown(context=ctx)
