"""Losses the middleware reports on the input subscriptions, for /diagnostics.

A best-effort message that DDS could not deliver whole (a fragment lost, a full
shared-memory segment) never reaches a callback; the only trace is the subscription's
``message_lost`` QoS event. Messages a full reader history overwrites before the
callback runs (a burst faster than the node drains it) get no event at all; they show as
gaps in the publisher's sequence numbers (rclpy's MessageInfo), counted as ``input_gaps``
(a superset of the transport losses). A publisher whose QoS cannot match (best-effort
publisher, reliable subscriber) gives ``incompatible_qos``. All are counted per input.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.event_handler import (
    QoSMessageLostInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)


class TransportEvents:
    """Counters fed by the QoS event callbacks of the node's input subscriptions."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        """``report`` gets a one-line text for every loss event (the node logs it)."""
        self._report = report
        self._lock = threading.Lock()
        self.lost: dict[str, int] = {}
        self.gaps: dict[str, int] = {}
        self._last_seq: dict[tuple[str, str], int] = {}  # (input, publisher gid) -> seq
        self.incompatible: dict[str, int] = {}
        self._reported_lost = 0
        self._reported_incompatible = 0

    def callbacks(self, what: str) -> SubscriptionEventCallbacks:
        """Event callbacks for the subscription of input ``what`` ("rgb", "thermal")."""
        with self._lock:
            self.lost.setdefault(what, 0)
            self.incompatible.setdefault(what, 0)

        def on_lost(info: QoSMessageLostInfo) -> None:
            with self._lock:
                self.lost[what] += info.total_count_change
            if self._report is not None:
                self._report(
                    f"{info.total_count_change} {what} message(s) lost in transport "
                    f"({info.total_count} so far): frames too large for the DDS "
                    "configuration (FASTDDS_DEFAULT_PROFILES_FILE) or a congested link"
                )

        def on_incompatible(info: QoSRequestedIncompatibleQoSInfo) -> None:
            with self._lock:
                self.incompatible[what] += info.total_count_change

        return SubscriptionEventCallbacks(message_lost=on_lost, incompatible_qos=on_incompatible)

    def record_sequence(self, what: str, info: dict[str, Any]) -> None:
        """Count the messages a publisher sent between this one and its previous one."""
        seq = info.get("publication_sequence_number")
        if seq is None:  # the middleware does not report sequence numbers
            return
        key = (what, str(info.get("publisher_gid")))
        with self._lock:
            last = self._last_seq.get(key)
            self._last_seq[key] = seq if last is None else max(last, seq)
            missed = 0 if last is None else seq - last - 1
            if missed > 0:
                self.gaps[what] = self.gaps.get(what, 0) + missed
        if missed > 0 and self._report is not None:
            self._report(
                f"{missed} {what} message(s) sent by the publisher never reached the node "
                "(publisher sequence gap: lost in transport or overwritten in a full queue)"
            )

    def counters(self) -> dict[str, int]:
        with self._lock:
            out = {f"transport_lost.{k}": v for k, v in self.lost.items()}
            out.update({f"input_gaps.{k}": self.gaps.get(k, 0) for k in self.lost})
            out.update({f"incompatible_qos.{k}": v for k, v in self.incompatible.items()})
            return out

    def warning(self) -> str | None:
        """Text for a WARN diagnostic when losses or QoS mismatches arrived since last call."""
        with self._lock:
            lost = sum(self.lost.values()) + sum(self.gaps.values())
            incompatible = sum(self.incompatible.values())
            new_lost, new_incompatible = (
                lost - self._reported_lost,
                incompatible - self._reported_incompatible,
            )
            self._reported_lost, self._reported_incompatible = lost, incompatible
        parts = []
        if new_lost:
            parts.append(f"{new_lost} input message(s) lost in transport or never received")
        if new_incompatible:
            parts.append(f"{new_incompatible} publisher(s) with incompatible QoS")
        return "; ".join(parts) or None
