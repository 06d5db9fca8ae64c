"""Losses the middleware reports on the input subscriptions, for /diagnostics.

A best-effort message that DDS could not deliver whole (a fragment lost, a full
shared-memory segment) never reaches a callback; the only trace is the subscription's
``message_lost`` QoS event. A publisher whose QoS cannot match (best-effort publisher,
reliable subscriber) gives ``incompatible_qos``. Both are counted per input here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

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

    def counters(self) -> dict[str, int]:
        with self._lock:
            out = {f"transport_lost.{k}": v for k, v in self.lost.items()}
            out.update({f"incompatible_qos.{k}": v for k, v in self.incompatible.items()})
            return out

    def warning(self) -> str | None:
        """Text for a WARN diagnostic when losses or QoS mismatches arrived since last call."""
        with self._lock:
            lost, incompatible = sum(self.lost.values()), sum(self.incompatible.values())
            new_lost, new_incompatible = (
                lost - self._reported_lost,
                incompatible - self._reported_incompatible,
            )
            self._reported_lost, self._reported_incompatible = lost, incompatible
        parts = []
        if new_lost:
            parts.append(f"{new_lost} input message(s) lost in transport")
        if new_incompatible:
            parts.append(f"{new_incompatible} publisher(s) with incompatible QoS")
        return "; ".join(parts) or None
