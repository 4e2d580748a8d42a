"""Running :class:`~pu_ros.ros.echo_node.KittiEcho` from Python and the shell: :class:`EchoSession`, ``pu-ros echo``."""

from __future__ import annotations

import json
from pathlib import Path
import signal
import sys
import time

import rclpy
from rclpy.context import Context
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from pu_ros.ros.echo_format import format_summary, message_line
from pu_ros.ros.echo_records import DEFAULT_TOPICS

SETUP_ERRORS = (ValueError, OSError, ParameterException, NameValidationException)


class EchoSession:
    """A :class:`KittiEcho` in a private rclpy context with its own executor, for scripts and tests.

    Example::

        with EchoSession({'topics': ['/kitti/velo/pointcloud'], 'reliable': True}) as echo:
            echo.spin_until(lambda: len(echo.node.records) >= 10, timeout=20)

    Args:
        settings: parameters of the node.
        **kwargs: passed to :class:`KittiEcho` (``keep_arrays``, ``on_record``, ``node_name``).
    """

    def __init__(self, settings: dict | None = None, **kwargs):
        """Initialise a context, create the node and the executor."""
        from pu_ros.ros.echo_node import KittiEcho

        self.context = Context()
        rclpy.init(args=[], context=self.context)
        try:
            self.node = KittiEcho(settings, context=self.context, **kwargs)
        except BaseException:
            rclpy.try_shutdown(context=self.context)
            raise
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout: float, step: float = 0.05) -> bool:
        """Process callbacks until ``predicate()`` is true (returns True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + float(timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or not self.context.ok():
                return bool(predicate())
            self.executor.spin_once(timeout_sec=min(step, left))
        return True

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        try:
            self.executor.remove_node(self.node)
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> EchoSession:
        """Return self."""
        return self

    def __exit__(self, *exc) -> bool:
        """Close."""
        self.close()
        return False


def add_arguments(parser) -> None:
    """Arguments of ``pu-ros echo``."""
    parser.add_argument('--topics', nargs='+', default=list(DEFAULT_TOPICS), metavar='TOPIC',
                        help='topics (TOPIC or TOPIC:pkg/msg/Type; default: the KITTI point cloud, image and '
                             'camera_info topics)')
    parser.add_argument('--count', type=int, default=0, metavar='N', help='stop after N messages in total')
    parser.add_argument('--timeout', type=float, default=0.0, metavar='S', help='stop after S seconds (0: never)')
    parser.add_argument('--reliable', action='store_true', help='reliable subscriptions (default: best effort)')
    parser.add_argument('--depth', type=int, default=10, metavar='N', help='subscription queue depth (default 10)')
    parser.add_argument('--json', type=Path, default=None, metavar='FILE', help='write the records to FILE')
    parser.add_argument('--quiet', action='store_true', help='no line per message, only the summary')


def run(args) -> int:
    """``pu-ros echo``: 0 when stopped by count, timeout or Ctrl-C; 1 when ``--count`` was not reached; 2 bad args."""
    if args.count < 0 or args.timeout < 0:
        print('pu-ros echo: error: --count and --timeout must be >= 0', file=sys.stderr)
        return 2
    settings = {'topics': list(args.topics), 'reliable': bool(args.reliable), 'count': int(args.count),
                'depth': int(args.depth)}
    on_record = None if args.quiet else (lambda rec: print(message_line(rec), flush=True))
    try:
        session = EchoSession(settings, on_record=on_record)
    except SETUP_ERRORS as exc:
        print(f'pu-ros echo: error: {exc}', file=sys.stderr)
        return 2
    node = session.node
    stop = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}  # Ctrl-C / kill: stop, print the summary, exit 0
    try:
        session.spin_until(lambda: bool(stop) or node.finished.done(), timeout=args.timeout or float('inf'))
        reached = node.finished.done()
    except (KeyboardInterrupt, ExternalShutdownException):
        reached = node.finished.done()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        records = list(node.records)
        session.close()
    print(format_summary(records) if records else 'no message received', flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({'topics': args.topics, 'messages': records}, indent=1))
        print(f'wrote {len(records)} records to {args.json}')
    return 0 if (reached or not args.count) else 1

