"""Approximate-time pairing of the RGB and thermal streams.

``message_filters.ApproximateTimeSynchronizer`` is used when it can be imported (a
sourced ROS 2 install). Without it, ``ApproximateTimePairer`` applies the policy of
message_filters' Python synchroniser: each stream keeps at most ``queue_size`` messages
keyed by stamp (a message with an already queued stamp replaces it; overflow drops the
oldest); when a message arrives, the other stream's queued message closest in stamp is
taken if it lies within ``slop``, and only the two paired messages leave the queues.
There is no ordering rule: a pair older than one already emitted is still emitted, so
a stamp from the future or a clock that restarts never blocks later pairs. One
deliberate difference: a stamp difference equal to ``slop`` still pairs (message_filters
requires it to be smaller), so ``slop = 0`` means exact-stamp pairing instead of none.

Every message discarded without a partner (overflow, replaced stamp, ``reset``) is
counted as a sync miss. ``reset`` empties the queues after a time jump.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Callable
from typing import Any

from ..ros_time import stamp_ns

try:  # the ROS-native path comes first; FUSIONSAM_ROS_FALLBACK=1 forces the own one (tests)
    if os.environ.get("FUSIONSAM_ROS_FALLBACK") == "1":
        raise ImportError("FUSIONSAM_ROS_FALLBACK=1")
    import message_filters

    HAVE_MESSAGE_FILTERS = True
except ImportError:  # no pip wheel exists for message_filters
    message_filters = None
    HAVE_MESSAGE_FILTERS = False

PairCallback = Callable[[Any, Any], None]
RGB, THERMAL = 0, 1


class ApproximateTimePairer:
    """Own two-stream approximate-time synchroniser (see module docstring for the policy)."""

    impl = "fusionsam_ros.node.sync"

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
        self._lock = threading.Lock()
        self.sync_misses = 0
        self.pairs = 0

    def add_rgb(self, msg: Any) -> None:
        self._add(RGB, msg)

    def add_thermal(self, msg: Any) -> None:
        self._add(THERMAL, msg)

    def set_slop(self, slop_s: float) -> None:
        """Live ``sync_slop_s``: applies from the next message."""
        with self._lock:
            self.slop_ns = round(slop_s * 1e9)

    def pending(self) -> tuple[int, int]:
        with self._lock:
            return len(self._stamps[RGB]), len(self._stamps[THERMAL])

    def reset(self) -> int:
        """Drop every queued message (counted as misses); returns how many were dropped."""
        with self._lock:
            dropped = len(self._stamps[RGB]) + len(self._stamps[THERMAL])
            for lists in (self._stamps, self._msgs):
                for queue in lists:
                    queue.clear()
            self.sync_misses += dropped
            return dropped

    def _add(self, stream: int, msg: Any) -> None:
        t = stamp_ns(msg)
        with self._lock:
            stamps, msgs = self._stamps[stream], self._msgs[stream]
            i = bisect.bisect_left(stamps, t)
            if i < len(stamps) and stamps[i] == t:  # same stamp: the newer message wins
                msgs[i] = msg
                self.sync_misses += 1
            else:
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
        """Remove message ``index`` only; older ones keep waiting (as in message_filters)."""
        del self._stamps[stream][index]
        return self._msgs[stream].pop(index)


class MessageFiltersPairer:
    """message_filters.ApproximateTimeSynchronizer fed from the node's own subscriptions.

    message_filters does not report discarded messages, so ``sync_misses`` is estimated
    as the messages received beyond those paired and those a full queue can still hold.
    ``reset`` builds a new synchroniser: message_filters has no call to empty its queues.
    """

    impl = "message_filters"

    def __init__(self, queue_size: int, slop_s: float, callback: PairCallback) -> None:
        if message_filters is None:
            raise ImportError("message_filters is not importable")
        self.queue_size = queue_size
        self.slop_s = slop_s
        self._callback = callback
        self._received = [0, 0]
        self._dropped_by_reset = 0
        self.pairs = 0
        self._build()

    def _build(self) -> None:
        self._inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
        self._sync = message_filters.ApproximateTimeSynchronizer(
            self._inputs, self.queue_size, self.slop_s
        )
        self._sync.registerCallback(self._on_pair)
        self._base = (list(self._received), self.pairs)  # counts when this one was built

    @property
    def sync_misses(self) -> int:
        received, pairs = self._base
        current = sum(
            max(0, n - n0 - (self.pairs - pairs) - self.queue_size)
            for n, n0 in zip(self._received, received, strict=True)
        )
        return self._dropped_by_reset + current

    def reset(self) -> int:
        """Replace the synchroniser; messages it still held count as misses."""
        received, pairs = self._base
        held = sum(
            min(self.queue_size, max(0, n - n0 - (self.pairs - pairs)))
            for n, n0 in zip(self._received, received, strict=True)
        )
        self._dropped_by_reset = self.sync_misses + held
        self._build()
        return held

    def set_slop(self, slop_s: float) -> None:
        """Live ``sync_slop_s``: the synchroniser reads ``slop`` on every message."""
        from rclpy.duration import Duration

        self.slop_s = slop_s
        self._sync.slop = Duration(seconds=slop_s)

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
