"""Process behaviour shared by every node executable: ``--help``, signals, exit codes, no orphans.

:func:`node_main` is the body of each node's ``main()``:

- ``--help`` / ``-h`` (before ``--ros-args``) prints usage and the parameter table, then exits 0 without
  initialising ROS (nothing listens);
- rclpy's own signal handlers are replaced by ours: SIGINT or SIGTERM, once or any number of times, only ask the
  spin loop to stop; the node is then destroyed and the context shut down once, so no ``KeyboardInterrupt``
  traceback can come out of ``destroy_node`` (a process-group SIGINT plus launch's own SIGINT is the usual pair);
- when the parent is ``ros2 run`` / ``ros2 launch``, the kernel sends us SIGTERM if that parent dies
  (``PR_SET_PDEATHSIG``), so killing ``ros2 run`` never leaves the node running as an orphan;
- exit codes: 0 stopped by a signal or finished; 1 failed at runtime; 2 bad parameters / input at start-up
  (one ``<prog>: error: ...`` line on stderr).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import rclpy
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

#: What a bad parameter, file or environment raises while a node is built (reported as exit code 2).
SETUP_ERRORS = (ValueError, OSError, ImportError, ParameterException, NameValidationException)
_PR_SET_PDEATHSIG = 1


def split_ros_args(argv) -> tuple[list[str], list[str]]:
    """``(own arguments, ROS arguments)``: ROS arguments are the ones from ``--ros-args`` on."""
    argv = list(argv)
    if '--ros-args' in argv:
        i = argv.index('--ros-args')
        return argv[:i], argv[i:]
    return argv, []


def parameter_table(sections: dict) -> str:
    """Text table of the parameters of ``{section: dataclass}``: name, default, range/choices, help."""
    from dataclasses import fields

    from pu_ros.ros.node_config import dotted, field_default

    lines = []
    for section, cls in sections.items():
        for f in fields(cls):
            meta = f.metadata or {}
            extra = ''
            if 'range' in meta:
                extra = f' [{meta["range"][0]}, {meta["range"][1]}]'
            elif 'choices' in meta:
                extra = ' {' + ', '.join(map(str, meta['choices'])) + '}'
            name = dotted(section, f.name)
            lines.append(f'  {name} (default {field_default(f)!r}{extra})\n      {meta.get("help", "")}')
    return '\n'.join(lines)


def print_help(prog: str, description: str, parameters: str) -> None:
    """Usage of a node executable on stdout (a closed pipe, as in ``--help | head``, is not an error)."""
    try:
        _print_help(prog, description, parameters)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes


def _print_help(prog: str, description: str, parameters: str) -> None:
    print(f'usage: ros2 run pu_ros {prog} [-h] [--ros-args [-p NAME:=VALUE ...] [--params-file FILE] '
          f'[-r FROM:=TO ...]]\n\n{description.strip()}\n\nparameters:\n{parameters}\n\n'
          'Signals: SIGINT/SIGTERM stop the node cleanly (exit 0); bad start-up parameters exit 2.')


def _parent_is_ros2() -> bool:
    try:
        with open(f'/proc/{os.getppid()}/cmdline', 'rb') as fh:
            cmd = fh.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return False
    words = [os.path.basename(w) for w in cmd.split()[:3]]
    return any(w == 'ros2' or w.startswith('ros2-') for w in words)


def die_with_parent(force: bool = False) -> bool:
    """Ask the kernel for SIGTERM when the parent process dies (Linux); only under ``ros2`` unless ``force``.

    Returns:
        True when armed.
    """
    if not sys.platform.startswith('linux') or not (force or os.environ.get('PU_ROS_DIE_WITH_PARENT') == '1'
                                                    or _parent_is_ros2()):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the call: do what the kernel would have done
        os.kill(os.getpid(), signal.SIGTERM)
    return True


class StopFlag:
    """SIGINT/SIGTERM handlers that only record the signal (any number of times)."""

    def __init__(self):
        """Install the handlers (restored by :meth:`restore`); signals the launcher caught early count too."""
        from pu_ros.ros.launcher import EARLY_SIGNALS

        self.signals: list[int] = list(EARLY_SIGNALS)
        EARLY_SIGNALS.clear()
        self._previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signals.append(signum)

    def __bool__(self) -> bool:
        """True once a signal arrived."""
        return bool(self.signals)

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def ignore(self) -> None:
        """Ignore further SIGINT/SIGTERM (an executable that has torn its node down and is exiting)."""
        for sig in self._previous:
            signal.signal(sig, signal.SIG_IGN)


def node_main(make_node, *, prog: str, description: str, parameters: str = '', argv=None,
              finished=None, on_exit=None, restore_signals: bool = False) -> int:
    """Run one node until a signal (or ``finished(node)``), then tear down cleanly; returns the exit code.

    Args:
        make_node: ``make_node() -> Node`` (called after ``rclpy.init``; reads ``--ros-args`` itself).
        prog: executable name for messages.
        description: help text.
        parameters: parameter table for ``--help`` (see :func:`parameter_table`).
        argv: the command line (``sys.argv`` when None).
        finished: optional ``finished(node) -> int | None``: an exit code once the node's work is done.
        on_exit: optional ``on_exit(node)`` called before the node is destroyed (e.g. print a summary).
        restore_signals: put the previous signal handlers back at the end (in-process callers); executables
            ignore SIGINT/SIGTERM once the node is torn down: the process is leaving, and at interpreter exit
            Python resets a Python-level handler to the default action, so a late signal (launch's second SIGINT)
            would kill the process (exit -2) after its clean teardown; an ignored signal stays ignored.
    """
    argv = list(sys.argv if argv is None else argv)
    own, _ = split_ros_args(argv[1:])
    if '-h' in own or '--help' in own:
        print_help(prog, description, parameters)
        return 0
    stop = StopFlag()
    die_with_parent()
    if stop:
        return 0  # stopped before the node existed (a signal during the imports)
    code = 0
    node = executor = None
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = make_node()
        except SETUP_ERRORS as exc:
            print(f'{prog}: error: {exc}', file=sys.stderr, flush=True)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
            if finished is not None:
                result = finished(node)
                if result is not None:
                    code = int(result)
                    break
    except ExternalShutdownException:
        pass
    except Exception as exc:  # noqa: BLE001 - an unexpected failure: one line, exit 1, still tear down
        print(f'{prog}: error: {type(exc).__name__}: {exc}', file=sys.stderr, flush=True)
        code = 1
    finally:
        if node is not None and on_exit is not None:
            on_exit(node)
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if restore_signals:
            stop.restore()
        else:
            stop.ignore()
    return code
