"""fusionsam_node over real DDS: the node in its own process, this process publishes
camera pairs and reads the outputs and /diagnostics (one node per pairing/conversion path:
every test runs on message_filters + cv_bridge, where importable, and on the project's
own pairer and converter, forced with FUSIONSAM_ROS_FALLBACK=1)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import make_image, start_fusionsam_node, wait_until

from fusionsam_model.data.classes import MFNET
from fusionsam_ros.node.diagnostics import diagnostics_values
from fusionsam_ros.node.image_conversion import RGB_ENCODINGS, THERMAL_ENCODINGS, image_to_array
from fusionsam_ros.node.node import DIAGNOSTIC_NAME, OUTPUT_TOPICS

SLOP_S = 0.02
QUEUE = 5
OUT_TIMEOUT_S = 20.0
RNG = np.random.default_rng(1)
_clock = itertools.count()


def next_stamp_ns() -> int:
    """Fresh, increasing stamps near wall time (latency is measured from them)."""
    return time.time_ns() + next(_clock) * 1000


def ros_native_importable() -> bool:
    try:
        import cv_bridge  # noqa: F401
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


# path -> (sync_impl, conversion_impl) the node must report
PATHS = {
    "ros_native": ("message_filters", "cv_bridge"),
    "fallback": ("fusionsam_ros.node.sync", "fusionsam_ros.node.image_conversion"),
}


@pytest.fixture(scope="module", params=list(PATHS))
def node(request, ros_env, tmp_path_factory, tiny_checkpoint):
    if request.param == "ros_native" and not ros_native_importable():
        pytest.skip("message_filters / cv_bridge not importable (../shared/ros2-wheels absent)")
    env = dict(ros_env, FUSIONSAM_ROS_FALLBACK="1" if request.param == "fallback" else "0")
    proc = start_fusionsam_node(
        env,
        tmp_path_factory.mktemp("node"),
        checkpoint=tiny_checkpoint,
        params={"sync_slop_s": SLOP_S, "sync_queue_size": QUEUE, "overlay_alpha": 0.5},
    )
    assert proc.returncode is None, proc.output()
    proc.path = request.param
    yield proc
    if proc.returncode is None:
        proc.stop()


@pytest.fixture(scope="module")
def client(ros_client, node):
    ros_client.publisher("rgb/image")
    ros_client.publisher("thermal/image")
    for topic in OUTPUT_TOPICS.values():
        ros_client.subscribe(topic)
    ros_client.subscribe("/diagnostics", DiagnosticArray)
    assert ros_client.wait_for_peers(), node.output()
    return ros_client


def rgb_pixels(h: int, w: int, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels in ``encoding``, the RGB image the node should see)."""
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.full((h, w, 1), 255, np.uint8)
    src = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2),
        "mono8": rgb[..., 0],
    }[encoding]
    if encoding == "mono8":
        rgb = np.repeat(src[..., None], 3, axis=2)
    return src, rgb


def thermal_pixels(h: int, w: int, encoding: str) -> np.ndarray:
    if encoding == "mono8":
        return RNG.integers(0, 256, (h, w), dtype=np.uint8)
    if encoding in ("mono16", "16UC1"):
        return RNG.integers(20000, 40000, (h, w), dtype=np.uint16)
    t = RNG.normal(300.0, 10.0, (h, w)).astype(np.float32)
    t[:5, :5] = np.nan  # dead pixels
    return t


def outputs_for(client, stamp_ns: int) -> dict:
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    found = {}
    for topic in OUTPUT_TOPICS.values():
        for m in client.received(topic):
            if m.header.stamp.sec == sec and m.header.stamp.nanosec == nsec:
                found[topic] = m
    return found


def send_pair(client, rgb_msg, thermal_msg) -> None:
    client.publisher("rgb/image").publish(rgb_msg)
    client.publisher("thermal/image").publish(thermal_msg)


def send_and_wait(client, rgb_msg, thermal_msg, node) -> dict:
    stamp = rgb_msg.header.stamp.sec * 1_000_000_000 + rgb_msg.header.stamp.nanosec
    send_pair(client, rgb_msg, thermal_msg)
    ok = wait_until(lambda: len(outputs_for(client, stamp)) == len(OUTPUT_TOPICS), OUT_TIMEOUT_S)
    assert ok, f"no outputs for stamp {stamp}:\n{node.output()[-3000:]}"
    return outputs_for(client, stamp)


def latest_diagnostics(client, after_s: float = 0.0) -> dict[str, str]:
    """Values of the first /diagnostics message published ``after_s`` from now or later."""
    start = len(client.received("/diagnostics"))
    deadline_ok = wait_until(lambda: len(client.received("/diagnostics")) > start, 5.0)
    assert deadline_ok, "no /diagnostics message"
    if after_s:
        time.sleep(after_s)
    values = diagnostics_values(client.received("/diagnostics")[-1], DIAGNOSTIC_NAME)
    assert values is not None
    return values


SIZES = [(480, 640), (600, 800)]
CASES = [
    (size, rgb_enc, th_enc)
    for size in SIZES
    for rgb_enc, th_enc in zip(RGB_ENCODINGS, itertools.cycle(THERMAL_ENCODINGS))
]


@pytest.mark.parametrize(("size", "rgb_encoding", "thermal_encoding"), CASES)
def test_pairs_in_every_encoding_come_back_as_masks(
    client, node, size, rgb_encoding, thermal_encoding
):
    h, w = size
    src, rgb = rgb_pixels(h, w, rgb_encoding)
    stamp = next_stamp_ns()
    frame = f"cam_{rgb_encoding}"
    rgb_msg = make_image(src, rgb_encoding, stamp, frame, row_padding=4 if h == 600 else 0)
    th_msg = make_image(
        thermal_pixels(h, w, thermal_encoding),
        thermal_encoding,
        stamp + 5_000_000,  # 5 ms later: within the slop
        "thermal_frame",
        bigendian=thermal_encoding == "mono16",
    )
    out = send_and_wait(client, rgb_msg, th_msg, node)
    for topic, msg in out.items():
        assert (msg.height, msg.width) == (h, w), topic
        assert msg.header.frame_id == frame, topic
        assert msg.header.stamp == rgb_msg.header.stamp, topic
    semantic = out[OUTPUT_TOPICS["semantic"]]
    assert semantic.encoding == "mono8"
    labels = image_to_array(semantic)
    assert labels.max() < MFNET.num_classes
    color = out[OUTPUT_TOPICS["color"]]
    assert color.encoding == "rgb8"
    np.testing.assert_array_equal(image_to_array(color), MFNET.palette_array()[labels])
    overlay = image_to_array(out[OUTPUT_TOPICS["overlay"]]).astype(int)
    background = labels == 0
    np.testing.assert_array_equal(overlay[background], rgb[background])
    expect = 0.5 * rgb[~background] + 0.5 * MFNET.palette_array()[labels][~background]
    assert np.abs(overlay[~background] - expect).max() <= 1
    fused = out[OUTPUT_TOPICS["fused"]]
    assert fused.encoding == "rgb8" and image_to_array(fused).shape == (h, w, 3)


def test_thermal_of_another_size_is_resized_to_the_rgb_frame(client, node):
    src, _ = rgb_pixels(480, 640, "rgb8")
    stamp = next_stamp_ns()
    out = send_and_wait(
        client,
        make_image(src, "rgb8", stamp, "cam"),
        make_image(thermal_pixels(240, 320, "16UC1"), "16UC1", stamp, "th"),
        node,
    )
    assert all((m.height, m.width) == (480, 640) for m in out.values())
    assert node.output().count("resized to the RGB frame") == 1


def test_offset_streams_give_no_output_and_count_sync_misses(client, node):
    before = int(latest_diagnostics(client)["sync_misses"])
    client.clear()
    n = 10
    base = next_stamp_ns()
    for k in range(n):  # thermal 50 ms after RGB, pairs 100 ms apart: nothing within 20 ms
        src, _ = rgb_pixels(48, 64, "rgb8")
        t = base + k * 100_000_000
        send_pair(
            client,
            make_image(src, "rgb8", t),
            make_image(thermal_pixels(48, 64, "mono8"), "mono8", t + 50_000_000),
        )
        time.sleep(0.01)
    expected = 2 * (n - QUEUE)  # all but the queued ones are discarded unpaired
    ok = wait_until(
        lambda: int(latest_diagnostics(client)["sync_misses"]) >= before + expected, 10.0
    )
    assert ok, latest_diagnostics(client)
    assert all(not client.received(t) for t in OUTPUT_TOPICS.values())
    # the node still serves a good pair afterwards
    src, _ = rgb_pixels(48, 64, "rgb8")
    stamp = next_stamp_ns() + n * 100_000_000
    send_and_wait(
        client,
        make_image(src, "rgb8", stamp),
        make_image(thermal_pixels(48, 64, "mono8"), "mono8", stamp),
        node,
    )


def _bad_inputs(stamp: int) -> list[tuple[str, str, object]]:
    yuv = make_image(rgb_pixels(48, 64, "rgb8")[0], "rgb8", stamp)
    yuv.encoding = "yuv422"
    empty = make_image(rgb_pixels(48, 64, "rgb8")[0], "rgb8", stamp)
    empty.data, empty.height, empty.width = b"", 0, 0
    short = make_image(rgb_pixels(48, 64, "rgb8")[0], "rgb8", stamp)
    short.data = bytes(len(short.data) - 10)
    zero = make_image(rgb_pixels(48, 64, "rgb8")[0], "rgb8", 0)
    th_as_rgb = make_image(rgb_pixels(48, 64, "rgb8")[0], "rgb8", stamp)
    return [
        ("rgb", "unsupported_encoding", yuv),
        ("rgb", "empty_image", empty),
        ("rgb", "bad_data_length", short),
        ("rgb", "zero_stamp", zero),
        ("thermal", "unsupported_encoding", th_as_rgb),
    ]


def test_bad_inputs_are_counted_and_the_next_good_pair_is_served(client, node):
    stamp = next_stamp_ns()
    before = latest_diagnostics(client)
    for stream, _, msg in _bad_inputs(stamp):
        client.publisher(f"{stream}/image").publish(msg)
        time.sleep(0.02)
    src, _ = rgb_pixels(480, 640, "bgra8")
    good = next_stamp_ns() + 1_000_000_000
    send_and_wait(
        client,
        make_image(src, "bgra8", good, "cam"),
        make_image(thermal_pixels(480, 640, "32FC1"), "32FC1", good, "th"),
        node,
    )
    after = latest_diagnostics(client, after_s=1.1)
    for kind, n in (
        ("unsupported_encoding", 2),
        ("empty_image", 1),
        ("bad_data_length", 1),
        ("zero_stamp", 1),
    ):
        gained = int(after.get(f"errors.{kind}", 0)) - int(before.get(f"errors.{kind}", 0))
        assert gained == n, (kind, after)
    log = node.output()
    assert "skipped input [zero_stamp]: RGB image has a zero stamp" in log
    assert "skipped input [bad_data_length]" in log and "expected step*height" in log
    assert node.returncode is None


def test_busy_model_drops_stale_pairs_and_counts_them(client, node):
    before = latest_diagnostics(client)
    n = 12
    base = next_stamp_ns() + 2_000_000_000
    src, _ = rgb_pixels(480, 640, "rgb8")
    th = thermal_pixels(480, 640, "mono8")
    for k in range(n):
        t = base + k * 1_000_000
        send_pair(client, make_image(src, "rgb8", t), make_image(th, "mono8", t))

    def settled() -> bool:  # every pair that arrived was either published or dropped
        now = latest_diagnostics(client)
        received = int(now["pairs_received"]) - int(before["pairs_received"])
        done = sum(int(now[k]) - int(before[k]) for k in ("published", "dropped_pairs"))
        return received >= 2 and done == received

    assert wait_until(settled, 15.0), latest_diagnostics(client)
    after = latest_diagnostics(client, after_s=0.5)
    received = int(after["pairs_received"]) - int(before["pairs_received"])
    dropped = int(after["dropped_pairs"]) - int(before["dropped_pairs"])
    published = int(after["published"]) - int(before["published"])
    assert received >= 2 and dropped >= 1, after
    assert published + dropped == received
    assert float(after["latency_p99_ms"]) >= float(after["latency_p50_ms"]) > 0


def test_diagnostics_name_backend_model_and_fallbacks(client, node, tiny_checkpoint):
    values = latest_diagnostics(client)
    assert values["backend"] == "torch"  # backend "auto": nothing exported in the test cache
    assert values["threads"] == "1 (OMP_NUM_THREADS)"  # the test env's value is kept
    assert values["model"] == str(tiny_checkpoint)
    assert values["class_table"] == "mfnet"
    assert (values["sync_impl"], values["conversion_impl"]) == PATHS[node.path]
    # the effective values that change results, as in the ready line
    assert "thermal_range=checkpoint" in values["parameters"]
    assert f"sync_slop_s={SLOP_S}" in values["parameters"]
    assert values["parameters"] in node.output()
    for key in (
        "rate_hz",
        "latency_p50_ms",
        "latency_p99_ms",
        "dropped_pairs",
        "sync_misses",
        "errors_total",
    ):
        assert key in values


def test_sigint_stops_the_node_cleanly(node):
    t0 = time.monotonic()
    assert node.stop() == 0, node.output()
    seconds = time.monotonic() - t0
    print(f"exit code 0 {seconds:.2f} s after SIGINT")
    assert seconds < 4.0  # goal 1 s (see test_ros_shutdown.EXIT_WITHIN_S); launch escalates at 5 s
    assert "stopped" in node.output()
    assert "Traceback" not in node.output()
