"""Intra-op thread count chosen by measurement while the model runs (``cpu_threads=0``).

Which thread count is fastest depends on what else runs on the cores, and that changes
while a vehicle drives: on an idle 2-core machine 2 threads are ~1.4x faster than 1,
with one busy process beside they are up to 10-20 % slower (docs/results.md, Speed). A fixed
choice is wrong half the time, so the tuner keeps a short window of call times per
candidate count, uses the one with the lowest median, and re-measures the others for
a few calls every ``probe_every`` calls, so it follows the load as it changes.

torch's thread count is process-wide (``torch.set_num_threads``), so the tuner suits a
process that runs one model, like the node or the benchmark.
"""

from __future__ import annotations

import os
import statistics
from collections import deque
from collections.abc import Callable, Sequence


def thread_candidates(cores: int | None = None) -> list[int]:
    """1, 2, 4, ... below the core count, and the core count itself."""
    cores = max(1, cores or os.cpu_count() or 1)
    counts = {cores}
    n = 1
    while n < cores:
        counts.add(n)
        n *= 2
    return sorted(counts)


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


class ThreadTuner:
    """Call ``before_call()`` before each model call and ``record(ms)`` after it."""

    def __init__(
        self,
        candidates: Sequence[int] | None = None,
        apply: Callable[[int], None] = _set_torch_threads,
        window: int = 5,
        probe_every: int = 40,
        probe_calls: int = 3,
        margin: float = 0.03,
    ) -> None:
        self.candidates = list(candidates or thread_candidates())
        if not self.candidates or min(self.candidates) < 1:
            raise ValueError(f"thread candidates must be >= 1, got {self.candidates}")
        self.apply = apply
        self.probe_every = probe_every
        self.probe_calls = probe_calls
        self.margin = margin  # a challenger must be this much faster to take over
        self.samples = {n: deque(maxlen=window) for n in self.candidates}
        self.best = self.candidates[-1]
        self.current: int | None = None
        self.switches = 0
        # start: every candidate a few calls, the most threads first
        self._plan = deque(n for n in reversed(self.candidates) for _ in range(probe_calls))

    def medians(self) -> dict[int, float]:
        """Median of the recent call times (ms) per thread count measured so far."""
        return {n: statistics.median(s) for n, s in self.samples.items() if s}

    def _choose_best(self) -> None:
        medians = self.medians()
        if not medians:
            return
        fastest = min(medians, key=medians.get)
        if self.best not in medians or medians[fastest] < (1 - self.margin) * medians[self.best]:
            if fastest != self.best:
                self.switches += 1
            self.best = fastest

    def _refill(self) -> None:
        self._choose_best()
        self._plan.extend([self.best] * self.probe_every)
        for n in self.candidates:
            if n != self.best:
                self._plan.extend([n] * self.probe_calls)

    def before_call(self) -> int:
        """Set the thread count for the next call; returns it."""
        if not self._plan:
            self._refill()
        n = self._plan.popleft()
        if n != self.current:
            self.apply(n)
            self.current = n
        return n

    def record(self, ms: float) -> None:
        """Time of the call just made with ``current`` threads."""
        if self.current is not None:
            self.samples[self.current].append(ms)

    def summary(self) -> str:
        """E.g. ``auto: 1 thread(s) (median ms 1: 52.1, 2: 61.0; 3 switches)``."""
        shown = ", ".join(f"{n}: {m:.1f}" for n, m in sorted(self.medians().items()))
        return f"auto: {self.best} thread(s) (median ms {shown or 'none yet'}; {self.switches} switches)"
