"""Approximate-time pairing of several topics: ``message_filters`` where importable, else ours.

Our :class:`ApproximateTimeSync` has the semantics of ``message_filters.ApproximateTimeSynchronizer`` (Python
version): every input keeps its last ``queue_size`` messages; when a message arrives, each other input's message
closest in stamp to it is looked up, and if all of them lie within ``slop`` seconds of it the set is passed to
the callbacks and those messages (and older ones) leave the queues. ``allow_headerless`` is not supported: every
message needs ``header.stamp``.

:func:`make_synchronizer` returns an object with ``add(index, msg)`` either way, so a node feeds both the same
way from its own subscriptions (and can count inputs that never found a partner, which message_filters does not
report).
"""

from __future__ import annotations

from collections import deque

_NS = 1_000_000_000


def _stamp_ns(msg) -> int:
    s = msg.header.stamp
    return int(s.sec) * _NS + int(s.nanosec)


class ApproximateTimeSync:
    """Pairs messages of ``n`` inputs whose stamps lie within ``slop`` seconds.

    Args:
        n: number of inputs.
        queue_size: messages kept per input (oldest dropped first).
        slop: largest stamp difference in seconds between the pivot and each partner.

    Attributes:
        matched: sets emitted so far.
        evicted: messages per input dropped from a full queue without a partner.
    """

    def __init__(self, n: int, queue_size: int, slop: float):
        """Empty queues."""
        if n < 2 or queue_size < 1 or slop < 0:
            raise ValueError(f'need n >= 2, queue_size >= 1, slop >= 0 (got {n}, {queue_size}, {slop})')
        self.queues = [deque() for _ in range(n)]
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(float(slop) * _NS))
        self.callbacks = []
        self.matched = 0
        self.evicted = [0] * n

    def register_callback(self, cb) -> None:
        """``cb(*msgs)`` with one message per input, in input order."""
        self.callbacks.append(cb)

    def add(self, index: int, msg) -> None:
        """A message arrived on input ``index``."""
        stamp = _stamp_ns(msg)
        q = self.queues[index]
        q.append((stamp, msg))
        if len(q) > self.queue_size:
            q.popleft()
            self.evicted[index] += 1
        chosen = []
        for j, other in enumerate(self.queues):
            if j == index:
                chosen.append((stamp, msg))
                continue
            best = min(other, key=lambda item: abs(item[0] - stamp), default=None)
            if best is None or abs(best[0] - stamp) > self.slop_ns:
                return
            chosen.append(best)
        for j, (t, _) in enumerate(chosen):
            self.queues[j] = deque(item for item in self.queues[j] if item[0] > t)
        self.matched += 1
        for cb in self.callbacks:
            cb(*[m for _, m in chosen])


class _MessageFiltersSync:
    """``add(index, msg)`` on top of message_filters' synchronizer (fed from our own subscriptions)."""

    def __init__(self, message_filters, n: int, queue_size: int, slop: float):
        self.inputs = [message_filters.SimpleFilter() for _ in range(n)]
        self.sync = message_filters.ApproximateTimeSynchronizer(self.inputs, queue_size, slop)
        self.matched = 0
        self.evicted = [0] * n

    def register_callback(self, cb) -> None:
        def counted(*msgs):
            self.matched += 1
            cb(*msgs)
        self.sync.registerCallback(counted)

    def add(self, index: int, msg) -> None:
        self.inputs[index].signalMessage(msg)


def make_synchronizer(n: int, queue_size: int, slop: float, prefer_message_filters: bool = True):
    """An approximate-time synchronizer: message_filters' when importable (and preferred), else ours.

    Returns:
        ``(sync, kind)`` with ``kind`` ``'message_filters'`` or ``'pu_ros'``.
    """
    if prefer_message_filters:
        try:
            import message_filters
        except ImportError:
            message_filters = None
        if message_filters is not None and hasattr(message_filters, 'SimpleFilter'):
            return _MessageFiltersSync(message_filters, n, queue_size, slop), 'message_filters'
    return ApproximateTimeSync(n, queue_size, slop), 'pu_ros'
