"""Test helpers for DDS subprocesses: stop them politely, and clear Fast DDS shared memory that nobody can use.

Why both: Fast DDS keeps its shared-memory transport in ``/dev/shm`` segments that every participant on the host
opens (``fastdds_port7000`` is opened by all of them, whatever the domain). A process killed with SIGKILL while it
creates or regenerates such a segment leaves a file of zeros behind, and from then on every new participant spins
forever in boost's ``open_or_create`` waiting for it to be initialised (seen in CI: the suite hung in
``test_player.py`` until the 90-minute limit). So tests stop processes with SIGINT first (rclpy finishes the C++
call it is in, then shuts down) and SIGKILL only what ignores that; and before each DDS test, segments that were
never initialised and that no process has mapped are removed (with a warning naming them).
"""

import os
from pathlib import Path
import signal
import subprocess
import time

SHM = Path('/dev/shm')
# boost::interprocess managed segments start with a 4-byte state: 0 uninitialised, 1 initialising, 2 initialised,
# 3 corrupted. Only 2 is usable.
_INITIALISED = (2).to_bytes(4, 'little')


def stop(proc, grace=10.0, group=False, read=True):
    """Stop a subprocess: SIGINT, then SIGKILL if it is still running after ``grace`` s; returns its output.

    proc: a ``subprocess.Popen``; group: signal its whole process group (it was started with
    ``start_new_session=True``); read: collect its output with ``communicate()`` (False when a thread of the test
    already reads its stdout). Returns the stdout that ``communicate()`` gave (None when not piped or not read).
    """
    def send(sig):
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def finish(timeout):
        if read:
            return proc.communicate(timeout=timeout)[0]
        proc.wait(timeout=timeout)
        return None

    if proc.poll() is None:
        send(signal.SIGINT)
    try:
        return finish(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        return finish(10)


def _mapped_inodes():
    """Inode numbers of the ``/dev/shm`` files that any process we can see has mapped (deleted ones included)."""
    inodes = set()
    for maps in Path('/proc').glob('[0-9]*/maps'):
        try:
            text = maps.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(str(SHM) + '/'):
                inodes.add(int(fields[4]))
    return inodes


def stale_fastdds_segments(min_age_s=5.0):
    """Fast DDS segments in /dev/shm that were never initialised, are older than ``min_age_s`` and unmapped."""
    if not SHM.is_dir():
        return []
    now = time.time()
    candidates = []
    for path in SHM.glob('fastdds_*'):
        if path.name.endswith(('_el', '_sl')):
            continue
        try:
            st = path.stat()
            if now - st.st_mtime < min_age_s:
                continue
            with open(path, 'rb') as f:
                head = f.read(4)
        except OSError:
            continue
        if head != _INITIALISED:
            candidates.append((path, st.st_ino))
    if not candidates:
        return []
    mapped = _mapped_inodes()
    return [p for p, ino in candidates if ino not in mapped]


def remove_stale_fastdds_segments():
    """Remove :func:`stale_fastdds_segments`; returns the names removed."""
    removed = []
    for path in stale_fastdds_segments():
        try:
            path.unlink()
            removed.append(path.name)
        except OSError:
            pass
    return removed
