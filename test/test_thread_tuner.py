"""ThreadTuner: picks the measured-fastest thread count and follows a load change."""

from __future__ import annotations

import numpy as np
import torch

from fusionsam_model.runtime.segmenter import Segmenter
from fusionsam_model.runtime.thread_tuner import ThreadTuner, thread_candidates


def test_candidates_are_powers_of_two_and_the_core_count() -> None:
    assert thread_candidates(1) == [1]
    assert thread_candidates(2) == [1, 2]
    assert thread_candidates(6) == [1, 2, 4, 6]
    assert thread_candidates(8) == [1, 2, 4, 8]


def run(tuner: ThreadTuner, cost: dict[int, float], calls: int) -> list[int]:
    used = []
    for _ in range(calls):
        n = tuner.before_call()
        used.append(n)
        tuner.record(cost[n])
    return used


def test_follows_the_faster_count_when_the_load_changes() -> None:
    applied: list[int] = []
    tuner = ThreadTuner([1, 2], apply=applied.append, probe_every=20, probe_calls=3)
    idle = {1: 50.0, 2: 30.0}  # an idle machine: 2 threads faster
    used = run(tuner, idle, 60)
    assert tuner.best == 2 and used[-23:].count(2) >= 20  # one cycle: 20 used + 3 probes
    busy = {1: 50.0, 2: 80.0}  # another process takes a core: 1 thread faster
    used = run(tuner, busy, 60)
    assert tuner.best == 1 and used[-23:].count(1) >= 20
    assert tuner.switches >= 1
    assert applied[0] == 2 and set(applied) == {1, 2}  # most threads first, set only on change
    assert "1 thread(s)" in tuner.summary()


def test_margin_keeps_the_current_choice_on_noise() -> None:
    tuner = ThreadTuner([1, 2], apply=lambda n: None, probe_every=10, margin=0.05)
    run(tuner, {1: 40.0, 2: 40.0}, 30)
    first = tuner.best
    run(tuner, {1: 39.5, 2: 40.0} if first == 2 else {1: 40.0, 2: 39.5}, 60)
    assert tuner.best == first and tuner.switches == 0


def test_segmenter_auto_threads_runs_the_tuner_on_torch_cpu(monkeypatch) -> None:
    seg = Segmenter.from_preset("tiny", input_size=64, seed=0)
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a thread count set by the user is kept
        seg.set_cpu_threads(0)
        assert seg.thread_tuner is None and seg.threads_info().endswith("(OMP_NUM_THREADS)")
        monkeypatch.delenv("OMP_NUM_THREADS")
        seg.set_cpu_threads(0)
        assert seg.thread_tuner is not None
        rgb = np.zeros((48, 64, 3), np.uint8)
        thermal = np.zeros((48, 64), np.uint8)
        for _ in range(2 * len(seg.thread_tuner.candidates) * seg.thread_tuner.probe_calls):
            seg.predict(rgb, thermal)
        assert set(seg.thread_tuner.medians()) == set(seg.thread_tuner.candidates)
        assert seg.threads_info().startswith("auto: ")
        seg.set_cpu_threads(1)
        assert seg.thread_tuner is None and torch.get_num_threads() == 1
        assert seg.threads_info() == "1 (fixed)"
    finally:
        torch.set_num_threads(before)
