"""Entry points of the node executables: catch SIGINT/SIGTERM before the heavy imports, then run the node.

A console script that pointed straight at ``pu_ros.ros.segmentation_node:main`` would import rclpy, numpy and the
package before ``main`` could install its signal handlers, so a Ctrl-C (or launch's SIGINT) during those imports
printed a ``KeyboardInterrupt`` traceback. These functions import nothing heavy: they record early signals first;
:func:`pu_ros.ros.process.node_main` then sees them and exits 0 without starting the node.

``python -m pu_ros.ros.launcher NODE [ARGS...]`` does the same as the console script ``NODE``.
"""

from __future__ import annotations

import importlib
import signal
import sys

#: Signals received before node_main took over (read by pu_ros.ros.process.StopFlag).
EARLY_SIGNALS: list[int] = []
NODES = ('player_node', 'echo_node', 'segmentation_node', 'sampler_node', 'upsampler_node')


def _record(signum, frame):
    EARLY_SIGNALS.append(signum)


def run(node: str, argv=None) -> int:
    """Install the recording handlers, import ``pu_ros.ros.<node>`` and return its ``main(argv)``."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _record)
    if node not in NODES:
        print(f'unknown node {node!r}; one of: {", ".join(NODES)}', file=sys.stderr)
        return 2
    return importlib.import_module(f'pu_ros.ros.{node}').main(argv)


def player_node() -> int:
    """``player_node`` executable."""
    return run('player_node')


def echo_node() -> int:
    """``echo_node`` executable."""
    return run('echo_node')


def segmentation_node() -> int:
    """``segmentation_node`` executable."""
    return run('segmentation_node')


def sampler_node() -> int:
    """``sampler_node`` executable."""
    return run('sampler_node')


def upsampler_node() -> int:
    """``upsampler_node`` executable."""
    return run('upsampler_node')


if __name__ == '__main__':
    if len(sys.argv) < 2:
        print(f'usage: python -m pu_ros.ros.launcher NODE [ARGS...]; NODE one of {", ".join(NODES)}', file=sys.stderr)
        sys.exit(2)
    from pu_ros.ros import launcher  # this file runs as __main__: use the one module that process.py reads

    sys.exit(launcher.run(sys.argv[1], [sys.argv[1], *sys.argv[2:]]))
