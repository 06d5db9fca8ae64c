"""Approximate-time pairing of the RGB and thermal streams.

``message_filters.ApproximateTimeSynchronizer`` is used when it can be imported (a
sourced ROS 2 install). Without it, ``ApproximateTimePairer`` applies the same policy
as message_filters' Python synchroniser: when a message arrives, the other stream's
queued message closest in stamp is taken if it lies within ``slop``; queues hold at
most ``queue_size`` messages per stream. It also never emits a pair older than the
last one: queued messages older than an emitted pair are discarded. Every message
discarded without a partner is counted as a sync miss.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from typing import Any

try:  # the ROS-native path comes first
    import message_filters

    HAVE_MESSAGE_FILTERS = True
except ImportError:  # no pip wheel exists for message_filters
    message_filters = None
    HAVE_MESSAGE_FILTERS = False

PairCallback = Callable[[Any, Any], None]
RGB, THERMAL = 0, 1


def stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class ApproximateTimePairer:
    """Own two-stream approximate-time synchroniser (see module docstring for the policy)."""

    impl = "fusionsam_ros.sync"

    def __init__(self, queue_size: int, slop_s: float, callback: PairCallback) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop_s < 0:
            raise ValueError(f"slop must be >= 0 s, got {slop_s}")
        self.queue_size = queue_size
        self.slop_ns = round(slop_s * 1e9)
        self._callback = callback
        self._stamps: tuple[list[int], list[int]] = ([], [])  # sorted, parallel to _msgs
        self._msgs: tuple[list[Any], list[Any]] = ([], [])
        self._last_emitted = [-1, -1]
        self._lock = threading.Lock()
        self.sync_misses = 0
        self.pairs = 0

    def add_rgb(self, msg: Any) -> None:
        self._add(RGB, msg)

    def add_thermal(self, msg: Any) -> None:
        self._add(THERMAL, msg)

    def pending(self) -> tuple[int, int]:
        with self._lock:
            return len(self._stamps[RGB]), len(self._stamps[THERMAL])

    def _add(self, stream: int, msg: Any) -> None:
        t = stamp_ns(msg)
        with self._lock:
            if t <= self._last_emitted[stream]:  # older than a pair already sent
                self.sync_misses += 1
                return
            stamps, msgs = self._stamps[stream], self._msgs[stream]
            i = bisect.bisect_right(stamps, t)
            stamps.insert(i, t)
            msgs.insert(i, msg)
            if len(stamps) > self.queue_size:  # overflow: the oldest can no longer wait
                del stamps[0], msgs[0]
                self.sync_misses += 1
                if i == 0:  # the new message was the oldest one
                    return
                i -= 1
            other = 1 - stream
            j = self._closest(self._stamps[other], t)
            if j is None:
                return
            pair = [None, None]
            pair[stream], pair[other] = self._take(stream, i), self._take(other, j)
            self.pairs += 1
        self._callback(pair[RGB], pair[THERMAL])  # outside the lock: the callback may be slow

    def _closest(self, stamps: list[int], t: int) -> int | None:
        k = bisect.bisect_left(stamps, t)
        best = None
        for j in (k - 1, k):
            if 0 <= j < len(stamps) and abs(stamps[j] - t) <= self.slop_ns:
                if best is None or abs(stamps[j] - t) < abs(stamps[best] - t):
                    best = j
        return best

    def _take(self, stream: int, index: int) -> Any:
        """Remove message ``index`` and everything older (those count as misses)."""
        stamps, msgs = self._stamps[stream], self._msgs[stream]
        msg = msgs[index]
        self._last_emitted[stream] = stamps[index]
        self.sync_misses += index
        del stamps[: index + 1], msgs[: index + 1]
        return msg


class MessageFiltersPairer:
    """message_filters.ApproximateTimeSynchronizer fed from the node's own subscriptions.

    message_filters does not report discarded messages, so ``sync_misses`` is estimated
    as the messages received beyond those paired and those a full queue can still hold.
    """

    impl = "message_filters"

    def __init__(self, queue_size: int, slop_s: float, callback: PairCallback) -> None:
        if message_filters is None:
            raise ImportError("message_filters is not importable")
        self.queue_size = queue_size
        self._callback = callback
        self._inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
        self._sync = message_filters.ApproximateTimeSynchronizer(self._inputs, queue_size, slop_s)
        self._sync.registerCallback(self._on_pair)
        self._received = [0, 0]
        self.pairs = 0

    @property
    def sync_misses(self) -> int:
        return sum(max(0, n - self.pairs - self.queue_size) for n in self._received)

    def add_rgb(self, msg: Any) -> None:
        self._received[RGB] += 1
        self._inputs[RGB].signalMessage(msg)

    def add_thermal(self, msg: Any) -> None:
        self._received[THERMAL] += 1
        self._inputs[THERMAL].signalMessage(msg)

    def _on_pair(self, rgb: Any, thermal: Any) -> None:
        self.pairs += 1
        self._callback(rgb, thermal)


def make_pairer(
    queue_size: int, slop_s: float, callback: PairCallback, prefer_message_filters: bool = True
) -> ApproximateTimePairer | MessageFiltersPairer:
    """message_filters when importable, else the project's own synchroniser."""
    if prefer_message_filters and HAVE_MESSAGE_FILTERS:
        return MessageFiltersPairer(queue_size, slop_s, callback)
    return ApproximateTimePairer(queue_size, slop_s, callback)
