"""Detection of time jumps in the input stamps and the node's ROS clock.

A pairer keeps messages waiting by stamp, so when time jumps its queues hold messages
from the other side of the jump. Three kinds are detected:
- ``stamp_ahead``: a stamp more than ``ahead_s`` ahead of the node clock (a camera with a
  wrong clock, a corrupt header). Such messages are still passed on (both cameras may
  share the wrong clock); the episode lasts until a stamp in line with the clock arrives.
- ``stamps_back``: a stamp more than ``back_s`` older than the newest stamp seen on
  either stream (a driver restart, a bag replay starting over without sim time).
- ``clock_back``: the node's ROS clock went back by more than ``back_s`` (``use_sim_time``
  with a bag that restarts); reported by rclpy's clock jump callback.
Each jump is reported once (the caller logs it and resets the pairer); counters and the
"still going on" flag feed /diagnostics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

NS = 1_000_000_000
BACK_TOLERANCE_S = 1.0  # stamps this much out of order are not a jump (the pairer copes)
AHEAD_TOLERANCE_S = 10.0  # camera clocks a few seconds off the node's are common


@dataclass(frozen=True)
class TimeJump:
    kind: str  # "stamp_ahead" | "stamps_back" | "clock_back"
    size_s: float  # always positive
    source: str  # the stream name or "ROS clock"

    def describe(self) -> str:
        if self.kind == "stamp_ahead":
            return f"{self.source} stamp {self.size_s:.3f} s ahead of the node clock"
        if self.kind == "stamps_back":
            return f"{self.source} stamp {self.size_s:.3f} s older than the newest one seen"
        return f"ROS clock went back {self.size_s:.3f} s"


class TimeJumpDetector:
    """Per-message check of stamps against the newest stamp and the node clock."""

    def __init__(
        self, back_s: float = BACK_TOLERANCE_S, ahead_s: float = AHEAD_TOLERANCE_S
    ) -> None:
        self.back_ns = round(back_s * NS)
        self.ahead_ns = round(ahead_s * NS)
        self._lock = threading.Lock()
        self._newest: int | None = None  # newest in-line stamp over both streams
        self._ahead_episode = False
        self._recent = False  # a jump since the last ``warning()``
        self.jumps = 0
        self.stamps_ahead = 0  # messages stamped ahead of the clock
        self.last_jump: TimeJump | None = None

    def check(self, source: str, stamp_ns: int, now_ns: int) -> TimeJump | None:
        """The jump this message starts, or None. ``now_ns <= 0``: clock not yet valid."""
        with self._lock:
            if now_ns > 0 and stamp_ns - now_ns > self.ahead_ns:
                self.stamps_ahead += 1
                if self._ahead_episode:
                    return None
                self._ahead_episode = True
                return self._record(TimeJump("stamp_ahead", (stamp_ns - now_ns) / NS, source))
            self._ahead_episode = False
            newest = self._newest
            if newest is not None and newest - stamp_ns > self.back_ns:
                self._newest = stamp_ns
                return self._record(TimeJump("stamps_back", (newest - stamp_ns) / NS, source))
            self._newest = stamp_ns if newest is None else max(newest, stamp_ns)
            return None

    def clock_jumped(self, delta_ns: int) -> TimeJump | None:
        """Called from the clock's jump callback; only backward jumps count."""
        with self._lock:
            if delta_ns >= -self.back_ns:
                return None
            self._newest = None  # the stamps follow the clock back: no second jump
            self._ahead_episode = False
            return self._record(TimeJump("clock_back", -delta_ns / NS, "ROS clock"))

    def _record(self, jump: TimeJump) -> TimeJump:
        self.jumps += 1
        self._recent = True
        self.last_jump = jump
        return jump

    def warning(self) -> str | None:
        """Text for a WARN diagnostic while a jump is recent or stamps are still ahead."""
        with self._lock:
            recent, self._recent = self._recent, False
            if self._ahead_episode:
                return "input stamps ahead of the node clock"
            if recent and self.last_jump is not None:
                return f"time jump: {self.last_jump.describe()}"
            return None

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {"time_jumps": self.jumps, "stamps_ahead": self.stamps_ahead}
