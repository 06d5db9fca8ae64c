"""Approximate-time pairing policy on synthetic stamps, and the one-slot mailbox."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from fusionsam_ros.node.latest_pair import LatestPairMailbox
from fusionsam_ros.node.sync import ApproximateTimePairer, make_pairer

MS = 1_000_000


def msg(t_ms: float, tag: str = "") -> SimpleNamespace:
    ns = round(t_ms * MS)
    stamp = SimpleNamespace(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), tag=tag, t=t_ms)


def pairer(queue: int = 5, slop_ms: float = 10.0) -> tuple[ApproximateTimePairer, list]:
    pairs: list = []
    return ApproximateTimePairer(
        queue, slop_ms / 1000, lambda r, t: pairs.append((r.t, t.t))
    ), pairs


def test_pairs_within_slop_and_ignores_beyond() -> None:
    p, pairs = pairer(slop_ms=10)
    p.add_rgb(msg(1000))
    p.add_thermal(msg(1008))  # within slop
    p.add_rgb(msg(1100))
    p.add_thermal(msg(1150))  # 50 ms away: no pair
    assert pairs == [(1000, 1008)]
    assert p.pending() == (1, 1)


def test_picks_the_closest_partner_and_older_ones_keep_waiting() -> None:
    p, pairs = pairer(slop_ms=30)
    for t in (990, 1000, 1020):
        p.add_thermal(msg(t))
    p.add_rgb(msg(1017))
    assert pairs == [(1017, 1020)]
    assert p.sync_misses == 0 and p.pending() == (0, 2)  # as message_filters: only the pair leaves
    p.add_rgb(msg(995))  # older than the pair sent: still paired (no ordering rule)
    assert pairs[-1] == (995, 990) or pairs[-1] == (995, 1000)
    assert p.pending() == (0, 1)


def test_a_future_stamp_does_not_block_later_pairs() -> None:
    p, pairs = pairer(queue=5, slop_ms=10)
    hour = 3_600_000
    p.add_rgb(msg(1000 + hour))
    p.add_thermal(msg(1000 + hour))
    for k in range(5):
        p.add_rgb(msg(2000 + 100 * k))
        p.add_thermal(msg(2000 + 100 * k + 3))
    assert len(pairs) == 6 and pairs[-1] == (2400, 2403)


def test_replayed_stamps_pair_again_and_reset_counts_misses() -> None:
    p, pairs = pairer(queue=5, slop_ms=10)
    for _ in range(3):  # a loop replay: the same stamps every pass
        for k in range(4):
            p.add_rgb(msg(1000 + 100 * k))
            p.add_thermal(msg(1000 + 100 * k + 2))
    assert len(pairs) == 12
    p.add_rgb(msg(5000))
    p.add_rgb(msg(5000))  # same stamp again: replaces the queued one, counted
    p.add_thermal(msg(7000))
    assert p.sync_misses == 1 and p.pending() == (1, 1)
    assert p.reset() == 2 and p.pending() == (0, 0) and p.sync_misses == 3


def test_offset_streams_never_pair_and_count_misses() -> None:
    p, pairs = pairer(queue=3, slop_ms=10)
    for k in range(10):
        p.add_rgb(msg(1000 + 33 * k))
        p.add_thermal(msg(1000 + 33 * k + 15))  # 15 ms offset > slop
    assert pairs == []
    assert p.sync_misses == 2 * (10 - 3)  # everything beyond the queue was discarded
    assert p.pending() == (3, 3)


def test_out_of_order_arrival_within_queue() -> None:
    p, pairs = pairer(slop_ms=5)
    p.add_rgb(msg(2000))
    p.add_rgb(msg(1967))
    p.add_thermal(msg(1968))
    assert pairs == [(1967, 1968)]
    p.add_thermal(msg(2001))
    assert pairs[-1] == (2000, 2001) and p.sync_misses == 0


def test_zero_slop_needs_equal_stamps_and_bad_arguments_raise() -> None:
    p, pairs = pairer(slop_ms=0)
    p.add_rgb(msg(5))
    p.add_thermal(msg(5.000001))
    p.add_thermal(msg(5))
    assert pairs == [(5, 5)]
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimePairer(3, -0.1, print)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimePairer(0, 0.1, print)


def test_make_pairer_falls_back_when_message_filters_is_missing() -> None:
    p = make_pairer(4, 0.02, print, prefer_message_filters=False)
    assert isinstance(p, ApproximateTimePairer) and p.impl == "fusionsam_ros.node.sync"
    native = make_pairer(4, 0.02, print)
    try:
        import message_filters  # noqa: F401

        assert native.impl == "message_filters"
    except ImportError:
        assert native.impl == "fusionsam_ros.node.sync"


def test_mailbox_keeps_newest_and_counts_drops() -> None:
    box: LatestPairMailbox[int] = LatestPairMailbox()
    assert box.put(1) is False
    assert box.put(2) is True and box.put(3) is True
    assert box.take(0.1) == 3
    assert box.take(0.01) is None  # empty: times out
    assert (box.put_count, box.dropped) == (3, 2)
    box.close()
    assert box.take() is None and box.put(4) is False


def test_mailbox_under_concurrent_producers() -> None:
    box: LatestPairMailbox[tuple[int, int]] = LatestPairMailbox()
    taken: list[tuple[int, int]] = []
    producers_done = threading.Event()

    def consume() -> None:
        while True:
            item = box.take(0.05)
            if item is not None:
                taken.append(item)
            elif producers_done.is_set():
                return

    def produce(pid: int) -> None:
        for i in range(2000):
            box.put((pid, i))

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    producers_done.set()
    consumer.join(5)
    assert not consumer.is_alive()
    assert box.put_count == 8000
    assert len(taken) + box.dropped == 8000  # every pair was either processed or counted
    for pid in range(4):  # each producer's pairs arrive in order
        seq = [i for p, i in taken if p == pid]
        assert seq == sorted(seq)


def test_close_wakes_a_waiting_worker() -> None:
    box: LatestPairMailbox[int] = LatestPairMailbox()
    result: list = []
    worker = threading.Thread(target=lambda: result.append(box.take()))
    worker.start()
    box.close()
    worker.join(2)
    assert not worker.is_alive() and result == [None]


def test_message_filters_pairer_reset_empties_its_queues() -> None:
    pytest.importorskip("message_filters")
    from sensor_msgs.msg import Image

    from fusionsam_ros.node.sync import MessageFiltersPairer, stamp_ns

    def image(t_ms: int) -> Image:  # message_filters reads real builtin_interfaces stamps
        m = Image()
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(t_ms * MS, 1_000_000_000)
        return m

    pairs: list = []
    p = MessageFiltersPairer(
        5, 0.01, lambda r, t: pairs.append((stamp_ns(r) // MS, stamp_ns(t) // MS))
    )
    hour = 3_600_000
    p.add_rgb(image(1000 + hour))
    p.add_rgb(image(2000))
    assert p.reset() == 2 and p.sync_misses == 2
    p.add_thermal(image(2000))  # its partner went with the reset
    assert pairs == []
    for k in range(3):
        p.add_rgb(image(3000 + 100 * k))
        p.add_thermal(image(3000 + 100 * k + 2))
    assert pairs == [(3000, 3002), (3100, 3102), (3200, 3202)]
