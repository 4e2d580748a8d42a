"""Replay a rosbag2 over ROS 2 with rclpy: ``BagPlayer`` node, ``player_node`` executable and ``pu-ros play``.

The bag is read with :mod:`pu_ros.data.bag` (pure Python ``rosbags``, no rosbag2 installation) and every message
is published as the raw CDR bytes stored in the bag (``publisher.publish(raw_bytes)``): nothing is decoded or
re-encoded on the way, so subscribers receive exactly what was recorded.

Timing: message ``k`` with bag time ``t_k`` is published at wall time ``w0 + (t_k - t_origin) / rate`` where
``t_origin = bag start + start_offset``. A single steady-clock timer is re-armed to the due time of the next
message, so the node composes with other nodes in one ``SingleThreadedExecutor`` (``MultiThreadedExecutor`` drops
timer events with the PyPI wheels; see the project notes).

QoS choice: data topics are published **reliable, keep-last 10, volatile** by default (``qos: reliable``). A
reliable writer matches both reliable subscribers (RViz, ``ros2 topic echo``) and best-effort sensor-data
subscribers (our nodes, GUIDE section 2); a best-effort writer would not match reliable subscribers at all.
``qos: sensor`` publishes with the sensor-data profile (best effort) instead, which is what a live driver does.
Topics recorded as transient-local (and ``/tf_static`` always) are published reliable + transient-local with a
history deep enough for all of their messages, so late subscribers still get the static transforms; their
messages before ``start_offset`` are published at the start instead of being skipped. ``/clock``
(``rosgraph_msgs/msg/Clock``, reliable keep-last 10: it also matches the best-effort subscription of rclpy's time
source) carries the bag time at ``clock_frequency`` Hz and just before every message when ``publish_clock`` is set,
so nodes with ``use_sim_time:=true`` follow the recording. With ``loop`` the clock jumps back at each restart.

Large best-effort messages (PointCloud2 of ~2 MB) need the big shared-memory segment of
``config/fastdds_profile.xml`` on both sides (``FASTDDS_DEFAULT_PROFILES_FILE``); that profile also pins UDP to
loopback, so it is not applied automatically.

Parameters (also in ``config/player.yaml``): ``bag``, ``rate``, ``loop``, ``start_offset``, ``publish_clock``,
``clock_frequency``, ``qos``, ``topics``, ``remap``, ``wait_for_subscribers``, ``linger``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
import importlib
from pathlib import Path
import sys
import time

try:
    import rclpy
    from rclpy.clock import Clock, ClockType
    from rclpy.duration import Duration
    from rclpy.exceptions import NameValidationException, ParameterException, ParameterUninitializedException
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import (
        DurabilityPolicy,
        HistoryPolicy,
        QoSProfile,
        ReliabilityPolicy,
        qos_profile_sensor_data,
    )
    from rclpy.task import Future
except ImportError as exc:  # pragma: no cover - exercised only without rclpy
    raise ImportError(
        'pu_ros.ros.player_node needs rclpy: source a ROS 2 installation or '
        '`pip install ros-rclpy ros-rmw-fastrtps-cpp ros-rosgraph-msgs ros-sensor-msgs`'
    ) from exc

from pu_ros.data.bag import BagError, bag_info, read_bag

NODE_NAME = 'bag_player'
CLOCK_TOPIC = '/clock'
LATCHED_TOPICS = ('/tf_static',)
QOS_CHOICES = ('reliable', 'sensor')
_NS = 1_000_000_000
_MIN_TIMER_NS = 100_000  # re-arm the timer no shorter than 0.1 ms
_SETTLE_S = 0.5  # after every topic is matched: time for the subscriber side to match the writers as well
# What a bad parameter, remap or bag raises while the node is built.
SETUP_ERRORS = (ValueError, OSError, ParameterException, NameValidationException)


# ------------------------------------------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class Pace:
    """Maps bag time to wall (steady) time for playback at ``rate`` times real time.

    Attributes:
        rate: playback speed factor (> 0); 2.0 plays twice as fast as recorded.
        bag_origin_ns: bag time (int ns) that is played at ``wall_origin_ns``.
        wall_origin_ns: steady-clock time (int ns) at which playback (re)started.
    """

    rate: float
    bag_origin_ns: int
    wall_origin_ns: int

    def due_ns(self, bag_ns: int) -> int:
        """Steady-clock time (int ns) at which the message with bag time ``bag_ns`` is due."""
        return self.wall_origin_ns + int(round((int(bag_ns) - self.bag_origin_ns) / self.rate))

    def bag_time_ns(self, wall_ns: int) -> int:
        """Bag time (int ns) that corresponds to steady-clock time ``wall_ns``."""
        return self.bag_origin_ns + int(round((int(wall_ns) - self.wall_origin_ns) * self.rate))


def parse_remaps(items) -> dict[str, str]:
    """Turn ``['old:=new', ...]`` into ``{'old': 'new'}``.

    Raises:
        ValueError: an item without ``:=`` or with an empty side.
    """
    out = {}
    for item in items or ():
        old, sep, new = str(item).partition(':=')
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f'bad remap {item!r}: expected OLD:=NEW (e.g. /kitti/velo/pointcloud:=/points)')
        out[old.strip()] = new.strip()
    return out


def resolve_message_type(msgtype: str):
    """Import the Python class of a ROS message type.

    Args:
        msgtype: ``'pkg/msg/Type'`` (rosbag2 spelling) or ``'pkg/Type'``.

    Returns:
        ``(cls, None)`` when importable, ``(None, reason)`` otherwise.
    """
    parts = str(msgtype).split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3 or not all(parts):
        return None, f'malformed message type {msgtype!r}'
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f'{pkg}.{kind}')
    except ImportError:
        hint = ''
        if pkg == 'tf2_msgs':
            hint = ' (no PyPI wheel exists: run requirements/build_tf2_msgs.sh, or source ROS 2)'
        return None, f'the Python package {pkg} is not importable{hint}'
    cls = getattr(module, name, None)
    if cls is None:
        return None, f'{pkg}.{kind} has no type {name}'
    return cls, None


def qos_for(mode: str, latched: bool, depth: int = 10) -> QoSProfile:
    """Publisher QoS for a replayed topic.

    Args:
        mode: ``'reliable'`` (reliable, keep-last ``depth``) or ``'sensor'`` (the sensor-data profile).
        latched: transient-local topic (``/tf_static``): reliable + transient-local whatever ``mode`` is.
        depth: keep-last depth (for latched topics: how many messages late subscribers get).
    """
    if latched:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=max(1, int(depth)),
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
    if mode == 'sensor':
        return qos_profile_sensor_data
    if mode == 'reliable':
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=max(1, int(depth)),
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
    raise ValueError(f'unknown qos {mode!r}; use one of {", ".join(QOS_CHOICES)}')


# ------------------------------------------------------------------------------------------------- node


class BagPlayer(Node):
    """Publishes the messages of a rosbag2 in (scaled) real time.

    Args:
        settings: parameter values by name (overrides the defaults and ``--ros-args``), e.g.
            ``{'bag': '/data/kitti_bag', 'rate': 2.0}``.
        node_name: ROS node name.
        **kwargs: passed to :class:`rclpy.node.Node` (``context``, ``cli_args``...).

    Attributes:
        finished: future completed (with :attr:`published`) once playback ends without ``loop``.
        published: ``{topic: count}`` of messages published so far (output topic names).
        skipped: ``{topic: reason}`` of bag topics not played (type not importable, not selected).
        loops: number of completed passes over the bag.

    Raises:
        ValueError: bad parameters, or the bag cannot be read (:class:`pu_ros.data.bag.BagError`).
    """

    def __init__(self, settings: dict | None = None, *, node_name: str = NODE_NAME, **kwargs):
        """Declare parameters, open the bag, create the publishers and arm the playback timer."""
        overrides = list(kwargs.pop('parameter_overrides', None) or [])
        # An empty list cannot be typed as a string array by rclpy; "not set" means the same (empty) here.
        overrides += [_to_parameter(k, v) for k, v in (settings or {}).items() if not _empty_list(v)]
        super().__init__(node_name, parameter_overrides=overrides, **kwargs)
        self._declare_parameters()
        p = self._read_parameters()
        self.bag_path = Path(p['bag'])
        self.rate = p['rate']
        self.loop = p['loop']
        self.start_offset = p['start_offset']
        self.publish_clock = p['publish_clock']
        self.wait_timeout = p['wait_for_subscribers']
        self.linger = p['linger']
        self.finished = Future()
        self.published: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self.loops = 0

        self.info = bag_info(self.bag_path)  # BagError (a ValueError) for a missing or corrupt bag
        if self.info['message_count'] == 0:
            raise BagError(f'bag {self.bag_path} has no messages')
        self._start_ns = int(self.info['start_ns'])
        self._origin_ns = self._start_ns + int(round(self.start_offset * _NS))
        if self._origin_ns > int(self.info['end_ns']):
            raise ValueError(
                f'start_offset {self.start_offset:g} s is past the end of the bag '
                f'({self.info["duration_ns"] / _NS:.3f} s long)'
            )
        self._pubs: dict[str, object] = {}  # bag topic -> publisher
        self._out_name: dict[str, str] = {}  # bag topic -> published topic
        self._latched: set[str] = set()
        self._create_publishers(p)

        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._clock_pub = None
        self._clock_timer = None
        self._last_clock_ns = None
        if self.publish_clock:
            try:
                from rosgraph_msgs.msg import Clock as ClockMsg
            except ImportError:
                self.get_logger().warning('publish_clock is set but rosgraph_msgs is not importable '
                                          '(pip install ros-rosgraph-msgs): no /clock')
                self.publish_clock = False
        if self.publish_clock:
            self._clock_msg_type = ClockMsg
            self._clock_pub = self.create_publisher(ClockMsg, CLOCK_TOPIC, qos_for('reliable', False))
            self._clock_timer = self.create_timer(1.0 / p['clock_frequency'], self._on_clock_timer, clock=self._steady)
            self._clock_timer.cancel()

        self._pace: Pace | None = None
        self._messages = None
        self._pending = None
        self._wall_start = time.monotonic()
        self._wait_deadline = None
        self._matched_at = None
        self._last_wait_log = 0.0
        self._state = 'waiting' if self.wait_timeout > 0 else 'starting'
        if self._state == 'waiting':
            self._wait_deadline = time.monotonic() + self.wait_timeout
            self._last_wait_log = time.monotonic()
            self.get_logger().info(
                f'waiting up to {self.wait_timeout:g} s for subscribers on {", ".join(self._data_topics())}'
            )
        self._timer = self.create_timer(0.05 if self._state == 'waiting' else 0.001, self._on_timer, clock=self._steady)

    # ------------------------------------------------------------------ set-up
    def _declare_parameters(self) -> None:
        from pu_ros.ros.node_config import PlayerConfig
        from pu_ros.ros.node_params import ParameterSections

        # The bag, pacing and topics are fixed once playback is set up: runtime changes are refused, not ignored.
        self.params = ParameterSections(self, {'': PlayerConfig},
                                        read_only=[f.name for f in fields(PlayerConfig)])

    def _string_list(self, name: str) -> list[str]:
        try:
            values = self.get_parameter(name).value
        except ParameterUninitializedException:
            return []  # declared without a default: "not set" means an empty list
        return [str(v) for v in (values or []) if str(v)]

    def _read_parameters(self) -> dict:
        p = {
            name: self.get_parameter(name).value
            for name in ('bag', 'rate', 'loop', 'start_offset', 'publish_clock', 'clock_frequency', 'qos',
                         'wait_for_subscribers', 'linger')
        }
        p['topics'] = self._string_list('topics')
        p['remap'] = self._string_list('remap')
        if not p['bag']:
            raise ValueError('parameter "bag" is empty: pass the bag folder (-p bag:=/path/to/bag)')
        if p['qos'] not in QOS_CHOICES:
            raise ValueError(f'parameter "qos" is {p["qos"]!r}; use one of {", ".join(QOS_CHOICES)}')
        return p

    def _create_publishers(self, p: dict) -> None:
        topics = self.info['topics']
        selected = set(p['topics']) if p['topics'] else set(topics)
        unknown = sorted(selected - set(topics))
        if unknown:
            self.get_logger().warning(f'topics not in the bag, ignored: {", ".join(unknown)} '
                                      f'(the bag has {", ".join(sorted(topics))})')
        remaps = parse_remaps(p['remap'])
        for topic in sorted(topics):
            entry = topics[topic]
            if topic not in selected:
                self.skipped[topic] = 'not selected'
                continue
            cls, reason = resolve_message_type(entry['type'])
            if cls is None:
                self.skipped[topic] = reason
                self.get_logger().warning(f'skipping {topic} ({entry["type"]}): {reason}')
                continue
            latched = topic in LATCHED_TOPICS or any(q.get('durability') == 'transient_local'
                                                     for q in entry.get('qos') or [])
            out = remaps.get(topic, topic)
            depth = max(1, int(entry['count'])) if latched else 10
            self._pubs[topic] = self.create_publisher(cls, out, qos_for(p['qos'], latched, depth))
            self._out_name[topic] = out
            self.published[out] = 0
            if latched:
                self._latched.add(topic)
        if not self._pubs:
            raise ValueError(f'nothing to play in {self.bag_path}: '
                             + '; '.join(f'{t}: {r}' for t, r in sorted(self.skipped.items())))
        played = ', '.join(f'{t} -> {self._out_name[t]}' if self._out_name[t] != t else t
                           for t in sorted(self._pubs))
        self.get_logger().info(f'bag {self.bag_path}: {self.info["message_count"]} messages, '
                               f'{self.info["duration_ns"] / _NS:.3f} s; playing {played} at rate {p["rate"]:g}'
                               + (f' from {p["start_offset"]:g} s' if p['start_offset'] else '')
                               + (' (loop)' if p['loop'] else ''))

    def _data_topics(self) -> list[str]:
        return [self._out_name[t] for t in sorted(self._pubs) if t not in self._latched]

    # ------------------------------------------------------------------ playback
    def _message_stream(self, first_pass: bool):
        """Yield (bag_topic, due_bag_ns, raw) of the played topics from the origin on.

        Latched (transient-local) topics go out on the first pass only: their publisher keeps them for late
        subscribers, so a loop never re-sends a static transform.
        """
        for topic, _msgtype, stamp, raw in read_bag(self.bag_path, topics=list(self._pubs)):
            if not first_pass and topic in self._latched:
                continue
            if stamp < self._origin_ns:
                if first_pass and topic in self._latched:
                    yield topic, self._origin_ns, raw  # static transforms are needed whatever the offset
                continue
            yield topic, stamp, raw

    def _start_pass(self) -> None:
        now = self._steady.now().nanoseconds
        if self.loops == 0:
            self._wall_start = time.monotonic()
        self._pace = Pace(self.rate, self._origin_ns, now)
        self._messages = self._message_stream(first_pass=self.loops == 0)
        self._pending = next(self._messages, None)
        if self._pending is None:
            self.get_logger().warning('no message of the played topics from the start offset on')
            self._finish()
            return
        self._state = 'playing'
        if self._clock_timer is not None:
            self._last_clock_ns = None
            self._clock_timer.reset()
        self.get_logger().info('playback started' if self.loops == 0 else f'loop {self.loops}: playing again')

    def _arm(self, delay_ns: int) -> None:
        self._timer.timer_period_ns = max(_MIN_TIMER_NS, int(delay_ns))
        self._timer.reset()

    def _on_timer(self) -> None:
        try:
            if self._state == 'waiting':
                self._check_subscribers()
            elif self._state == 'starting':
                self._start_pass()
                if self._state == 'playing':
                    self._play_due()
            elif self._state == 'playing':
                self._play_due()
        except BagError as exc:
            self.get_logger().error(f'playback failed: {exc}')
            self._finish(error=str(exc))

    def _check_subscribers(self) -> None:
        now = time.monotonic()
        missing = [self._out_name[t] for t in sorted(self._pubs)
                   if t not in self._latched and self._pubs[t].get_subscription_count() == 0]
        if not missing:
            if self._matched_at is None:
                self._matched_at = now
                self.get_logger().info('every topic has a subscriber')
            if now - self._matched_at >= _SETTLE_S:
                self._state = 'starting'
                self._arm(0)
            return
        self._matched_at = None
        if now >= self._wait_deadline:
            self.get_logger().warning(f'no subscriber after {self.wait_timeout:g} s on {", ".join(missing)}; '
                                      'playing anyway')
            self._state = 'starting'
            self._arm(0)
        elif now - self._last_wait_log >= 2.0:
            self._last_wait_log = now
            self.get_logger().info(f'still waiting for subscribers on {", ".join(missing)}')

    def _play_due(self) -> None:
        now = self._steady.now().nanoseconds
        while self._pending is not None:
            topic, stamp, raw = self._pending
            due = self._pace.due_ns(stamp)
            if due > now + _MIN_TIMER_NS:
                self._arm(due - now)
                return
            self._publish_clock(stamp)
            self._pubs[topic].publish(raw if isinstance(raw, bytes) else bytes(raw))
            self.published[self._out_name[topic]] += 1
            self._pending = next(self._messages, None)
            now = self._steady.now().nanoseconds
        self.loops += 1
        if self.loop:
            self._start_pass()
            if self._state == 'playing':
                self._arm(0)
        else:
            self._finish()

    def _publish_clock(self, bag_ns: int | None = None) -> None:
        if self._clock_pub is None or self._pace is None:
            return
        if bag_ns is None:
            bag_ns = self._pace.bag_time_ns(self._steady.now().nanoseconds)
            if self._pending is not None:  # a late data timer (busy CPU): the clock never runs past the next message
                bag_ns = min(bag_ns, int(self._pending[1]))
        if self._last_clock_ns is not None and bag_ns < self._last_clock_ns:
            bag_ns = self._last_clock_ns  # never backwards within one pass
        self._last_clock_ns = bag_ns
        msg = self._clock_msg_type()
        msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), _NS)
        self._clock_pub.publish(msg)

    def _on_clock_timer(self) -> None:
        if self._state == 'playing':
            self._publish_clock()

    def _finish(self, error: str | None = None) -> None:
        self._state = 'done'
        self._timer.cancel()
        if self._clock_timer is not None:
            self._clock_timer.cancel()
        if error is None and self.linger > 0:
            for pub in self._pubs.values():
                pub.wait_for_all_acked(Duration(seconds=self.linger))
        total = sum(self.published.values())
        counts = ', '.join(f'{t}: {n}' for t, n in sorted(self.published.items()))
        if error is None:
            self.get_logger().info(f'done: published {total} messages in {time.monotonic() - self._wall_start:.2f} s'
                                   f' ({counts})')
            self.finished.set_result(dict(self.published))
        else:
            self.finished.set_exception(BagError(error))

    @property
    def done(self) -> bool:
        """True once playback has ended (never with ``loop``)."""
        return self._state == 'done'


def _empty_list(value) -> bool:
    return isinstance(value, (list, tuple)) and not value


def _to_parameter(name: str, value) -> Parameter:
    if isinstance(value, (list, tuple)):
        return Parameter(name, Parameter.Type.STRING_ARRAY, [str(v) for v in value])
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # all numeric player parameters are doubles
    return Parameter(name, value=value)


# ------------------------------------------------------------------------------------------------- entry points


def spin_player(player: BagPlayer, executor=None) -> int:
    """Spin until the player finishes (or forever with ``loop``); returns an exit status (0 = clean)."""
    executor = executor or SingleThreadedExecutor(context=player.context)
    executor.add_node(player)
    try:
        executor.spin_until_future_complete(player.finished)
    except (KeyboardInterrupt, ExternalShutdownException):
        print(f'bag player: interrupted after {sum(player.published.values())} messages '
              f'({player.loops} complete passes)', file=sys.stderr, flush=True)
        return 0 if player.loop else 130
    finally:
        try:
            executor.remove_node(player)
        except Exception:  # noqa: BLE001 - the context may already be shut down by the signal handler
            pass
    if player.finished.exception() is not None:
        return 1
    return 0


def main(args=None) -> int:
    """``ros2 run pu_ros player_node --ros-args -p bag:=PATH [-p rate:=2.0] ...``.

    Exit codes: 0 played to the end or stopped by SIGINT/SIGTERM (once or more); 1 playback failed; 2 bad
    parameters or a missing/corrupt bag (one line on stderr). ``--help`` prints usage without starting ROS.
    """
    from pu_ros.ros.process import node_main

    def finished(player):
        if not player.finished.done():
            return None
        return 1 if player.finished.exception() is not None else 0

    from pu_ros.ros.node_config import PlayerConfig
    from pu_ros.ros.process import parameter_table

    return node_main(BagPlayer, prog='player_node', description=__doc__, argv=args, finished=finished,
                     parameters=parameter_table({'': PlayerConfig}))


def add_arguments(parser) -> None:
    """Arguments of ``pu-ros play``."""
    parser.add_argument('bag', help='rosbag2 folder (or .mcap / .db3 file)')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed factor (default 1.0)')
    parser.add_argument('--loop', action='store_true', help='play again from the start at the end (Ctrl-C stops)')
    parser.add_argument('--start-offset', type=float, default=0.0, metavar='S',
                        help='skip the first S seconds of the bag')
    parser.add_argument('--clock', action='store_true', help='publish the bag time on /clock (use_sim_time nodes)')
    parser.add_argument('--clock-frequency', type=float, default=40.0, metavar='HZ',
                        help='/clock messages per second (default 40)')
    parser.add_argument('--topics', nargs='+', default=[], metavar='TOPIC', help='play only these topics')
    parser.add_argument('--remap', nargs='+', default=[], metavar='OLD:=NEW', help='publish OLD as NEW')
    parser.add_argument('--qos', choices=QOS_CHOICES, default='reliable',
                        help='data topic QoS: reliable (default; matches best-effort and reliable subscribers) or '
                             'sensor (best effort)')
    parser.add_argument('--wait-for-subscribers', type=float, nargs='?', const=30.0, default=0.0, metavar='S',
                        help='wait (up to S seconds, default 30) until every played topic has a subscriber')
    parser.add_argument('--linger', type=float, default=1.0, metavar='S',
                        help='at the end wait up to S seconds for reliable subscribers to acknowledge')


def settings_from_args(args) -> dict:
    """Player parameters from parsed ``pu-ros play`` arguments."""
    return {
        'bag': str(args.bag),
        'rate': float(args.rate),
        'loop': bool(args.loop),
        'start_offset': float(args.start_offset),
        'publish_clock': bool(args.clock),
        'clock_frequency': float(args.clock_frequency),
        'qos': args.qos,
        'topics': list(args.topics or []),
        'remap': list(args.remap or []),
        'wait_for_subscribers': float(args.wait_for_subscribers or 0.0),
        'linger': float(args.linger),
    }


def run(args) -> int:
    """``pu-ros play BAG ...``: returns 0 when the bag was played, 2 for a bad bag or argument, 130 if interrupted."""
    if not Path(args.bag).exists():
        print(f'pu-ros play: error: bag {args.bag} does not exist', file=sys.stderr)
        return 2
    if args.rate <= 0:
        print(f'pu-ros play: error: --rate must be > 0, got {args.rate:g}', file=sys.stderr)
        return 2
    rclpy.init(args=['pu-ros-play'])
    try:
        try:
            player = BagPlayer(settings_from_args(args))
        except SETUP_ERRORS as exc:
            print(f'pu-ros play: error: {exc}', file=sys.stderr)
            return 2
        code = spin_player(player)
        player.destroy_node()
        return code
    finally:
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
