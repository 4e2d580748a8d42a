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

from dataclasses import fields
from pathlib import Path
import sys
import time

try:
    from rclpy.clock import Clock, ClockType
    from rclpy.exceptions import NameValidationException, ParameterException, ParameterUninitializedException
    from rclpy.node import Node
    from rclpy.task import Future
except ImportError as exc:  # pragma: no cover - exercised only without rclpy
    raise ImportError(
        'pu_ros.ros.player_node needs rclpy: source a ROS 2 installation or '
        '`pip install ros-rclpy ros-rmw-fastrtps-cpp ros-rosgraph-msgs ros-sensor-msgs`'
    ) from exc

from pu_ros.data.bag import BagError, bag_info
from pu_ros.ros.message_types import resolve_message_type
from pu_ros.ros.player_cli import add_arguments, run, settings_from_args, spin_player
from pu_ros.ros.player_playback import Pace, PlaybackMixin
from pu_ros.ros.player_settings import QOS_CHOICES, empty_list, parse_remaps, qos_for, to_parameter

__all__ = [
    'CLOCK_TOPIC', 'LATCHED_TOPICS', 'NODE_NAME', 'QOS_CHOICES', 'SETUP_ERRORS', 'BagPlayer', 'Pace',
    'add_arguments', 'main', 'parse_remaps', 'qos_for', 'resolve_message_type', 'run', 'settings_from_args',
    'spin_player',
]

NODE_NAME = 'bag_player'
CLOCK_TOPIC = '/clock'
LATCHED_TOPICS = ('/tf_static',)
_NS = 1_000_000_000
# What a bad parameter, remap or bag raises while the node is built.
SETUP_ERRORS = (ValueError, OSError, ParameterException, NameValidationException)


class BagPlayer(PlaybackMixin, Node):
    """Publishes the messages of a rosbag2 in (scaled) real time.

    This class sets playback up (parameters, bag, publishers, timers); the playback itself (pacing, publishing,
    ``/clock``, the end) is :class:`pu_ros.ros.player_playback.PlaybackMixin`.

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
        overrides += [to_parameter(k, v) for k, v in (settings or {}).items() if not empty_list(v)]
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


if __name__ == '__main__':
    sys.exit(main())
