"""Bag tools: dataset -> rosbag2 -> back (both storages), broken bags, and the rclpy player."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import wait_until

from fusionsam_ros.bags import player as bag_player
from fusionsam_ros.bags import writer as bag_writer
from fusionsam_ros.bags.player import BagError, check_required, read_messages
from fusionsam_ros.bags.writer import (
    LABEL_TOPIC,
    NAME_TOPIC,
    RGB_TOPIC,
    THERMAL_TOPIC,
    typestore,
    write_bag,
)
from fusionsam_ros.qos import RELIABLE, qos_profile
from fusionsam_ros.ros_time import header_ns


def make_samples(count: int, thermal_dtype: type = np.uint8, seed: int = 0) -> list:
    from fusionsam_model.data.datasets import Sample

    rng = np.random.default_rng(seed)
    top = 256 if thermal_dtype == np.uint8 else 65536
    return [
        Sample(
            name=f"{i + 1:05d}{'DN'[i % 2]}",
            rgb=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
            thermal=rng.integers(0, top, (24, 32)).astype(thermal_dtype),
            label=rng.integers(0, 9, (24, 32), dtype=np.uint8),
        )
        for i in range(count)
    ]


def read_back(bag: Path) -> dict[str, list]:
    """topic -> [(record time, deserialised message)] via rosbags."""
    out: dict[str, list] = {}
    for m in read_messages(bag):
        out.setdefault(m.topic, []).append(
            (m.timestamp_ns, typestore().deserialize_cdr(m.raw, m.msgtype))
        )
    return out


def stamp(msg) -> int:
    """Stamp of an Image (its header) or of a Header message itself."""
    return header_ns(getattr(msg, "header", msg))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip_is_byte_identical(tmp_path: Path, storage: str) -> None:
    samples = make_samples(4)
    bag = tmp_path / "drive"
    summary = write_bag(samples, bag, storage=storage, rate_hz=20, thermal_offset_ms=7, jitter_ms=2)
    assert summary.counts == {RGB_TOPIC: 4, THERMAL_TOPIC: 4, LABEL_TOPIC: 4, NAME_TOPIC: 4}
    got = read_back(bag)
    for i, sample in enumerate(samples):
        (_, rgb), (_, thermal), (_, label), (t_name, name) = (
            got[t][i] for t in (RGB_TOPIC, THERMAL_TOPIC, LABEL_TOPIC, NAME_TOPIC)
        )
        assert (rgb.encoding, thermal.encoding, label.encoding) == ("rgb8", "mono8", "mono8")
        assert bytes(rgb.data) == sample.rgb.tobytes()
        assert bytes(thermal.data) == sample.thermal.tobytes()
        assert bytes(label.data) == sample.label.tobytes()
        assert (rgb.height, rgb.width, rgb.step) == (24, 32, 96)
        assert name.frame_id == sample.name
        assert stamp(rgb) == stamp(label) == stamp(name) == t_name
        assert rgb.header.frame_id == "rgb_camera" and thermal.header.frame_id == "thermal_camera"
        # thermal: constant 7 ms offset plus seeded jitter (std 2 ms), never equal to RGB
        offset_ms = (stamp(thermal) - stamp(rgb)) / 1e6
        assert 7 - 10 < offset_ms < 7 + 10 and offset_ms != 7
    rgb_stamps = [stamp(m) for _, m in got[RGB_TOPIC]]
    assert np.allclose(np.diff(rgb_stamps), 50_000_000, atol=1)  # 20 Hz


def test_bag_cdr_is_what_rclpy_reads(tmp_path: Path) -> None:
    """The player publishes the recorded bytes as they are: rclpy must decode them."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    samples = make_samples(1)
    write_bag(samples, tmp_path / "b", storage="mcap")
    messages = {m.topic: m.raw for m in read_messages(tmp_path / "b")}
    rgb = deserialize_message(messages[RGB_TOPIC], Image)
    assert bytes(rgb.data) == samples[0].rgb.tobytes() and rgb.encoding == "rgb8"
    assert deserialize_message(messages[NAME_TOPIC], Header).frame_id == samples[0].name


def test_same_arguments_write_the_same_messages(tmp_path: Path) -> None:
    samples = make_samples(3)
    for name in ("a", "b"):
        write_bag(samples, tmp_path / name, jitter_ms=3, seed=5)
    a = [(m.topic, m.timestamp_ns, m.raw) for m in read_messages(tmp_path / "a")]
    b = [(m.topic, m.timestamp_ns, m.raw) for m in read_messages(tmp_path / "b")]
    assert a == b


def test_thermal_mono16(tmp_path: Path) -> None:
    eight = make_samples(1)
    write_bag(eight, tmp_path / "widened", thermal_encoding="mono16")
    ((_, thermal),) = read_back(tmp_path / "widened")[THERMAL_TOPIC]
    assert thermal.encoding == "mono16" and thermal.step == 64
    values = np.frombuffer(bytes(thermal.data), "<u2").reshape(24, 32)
    assert np.array_equal(values, eight[0].thermal.astype(np.uint16) * 257)

    sixteen = make_samples(1, thermal_dtype=np.uint16)
    write_bag(sixteen, tmp_path / "native")  # the dataset depth is kept by default
    ((_, thermal),) = read_back(tmp_path / "native")[THERMAL_TOPIC]
    assert thermal.encoding == "mono16"
    assert bytes(thermal.data) == sixteen[0].thermal.astype("<u2").tobytes()
    with pytest.raises(bag_writer.BagWriteError, match="mono16"):
        write_bag(sixteen, tmp_path / "narrow", thermal_encoding="mono8")


def test_writer_refuses_bad_arguments(tmp_path: Path) -> None:
    samples = make_samples(1)
    (tmp_path / "exists").mkdir()
    with pytest.raises(bag_writer.BagWriteError, match="exists"):
        write_bag(samples, tmp_path / "exists")
    with pytest.raises(bag_writer.BagWriteError, match="--rate"):
        write_bag(samples, tmp_path / "r", rate_hz=0)
    with pytest.raises(bag_writer.BagWriteError, match="--storage"):
        write_bag(samples, tmp_path / "s", storage="zip")


def test_make_bag_cli_on_a_generated_dataset(tmp_path: Path, capsys) -> None:
    from fusionsam_model.data.synth import generate

    generate(tmp_path / "data", num=8, seed=3, progress=False)  # 2 test pairs
    from fusionsam_model.data.datasets import open_dataset

    test_split = open_dataset(tmp_path / "data", "test")
    rc = bag_writer.main(
        [
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "bag"),
            "--storage",
            "mcap",
            "--limit",
            "2",
            "--thermal-offset-ms",
            "5",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    got = read_back(tmp_path / "bag")
    assert [m.frame_id for _, m in got[NAME_TOPIC]] == list(test_split.names[:2])
    assert bytes(got[LABEL_TOPIC][1][1].data) == test_split[1].label.tobytes()

    rc = bag_writer.main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "b2")])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing" in err


# --- broken bags -----------------------------------------------------------------------------
def write_raw_bag(path: Path, messages: list[tuple[str, int, bytes]]) -> None:
    """A bag with exactly the given (topic, time, raw CDR) messages."""
    from rosbags.rosbag2 import Writer

    with Writer(path, version=Writer.VERSION_LATEST) as writer:
        connections = {}
        for topic, time_ns, raw in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(
                    topic, bag_writer.TOPIC_TYPES[topic], typestore=typestore()
                )
            writer.write(connections[topic], time_ns, raw)


def test_bag_without_thermal_is_refused_with_what_it_holds(tmp_path: Path) -> None:
    write_bag(make_samples(3), tmp_path / "full")
    kept = [(m.topic, m.timestamp_ns, m.raw) for m in read_messages(tmp_path / "full")]
    write_raw_bag(tmp_path / "no_thermal", [k for k in kept if k[0] != THERMAL_TOPIC])
    with pytest.raises(BagError) as info:
        check_required(tmp_path / "no_thermal", bag_player.DEFAULT_REQUIRED)
    text = str(info.value)
    assert "'thermal/image'" in text and "no_thermal" in text
    assert "rgb/image (3 x sensor_msgs/msg/Image)" in text  # what was read

    with pytest.raises(BagError, match="bag not found"):
        check_required(tmp_path / "missing", ())


def corrupt_bag(tmp_path: Path, frames: int = 4, bad_index: int = 1) -> Path:
    """A bag whose thermal message ``bad_index`` is cut in half."""
    write_bag(make_samples(frames), tmp_path / "good", rate_hz=20)
    messages = []
    for m in read_messages(tmp_path / "good"):
        raw = (
            m.raw[: len(m.raw) // 2] if (m.topic, m.index) == (THERMAL_TOPIC, bad_index) else m.raw
        )
        messages.append((m.topic, m.timestamp_ns, raw))
    write_raw_bag(tmp_path / "corrupt", messages)
    return tmp_path / "corrupt"


def test_corrupted_message_is_named_and_skipped(tmp_path: Path, ros_context) -> None:
    import rclpy

    bag = corrupt_bag(tmp_path)
    node = rclpy.create_node("corrupt_player", context=ros_context)
    logged: list[str] = []
    try:
        summary = bag_player.play(node, bag, rate=20.0, log=logged.append)
    finally:
        node.destroy_node()
    assert [(c.topic, c.index) for c in summary.corrupted] == [(THERMAL_TOPIC, 1)]
    assert summary.published == {RGB_TOPIC: 4, THERMAL_TOPIC: 3, LABEL_TOPIC: 4, NAME_TOPIC: 4}
    assert any("thermal/image message #1" in line for line in logged)
    assert "1 corrupted message(s) skipped" in summary.text()


def run_player(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fusionsam_ros.bags.player", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_player_cli_reports_corruption_and_missing_bag(tmp_path: Path, ros_env) -> None:
    bag = corrupt_bag(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "fusionsam_ros.bags.player", str(bag), "--rate", "10"],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "thermal/image message #1" in done.stdout
    assert "thermal/image: 3" in done.stdout and "rgb/image: 4" in done.stdout

    done = subprocess.run(
        [sys.executable, "-m", "fusionsam_ros.bags.player", str(tmp_path / "nope")],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "bag not found" in done.stderr


# --- playback timing -------------------------------------------------------------------------
def test_player_keeps_recorded_timing_and_remaps(tmp_path: Path, ros_env, ros_client) -> None:
    write_bag(make_samples(8), tmp_path / "timed", rate_hz=10, storage="mcap")
    from sensor_msgs.msg import Image

    arrivals: list[tuple[float, int]] = []  # (arrival, stamp) recorded in the callback
    qos = qos_profile(RELIABLE, 50)
    ros_client.node.create_subscription(
        Image, "cam/rgb", lambda m: arrivals.append((time.monotonic(), stamp(m))), qos
    )
    player = run_player(
        [
            str(tmp_path / "timed"),
            "--remap",
            "rgb/image:=cam/rgb",
            "--topics",
            "rgb/image",
            "--wait-for-subscribers",
            "20",
        ],
        ros_env,
    )
    output = player.communicate(timeout=90)[0]
    assert player.returncode == 0, output
    wait_until(lambda: len(arrivals) >= 8, 5)
    stamps = [s for _, s in arrivals]
    assert [(s - stamps[0]) // 100_000_000 for s in stamps] == list(range(8))
    times = np.array([t for t, _ in arrivals])
    gaps = np.diff(times)
    print(f"inter-arrival gaps (ms): {np.round(gaps * 1e3).tolist()}")
    # recorded 100 ms apart: the player must not burst them out, nor stall
    assert 0.05 < float(np.median(gaps)) < 0.2
    assert times[-1] - times[0] > 0.4  # recorded span 0.7 s
    assert "rgb/image: 8" in output
