"""The one timing helper of the benchmarks: median wall time of a call, and the peak memory beside it.

Every benchmark in ``bench/`` measures its own side and its baseline with :func:`median_ms` in the same process,
so both numbers come from the same machine state. ``sync`` (e.g. ``torch.cuda.synchronize``) runs after each call
so that asynchronous device work is inside the measured interval.
"""

from __future__ import annotations

import resource
import time

import numpy as np


def median_ms(fn, repeats: int, warmup: int = 1, sync=None, each=None) -> float:
    """Median wall time of ``fn()`` in milliseconds.

    Args:
        fn: the call to time (its result is ignored).
        repeats: timed calls (at least 1).
        warmup: untimed calls first (allocations, algorithm selection, caches).
        sync: optional callable run after every call, inside the timed interval (device synchronisation).
        each: optional list that receives every timed value (ms), for percentiles.

    Returns:
        the median of the timed calls, in ms.
    """
    sync = sync or (lambda: None)
    for _ in range(max(0, int(warmup))):
        fn()
    sync()
    times = []
    for _ in range(max(1, int(repeats))):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000.0)
    if each is not None:
        each.extend(times)
    return float(np.median(times))


def process_peak_mb() -> float:
    """Process-wide resident-memory high-water mark in MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
