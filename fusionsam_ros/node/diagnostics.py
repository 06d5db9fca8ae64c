"""Pipeline statistics of the node and their /diagnostics message.

Counters are written by the subscription callbacks and the worker thread and read by
the diagnostics timer, so every access goes through one lock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

LATENCY_WINDOW = 600  # publishes; p99 needs a few hundred samples to mean anything


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) if samples else float("nan")


class PipelineStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.published = 0
        self.errors: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._model_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._node_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._last_report = (time.monotonic(), 0, 0)  # time, published, errors

    def record_publish(self, latency_ms: float, model_ms: float, node_ms: float) -> None:
        with self._lock:
            self.published += 1
            self._latency_ms.append(latency_ms)
            self._model_ms.append(model_ms)
            self._node_ms.append(node_ms)

    def record_error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def report(self) -> dict[str, float | int | dict[str, int]]:
        """Figures since start plus rate and new errors since the previous report."""
        with self._lock:
            now = time.monotonic()
            last_t, last_published, last_errors = self._last_report
            total_errors = sum(self.errors.values())
            self._last_report = (now, self.published, total_errors)
            latency, model, node = list(self._latency_ms), list(self._model_ms), list(self._node_ms)
            return {
                "rate_hz": (self.published - last_published) / max(now - last_t, 1e-9),
                "published": self.published,
                "latency_p50_ms": percentile(latency, 50),
                "latency_p99_ms": percentile(latency, 99),
                "model_p50_ms": percentile(model, 50),
                "node_overhead_p50_ms": percentile(node, 50),
                "errors_total": total_errors,
                "new_errors": total_errors - last_errors,
                "errors": dict(self.errors),
            }


def diagnostic_array(
    stamp,
    name: str,
    hardware_id: str,
    report: dict,
    counters: dict,
    info: dict[str, str],
    warnings: list[str] | None = None,
) -> DiagnosticArray:
    """One DiagnosticStatus: level WARN when errors arrived since the previous report or
    a condition in ``warnings`` (a time jump, transport losses) holds."""
    status = DiagnosticStatus()
    status.name = name
    status.hardware_id = hardware_id
    problems = list(warnings or [])
    if report["new_errors"]:
        problems.insert(0, f"{report['new_errors']} bad input(s) since the last report")
    if problems:
        status.level = DiagnosticStatus.WARN
        status.message = "; ".join(problems)
    elif report["rate_hz"] == 0:
        status.level = DiagnosticStatus.OK
        status.message = "waiting for synchronised RGB + thermal pairs"
    else:
        status.level = DiagnosticStatus.OK
        status.message = f"publishing at {report['rate_hz']:.1f} Hz"

    def fmt(value: float | int) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    values = {k: fmt(v) for k, v in report.items() if k not in ("errors", "new_errors")}
    values.update({k: str(v) for k, v in counters.items()})
    values.update({f"errors.{k}": str(v) for k, v in sorted(report["errors"].items())})
    values.update(info)
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array


def diagnostics_values(array: DiagnosticArray, name: str) -> dict[str, str] | None:
    """Key/value pairs of the status called ``name`` (for tests and tools)."""
    for status in array.status:
        if status.name == name:
            return {kv.key: kv.value for kv in status.values}
    return None
