"""``pu-ros play``: replay a rosbag2 with a :class:`~pu_ros.ros.player_node.BagPlayer` from the command line."""

from __future__ import annotations

from pathlib import Path
import sys
from typing import TYPE_CHECKING

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from pu_ros.ros.player_settings import QOS_CHOICES

if TYPE_CHECKING:
    from pu_ros.ros.player_node import BagPlayer


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
    from pu_ros.ros.player_node import SETUP_ERRORS, BagPlayer

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

