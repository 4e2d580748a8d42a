"""Process behaviour of every node executable: --help, SIGINT/SIGTERM once or twice, exit codes, no orphans.

Each executable runs as ``python -m pu_ros.ros.launcher <name>`` (what the console script / ``ros2 run`` calls).
"""

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

from procs import stop
import pytest

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
EXECUTABLES = ['player_node', 'echo_node', 'segmentation_node', 'sampler_node', 'upsampler_node']


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_LOGGING_BUFFERED_STREAM'] = '0'
    return env


def _cmd(exe, *args):
    return [sys.executable, '-m', 'pu_ros.ros.launcher', exe, *map(str, args)]


class Proc:
    """A node subprocess whose merged output is collected by a thread; always killed at the end."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, '')),
                                        daemon=True)
        self._reader.start()

    @property
    def output(self):
        return ''.join(self.lines)

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def finish(self, timeout=20):
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code, self.output

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            stop(self.proc, group=True, read=False)
        return False


@pytest.mark.parametrize('exe', EXECUTABLES)
def test_help_prints_usage_and_starts_nothing(exe):
    res = subprocess.run(_cmd(exe, '--help'), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f'usage: ros2 run pu_ros {exe}') and 'Signals:' in res.stdout
    param = {'player_node': 'rate (default 1.0 [0.01, 100.0])', 'echo_node': 'depth (default 10 [1, 10000])',
             'segmentation_node': 'segmentation.checkpoint', 'sampler_node': 'sampler.', 'upsampler_node': 'upsampler.'}
    assert param[exe] in res.stdout or 'is not importable' in res.stdout, res.stdout
    assert '[INFO]' not in res.stderr + res.stdout and 'listening' not in res.stderr  # no node was created
    assert 'Traceback' not in res.stderr


def test_setup_errors_exit_2_with_one_line(tmp_path):
    res = subprocess.run(_cmd('player_node', '--ros-args', '-p', f'bag:={tmp_path / "missing_bag"}'), cwd=ROOT,
                         env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    assert res.stderr.strip().splitlines() == [f'player_node: error: bag {tmp_path / "missing_bag"} does not exist']
    res = subprocess.run(_cmd('echo_node', '--ros-args', '-p', 'depth:=0'), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and 'Traceback' not in res.stderr and 'echo_node: error:' in res.stderr


@pytest.mark.parametrize('signals', [[signal.SIGINT], [signal.SIGINT, signal.SIGINT], [signal.SIGTERM],
                                     [signal.SIGTERM, signal.SIGINT]])
def test_echo_node_stops_cleanly_on_signals(signals):
    with Proc(_cmd('echo_node')) as p:
        assert p.wait_for('listening on', 30), p.output
        for sig in signals:
            p.proc.send_signal(sig)
            time.sleep(0.05)
        code, out = p.finish()
    assert code == 0, out
    assert 'Traceback' not in out and 'no message received' in out  # the summary is still printed


def test_late_signals_during_exit_do_not_kill_the_node():
    # SIGINT every few ms from the first one until the process is gone: some land after the teardown, during
    # interpreter exit, where a Python-level handler no longer runs (before the fix: killed by SIGINT, exit -2)
    with Proc(_cmd('echo_node')) as p:
        assert p.wait_for('listening on', 30), p.output
        sent = 0
        while p.proc.poll() is None and sent < 5000:
            try:
                os.killpg(p.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                break
            sent += 1
            time.sleep(0.002)
        code, out = p.finish()
    assert sent > 1 and code == 0, out
    assert 'Traceback' not in out and 'no message received' in out


def test_player_stops_cleanly_on_a_double_sigint(tmp_path):
    from pu_ros.data.kitti_to_bag import convert
    from pu_ros.data.synthetic import SceneConfig, write_sequence

    seq = write_sequence(tmp_path / 'seq', SceneConfig(seed=2, n_frames=3, n_azimuth=64, image_width=64,
                                                       image_height=32), progress=False)
    convert(seq, tmp_path / 'bag', progress=False)
    with Proc(_cmd('player_node', '--ros-args', '-p', f'bag:={tmp_path / "bag"}', '-p', 'loop:=true')) as p:
        assert p.wait_for('playback started', 30), p.output
        time.sleep(0.5)
        p.proc.send_signal(signal.SIGINT)  # the process-group SIGINT of a terminal plus launch's own
        p.proc.send_signal(signal.SIGINT)
        code, out = p.finish()
    assert code == 0 and 'Traceback' not in out, out


@pytest.mark.slow
def test_segmentation_node_stops_cleanly_while_spinning_and_while_loading():
    import torch

    with Proc(_cmd('segmentation_node')) as p:  # device auto: CUDA when present, else the CPU with one warning
        assert p.wait_for('ready:', 120), p.output
        p.proc.send_signal(signal.SIGINT)
        p.proc.send_signal(signal.SIGTERM)
        code, out = p.finish()
    assert code == 0 and 'Traceback' not in out, out
    assert out.count('CUDA is not available') == (0 if torch.cuda.is_available() else 1), out
    with Proc(_cmd('segmentation_node', '--ros-args', '-p', 'segmentation.device:=cpu')) as p:
        time.sleep(1.0)  # still importing torch / loading the model
        p.proc.send_signal(signal.SIGTERM)
        code, out = p.finish(timeout=120)
    assert code == 0 and 'Traceback' not in out, out


def test_a_missing_checkpoint_fails_the_segmentation_node_at_start(tmp_path):
    res = subprocess.run(_cmd('segmentation_node', '--ros-args', '-p',
                              f'segmentation.checkpoint:={tmp_path / "nope.pt"}'),
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if 'error' in line.lower()]
    assert len(errors) == 1 and 'nope.pt' in errors[0]


_FAKE_ROS2 = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[2:])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_killing_ros2_run_leaves_no_orphan(tmp_path):
    """SIGTERM to the ``ros2 run`` parent (which does not forward it) still ends the node: PR_SET_PDEATHSIG."""
    wrapper = tmp_path / 'ros2'
    wrapper.write_text(_FAKE_ROS2)
    proc = subprocess.Popen([sys.executable, str(wrapper), 'run', *_cmd('echo_node')], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    child = None
    try:
        child = int(proc.stdout.readline())
        time.sleep(3.0)  # let the node start
        assert _alive(child)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), 'the node outlived its ros2 parent'
    finally:
        if proc.poll() is None:
            stop(proc, read=False)
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid):
    try:
        state = Path(f'/proc/{pid}/status').read_text()
    except OSError:
        return False
    return '\nState:\tZ' not in state
