"""The DDS test helpers of test/procs.py: polite stop, and which Fast DDS segments count as stale."""

import mmap
import os
import subprocess
import sys
import time

import procs
import pytest

pytestmark = pytest.mark.skipif(not procs.SHM.is_dir(), reason='no /dev/shm')


def _segment(name, state, age_s):
    path = procs.SHM / f'fastdds_pu_ros_test_{os.getpid()}_{name}'
    path.write_bytes(state.to_bytes(4, 'little') + bytes(4092))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_only_old_unmapped_uninitialised_segments_are_stale():
    zeros = _segment('zeros', 0, 60)
    initialising = _segment('initialising', 1, 60)
    healthy = _segment('healthy', 2, 60)
    fresh = _segment('fresh', 0, 0)
    mapped = _segment('mapped', 0, 60)
    lock = procs.SHM / f'{zeros.name}_el'
    lock.write_bytes(b'')
    os.utime(lock, (time.time() - 60,) * 2)
    try:
        with open(mapped, 'r+b') as f, mmap.mmap(f.fileno(), 0):
            stale = set(procs.stale_fastdds_segments())
            assert {zeros, initialising} <= stale
            assert not {healthy, fresh, mapped, lock} & stale
            removed = procs.remove_stale_fastdds_segments()
        assert zeros.name in removed and initialising.name in removed
        assert not zeros.exists() and not initialising.exists()
        assert healthy.exists() and fresh.exists() and mapped.exists() and lock.exists()
    finally:
        for p in (zeros, initialising, healthy, fresh, mapped, lock):
            p.unlink(missing_ok=True)


def test_stop_interrupts_first_and_kills_only_what_ignores_it():
    polite = subprocess.Popen([sys.executable, '-c', 'import time\ntry:\n print("ready", flush=True)\n'
                               ' time.sleep(60)\nexcept KeyboardInterrupt:\n print("interrupted", flush=True)'],
                              stdout=subprocess.PIPE, text=True)
    assert polite.stdout.readline().strip() == 'ready'
    assert procs.stop(polite).strip() == 'interrupted' and polite.returncode == 0
    stubborn = subprocess.Popen([sys.executable, '-c', 'import signal, time\n'
                                 'signal.signal(signal.SIGINT, signal.SIG_IGN)\nprint("ready", flush=True)\n'
                                 'time.sleep(60)'], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == 'ready'
    procs.stop(stubborn, grace=0.5, read=False)
    assert stubborn.returncode == -9
