"""Time jumps through the real node: an outside rclpy client (this process) sends pairs
stamped an hour ahead, pairs 60 s back, a /clock that goes back (use_sim_time), and
``fusionsam-play --loop`` replays a bag three times; after each, masks keep coming."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ros_helpers import make_image, start_fusionsam_node, wait_until

from fusionsam_ros.bags.writer import write_bag
from fusionsam_ros.node.node import DIAGNOSTIC_NAME, OUTPUT_TOPICS

S = 1_000_000_000
SEMANTIC = OUTPUT_TOPICS["semantic"]
RNG = np.random.default_rng(5)
OUT_TIMEOUT_S = 20.0


def pair(stamp_ns: int) -> tuple:
    rgb = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    thermal = RNG.integers(0, 256, (24, 32), dtype=np.uint8)
    return make_image(rgb, "rgb8", stamp_ns), make_image(thermal, "mono8", stamp_ns)


def to_ns(stamp) -> int:
    return stamp.sec * S + stamp.nanosec


def mask_stamps(client) -> set[int]:
    return {to_ns(m.header.stamp) for m in client.received(SEMANTIC)}


def send_pairs(client, stamps: list[int]) -> None:
    """Publish pairs one at a time, each once the previous one's mask arrived (or timed out)."""
    for t in stamps:
        rgb, thermal = pair(t)
        client.publisher("rgb/image").publish(rgb)
        client.publisher("thermal/image").publish(thermal)
        wait_until(lambda t=t: t in mask_stamps(client), OUT_TIMEOUT_S)


def diagnostics_after(client, start: int) -> list[DiagnosticStatus]:
    statuses = []
    for array in client.received("/diagnostics")[start:]:
        statuses += [s for s in array.status if s.name == DIAGNOSTIC_NAME]
    return statuses


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@pytest.fixture(scope="module", params=["ros_native", "fallback"])
def pairing_env(request, ros_env) -> dict[str, str]:
    """Both pairing paths: message_filters (reset = a new synchroniser) and the own one."""
    if request.param == "ros_native":
        pytest.importorskip("message_filters")
    return dict(ros_env, FUSIONSAM_ROS_FALLBACK="1" if request.param == "fallback" else "0")


@pytest.fixture(scope="module")
def node(pairing_env, tmp_path_factory, tiny_checkpoint):
    proc = start_fusionsam_node(
        pairing_env,
        tmp_path_factory.mktemp("jumps"),
        checkpoint=tiny_checkpoint,
        params={"sync_slop_s": 0.02, "sync_queue_size": 5, "diagnostics_period_s": 0.5},
    )
    assert proc.wait_for_output("ready:", 240.0), proc.output()
    yield proc
    if proc.returncode is None:
        proc.stop()


@pytest.fixture(scope="module")
def client(ros_client, node):
    pubs = [ros_client.publisher("rgb/image"), ros_client.publisher("thermal/image")]
    ros_client.subscribe(SEMANTIC)
    ros_client.subscribe("/diagnostics", DiagnosticArray)
    # this node's endpoints only: the shared client also holds the other tests' publishers
    assert wait_until(
        lambda: (
            all(p.get_subscription_count() > 0 for p in pubs)
            and ros_client.node.count_publishers(SEMANTIC) > 0
        ),
        60.0,
    ), node.output()
    send_pairs(ros_client, [time.time_ns()])  # the first pair after discovery
    return ros_client


def test_an_hour_ahead_stamp_is_logged_once_and_later_pairs_get_masks(client, node):
    diag_start = len(client.received("/diagnostics"))
    now = time.time_ns()
    send_pairs(client, [now + 3600 * S])
    normal = [time.time_ns() + k * S // 10 for k in range(5)]
    send_pairs(client, normal)
    got = mask_stamps(client)
    assert all(t in got for t in normal), (len(got & set(normal)), node.output()[-3000:])
    lines = [ln for ln in node.output().splitlines() if "ahead of the node clock" in ln]
    print("node log:", *lines, sep="\n  ")
    assert len(lines) == 1 and re.search(r"RGB stamp 3\d{3}\.\d{3} s ahead", lines[0])
    ok = wait_until(
        lambda: any(
            s.level == DiagnosticStatus.WARN and "ahead" in s.message
            for s in diagnostics_after(client, diag_start)
        ),
        5.0,
    )
    assert ok, [s.message for s in diagnostics_after(client, diag_start)]
    assert wait_until(
        lambda: (
            (d := diagnostics_after(client, diag_start))
            and int(values(d[-1])["time_jumps"]) >= 1
            and int(values(d[-1])["stamps_ahead"]) >= 2
        ),
        5.0,
    )


def test_stamps_sixty_seconds_back_are_logged_and_pairing_resumes_at_once(client, node):
    now = time.time_ns()
    send_pairs(client, [now + k * S // 10 for k in range(3)])
    back = [now - 60 * S + k * S // 10 for k in range(5)]
    send_pairs(client, back)
    got = mask_stamps(client)
    assert all(t in got for t in back), (len(got & set(back)), node.output()[-3000:])
    lines = [ln for ln in node.output().splitlines() if "older than the newest" in ln]
    print("node log:", *lines, sep="\n  ")
    assert len(lines) == 1 and re.search(r"stamp 60\.\d{3} s older", lines[0])
    assert "pairing state reset" in lines[0]


def test_loop_replay_gives_masks_on_every_pass(client, node, tmp_path, ros_env):
    from fusionsam_model.data.datasets import Sample

    frames = 20  # 1.9 s recorded: each restart is a jump back beyond the 1 s tolerance
    samples = [
        Sample(
            name=f"{i:05d}D",
            rgb=RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8),
            thermal=RNG.integers(0, 256, (24, 32), dtype=np.uint8),
            label=np.zeros((24, 32), np.uint8),
        )
        for i in range(frames)
    ]
    write_bag(samples, tmp_path / "loop", rate_hz=10, storage="mcap")
    stamps_before = len(client.received(SEMANTIC))
    log_before = len(node.output().splitlines())
    player = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fusionsam_ros.bags.player",
            str(tmp_path / "loop"),
            "--loop",
            "--wait-for-subscribers",
            "20",
        ],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def passes() -> list[int]:
        """Masks per pass: a pass starts when a mask's stamp is not newer than the last."""
        counts: list[int] = []
        last = None
        for m in client.received(SEMANTIC)[stamps_before:]:
            t = to_ns(m.header.stamp)
            if last is None or t <= last:
                counts.append(0)
            counts[-1] += 1
            last = t
        return counts

    try:
        wait_until(lambda: len(passes()) >= 4, 60.0, 0.1)  # three whole passes seen
    finally:
        player.send_signal(signal.SIGINT)
        output = player.communicate(timeout=30)[0]
    per_pass = passes()[:3]
    print(f"masks per pass (of {frames} pairs each): {per_pass}")
    statuses = diagnostics_after(client, 0)
    if statuses:  # where the others went: stale pairs replaced in the mailbox, sync misses
        last = values(statuses[-1])
        print({k: last.get(k) for k in ("pairs_received", "dropped_pairs", "sync_misses")})
    assert len(per_pass) == 3 and all(n >= 1 for n in per_pass), (per_pass, output)
    log = node.output().splitlines()[log_before:]
    jumps = [ln for ln in log if "older than the newest" in ln]
    print("node log:", *jumps, sep="\n  ")
    assert len(jumps) >= 3, jumps  # the bag's old stamps, then two restarts
    assert sum("1.900 s older" in ln for ln in jumps) >= 2, jumps


@pytest.fixture(scope="module")
def sim_node(pairing_env, tmp_path_factory, tiny_checkpoint):
    proc = start_fusionsam_node(
        pairing_env,
        tmp_path_factory.mktemp("simtime"),
        checkpoint=tiny_checkpoint,
        params={
            "use_sim_time": True,
            "rgb_topic": "sim/rgb",
            "thermal_topic": "sim/thermal",
            "sync_slop_s": 0.02,
            "sync_queue_size": 5,
        },
        name="sim_node",
    )
    assert proc.wait_for_output("ready:", 240.0), proc.output()
    yield proc
    if proc.returncode is None:
        proc.stop()


def test_ros_clock_going_back_is_logged_and_masks_follow(ros_client, sim_node):
    from rosgraph_msgs.msg import Clock

    ros_client.clear()  # the other pairing path's node answered the same stamps
    clock_pub = ros_client.node.create_publisher(Clock, "/clock", 10)
    rgb_pub = ros_client.publisher("sim/rgb")
    thermal_pub = ros_client.publisher("sim/thermal")
    ros_client.subscribe(SEMANTIC)
    assert wait_until(
        lambda: (
            clock_pub.get_subscription_count() > 0
            and rgb_pub.get_subscription_count() > 0
            and thermal_pub.get_subscription_count() > 0
        ),
        15.0,
    ), sim_node.output()

    # /clock as a bag player publishes it: repeated (every 25 ms), not once, because rclpy
    # subscribes to it best effort with depth 1 and a single message may never arrive
    clock_ns = [1000 * S]

    def tick() -> None:
        sec, nsec = divmod(clock_ns[0], S)
        clock_pub.publish(Clock(clock=Time(sec=sec, nanosec=nsec)))

    def at(t_ns: int, timeout_s: float = OUT_TIMEOUT_S) -> bool:
        rgb, thermal = pair(t_ns)
        rgb_pub.publish(rgb)
        thermal_pub.publish(thermal)
        return wait_until(lambda: t_ns in mask_stamps(ros_client), timeout_s)

    base = clock_ns[0]
    timer = ros_client.node.create_timer(0.025, tick)
    try:
        # matched counts on this side do not mean the node has matched this client's reader
        # (or our writers): a first pair, sent again until its mask comes back, waits for that
        warm_up = base - S // 10
        assert wait_until(lambda: at(warm_up, 2.0), OUT_TIMEOUT_S), sim_node.output()
        assert [at(base + k * S // 10) for k in range(3)] == [True] * 3, sim_node.output()
        clock_ns[0] = base - 60 * S  # a bag that starts over, played with its /clock
        assert sim_node.wait_for_output("ROS clock went back", 10.0), sim_node.output()
        assert [at(base - 60 * S + k * S // 10) for k in range(3)] == [True] * 3, sim_node.output()
    finally:
        ros_client.node.destroy_timer(timer)
    lines = [ln for ln in sim_node.output().splitlines() if "time jump" in ln]
    print("node log:", *lines, sep="\n  ")
    assert len(lines) == 1 and "ROS clock went back 60.000 s" in lines[0], lines
