"""Playback of :class:`pu_ros.ros.player_node.BagPlayer`: pacing and the timer-driven publishing of the bag.

:class:`Pace` maps bag time to wall time; :class:`PlaybackMixin` reads the bag and publishes each message when it
is due, and publishes ``/clock``.

States: ``waiting`` (for subscribers, ``wait_for_subscribers``) -> ``starting`` -> ``playing`` -> ``done``
(``loop`` goes from the end of a pass straight into the next one).
"""

from __future__ import annotations

from dataclasses import dataclass
import time

from rclpy.duration import Duration

from pu_ros.data.bag import BagError, read_bag

_NS = 1_000_000_000
_MIN_TIMER_NS = 100_000  # re-arm the timer no shorter than 0.1 ms
_SETTLE_S = 0.5  # after every topic is matched: time for the subscriber side to match the writers as well


@dataclass(frozen=True)
class Pace:
    """Maps bag time to wall (steady) time for playback at ``rate`` times real time.

    Attributes:
        rate: playback speed factor (> 0); 2.0 plays twice as fast as recorded.
        bag_origin_ns: bag time (int ns) that is played at ``wall_origin_ns``.
        wall_origin_ns: steady-clock time (int ns) at which playback (re)started.
    """

    rate: float
    bag_origin_ns: int
    wall_origin_ns: int

    def due_ns(self, bag_ns: int) -> int:
        """Steady-clock time (int ns) at which the message with bag time ``bag_ns`` is due."""
        return self.wall_origin_ns + int(round((int(bag_ns) - self.bag_origin_ns) / self.rate))

    def bag_time_ns(self, wall_ns: int) -> int:
        """Bag time (int ns) that corresponds to steady-clock time ``wall_ns``."""
        return self.bag_origin_ns + int(round((int(wall_ns) - self.wall_origin_ns) * self.rate))


class PlaybackMixin:
    """The playback half of :class:`~pu_ros.ros.player_node.BagPlayer` (its set-up half is in ``player_node``).

    It uses what ``BagPlayer.__init__`` sets: the bag (``bag_path``, ``_origin_ns``), the publishers (``_pubs``,
    ``_out_name``, ``_latched``, ``published``), the options (``rate``, ``loop``, ``linger``, ``wait_timeout``),
    the steady clock and timers (``_steady``, ``_timer``, ``_clock_timer``, ``_clock_pub``) and the playback
    state (``_state``, ``_pace``, ``_messages``, ``_pending``, ``loops``, ``finished``...).
    """

    def _message_stream(self, first_pass: bool):
        """Yield (bag_topic, due_bag_ns, raw) of the played topics from the origin on.

        Latched (transient-local) topics go out on the first pass only: their publisher keeps them for late
        subscribers, so a loop never re-sends a static transform.
        """
        for topic, _msgtype, stamp, raw in read_bag(self.bag_path, topics=list(self._pubs)):
            if not first_pass and topic in self._latched:
                continue
            if stamp < self._origin_ns:
                if first_pass and topic in self._latched:
                    yield topic, self._origin_ns, raw  # static transforms are needed whatever the offset
                continue
            yield topic, stamp, raw

    def _start_pass(self) -> None:
        now = self._steady.now().nanoseconds
        if self.loops == 0:
            self._wall_start = time.monotonic()
        self._pace = Pace(self.rate, self._origin_ns, now)
        self._messages = self._message_stream(first_pass=self.loops == 0)
        self._pending = next(self._messages, None)
        if self._pending is None:
            self.get_logger().warning('no message of the played topics from the start offset on')
            self._finish()
            return
        self._state = 'playing'
        if self._clock_timer is not None:
            self._last_clock_ns = None
            self._clock_timer.reset()
        self.get_logger().info('playback started' if self.loops == 0 else f'loop {self.loops}: playing again')

    def _arm(self, delay_ns: int) -> None:
        self._timer.timer_period_ns = max(_MIN_TIMER_NS, int(delay_ns))
        self._timer.reset()

    def _on_timer(self) -> None:
        try:
            if self._state == 'waiting':
                self._check_subscribers()
            elif self._state == 'starting':
                self._start_pass()
                if self._state == 'playing':
                    self._play_due()
            elif self._state == 'playing':
                self._play_due()
        except BagError as exc:
            self.get_logger().error(f'playback failed: {exc}')
            self._finish(error=str(exc))

    def _check_subscribers(self) -> None:
        now = time.monotonic()
        missing = [self._out_name[t] for t in sorted(self._pubs)
                   if t not in self._latched and self._pubs[t].get_subscription_count() == 0]
        if not missing:
            if self._matched_at is None:
                self._matched_at = now
                self.get_logger().info('every topic has a subscriber')
            if now - self._matched_at >= _SETTLE_S:
                self._state = 'starting'
                self._arm(0)
            return
        self._matched_at = None
        if now >= self._wait_deadline:
            self.get_logger().warning(f'no subscriber after {self.wait_timeout:g} s on {", ".join(missing)}; '
                                      'playing anyway')
            self._state = 'starting'
            self._arm(0)
        elif now - self._last_wait_log >= 2.0:
            self._last_wait_log = now
            self.get_logger().info(f'still waiting for subscribers on {", ".join(missing)}')

    def _play_due(self) -> None:
        now = self._steady.now().nanoseconds
        while self._pending is not None:
            topic, stamp, raw = self._pending
            due = self._pace.due_ns(stamp)
            if due > now + _MIN_TIMER_NS:
                self._arm(due - now)
                return
            self._publish_clock(stamp)
            self._pubs[topic].publish(raw if isinstance(raw, bytes) else bytes(raw))
            self.published[self._out_name[topic]] += 1
            self._pending = next(self._messages, None)
            now = self._steady.now().nanoseconds
        self.loops += 1
        if self.loop:
            self._start_pass()
            if self._state == 'playing':
                self._arm(0)
        else:
            self._finish()

    def _publish_clock(self, bag_ns: int | None = None) -> None:
        if self._clock_pub is None or self._pace is None:
            return
        if bag_ns is None:
            bag_ns = self._pace.bag_time_ns(self._steady.now().nanoseconds)
            if self._pending is not None:  # a late data timer (busy CPU): the clock never runs past the next message
                bag_ns = min(bag_ns, int(self._pending[1]))
        if self._last_clock_ns is not None and bag_ns < self._last_clock_ns:
            bag_ns = self._last_clock_ns  # never backwards within one pass
        self._last_clock_ns = bag_ns
        msg = self._clock_msg_type()
        msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), _NS)
        self._clock_pub.publish(msg)

    def _on_clock_timer(self) -> None:
        if self._state == 'playing':
            self._publish_clock()

    def _finish(self, error: str | None = None) -> None:
        self._state = 'done'
        self._timer.cancel()
        if self._clock_timer is not None:
            self._clock_timer.cancel()
        if error is None and self.linger > 0:
            for pub in self._pubs.values():
                pub.wait_for_all_acked(Duration(seconds=self.linger))
        total = sum(self.published.values())
        counts = ', '.join(f'{t}: {n}' for t, n in sorted(self.published.items()))
        if error is None:
            self.get_logger().info(f'done: published {total} messages in {time.monotonic() - self._wall_start:.2f} s'
                                   f' ({counts})')
            self.finished.set_result(dict(self.published))
        else:
            self.finished.set_exception(BagError(error))

    @property
    def done(self) -> bool:
        """True once playback has ended (never with ``loop``)."""
        return self._state == 'done'
