"""Time-jump detection on synthetic stamps (the node-level behaviour is in
test_ros_time_jumps.py)."""

from __future__ import annotations

from fusionsam_ros.node.time_jumps import TimeJumpDetector

S = 1_000_000_000
NOW = 1_700_000_000 * S


def test_stamp_ahead_is_one_jump_per_episode_and_warns_while_it_lasts() -> None:
    d = TimeJumpDetector(back_s=1.0, ahead_s=10.0)
    assert d.check("rgb", NOW - S, NOW) is None
    jump = d.check("rgb", NOW + 3600 * S, NOW)
    assert jump is not None and jump.kind == "stamp_ahead" and abs(jump.size_s - 3600) < 1e-6
    assert "3600.000 s ahead" in jump.describe()
    assert d.check("thermal", NOW + 3600 * S, NOW) is None  # same episode
    assert d.warning() == "input stamps ahead of the node clock"
    assert d.check("rgb", NOW, NOW) is None  # back in line: not a backward jump
    assert d.warning() is None
    assert d.counters() == {"time_jumps": 1, "stamps_ahead": 2}


def test_stamps_going_back_is_one_jump_for_both_streams() -> None:
    d = TimeJumpDetector(back_s=1.0)
    for k in range(5):
        assert d.check("rgb", NOW + k * S // 10, NOW) is None
        assert d.check("thermal", NOW + k * S // 10 - S // 2, NOW) is None  # 0.5 s: no jump
    jump = d.check("rgb", NOW - 60 * S, NOW)
    assert jump is not None and jump.kind == "stamps_back" and abs(jump.size_s - 60.4) < 1e-6
    assert d.check("thermal", NOW - 60 * S, NOW) is None  # the other stream follows
    assert d.warning() is not None and d.warning() is None  # WARN once, then OK
    assert d.counters()["time_jumps"] == 1


def test_clock_going_back_resets_the_reference_and_ignores_small_steps() -> None:
    d = TimeJumpDetector(back_s=1.0)
    d.check("rgb", 100 * S, 100 * S)
    assert d.clock_jumped(-S // 2) is None
    jump = d.clock_jumped(-60 * S)
    assert jump is not None and jump.kind == "clock_back" and jump.size_s == 60.0
    assert d.check("rgb", 40 * S, 40 * S) is None  # stamps follow the clock: no second jump
    assert d.counters()["time_jumps"] == 1
    fresh = TimeJumpDetector()
    assert fresh.check("rgb", 3600 * S, 0) is None  # sim time not started yet: no "ahead" check
