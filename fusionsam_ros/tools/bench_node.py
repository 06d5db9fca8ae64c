"""Benchmark of fusionsam_node (prints; not a test).

Default mode: the node's own work per 480x640 pair (header checks + pairing,
Image->numpy conversion, rendering + publishing four outputs to a live subscriber)
against the model's time, as a ratio (goal: < 10 %).
``--load SECONDS``: the node in its own process, 30 pairs/s published for SECONDS;
prints the node's resident memory over time, latency p50/p99 and dropped pairs.

    .venv/bin/python -m fusionsam_ros.tools.bench_node [--pairs 20] [--load 60] [--checkpoint PATH]
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..paths import fastdds_profile_file

H, W = 480, 640


def _setup_env() -> None:
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(fastdds_profile_file()))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))


def _checkpoint(path: str | None, workdir: Path) -> tuple[Path, str]:
    from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT

    if path:
        return Path(path), "given"
    if BUNDLED_CHECKPOINT.is_file():
        return BUNDLED_CHECKPOINT, "bundled"
    import torch

    from fusionsam_model.data.classes import MFNET
    from fusionsam_model.modeling.config import build_config
    from fusionsam_model.modeling.model import FusionSAM
    from fusionsam_model.runtime.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = FusionSAM(build_config("tiny", num_classes=MFNET.num_classes))
    return save_checkpoint(
        workdir / "tiny_untrained.pt", model, MFNET
    ), "tiny preset, untrained (bundled model not found)"


def _image(pixels: np.ndarray, encoding: str, stamp_ns: int):
    from ..node.image_conversion import array_to_image
    from ..ros_time import set_stamp

    msg = set_stamp(array_to_image(pixels, encoding), stamp_ns)
    msg.header.frame_id = "camera"
    return msg


def _pair(rng: np.random.Generator, stamp_ns: int):
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    thermal = rng.integers(0, 256, (H, W), dtype=np.uint8)
    return _image(rgb, "rgb8", stamp_ns), _image(thermal, "mono8", stamp_ns)


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def overhead(checkpoint: str | None, pairs: int) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from ..node import image_conversion as conv
    from ..node.node import FusionSAMNode
    from ..node.sync import ApproximateTimePairer
    from ..topics import OUTPUT_TOPICS

    with tempfile.TemporaryDirectory() as tmp:
        path, origin = _checkpoint(checkpoint, Path(tmp))
        rclpy.init(args=["--ros-args", "-p", f"checkpoint:={path}"])
        node = FusionSAMNode()
        sink = rclpy.create_node("bench_sink")
        received = [0]
        for topic in OUTPUT_TOPICS.values():
            sink.create_subscription(
                Image, topic, lambda m: received.__setitem__(0, received[0] + 1), 10
            )
        executor = SingleThreadedExecutor()
        executor.add_node(sink)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        time.sleep(1.0)  # discovery of the sink
        rng = np.random.default_rng(0)
        pairer = ApproximateTimePairer(10, 0.05, lambda r, t: None)
        rows: dict[str, list[float]] = {
            "sync": [],
            "convert": [],
            "render_publish": [],
            "model": [],
        }
        for k in range(pairs + 2):  # the first two warm up
            rgb_msg, th_msg = _pair(rng, time.time_ns())
            t0 = time.perf_counter()
            conv.check_image(rgb_msg, conv.RGB_ENCODINGS, "RGB")
            pairer.add_rgb(rgb_msg)
            conv.check_image(th_msg, conv.THERMAL_ENCODINGS, "thermal")
            pairer.add_thermal(th_msg)
            sync_ms = (time.perf_counter() - t0) * 1e3
            node.process_pair(rgb_msg, th_msg)
            if k >= 2:
                rows["sync"].append(sync_ms)
                for key, value in node.last_timings_ms.items():
                    rows[key].append(value)
        time.sleep(0.5)
        print(
            f"fusionsam_node overhead per {W}x{H} pair ({pairs} pairs, checkpoint: {path.name}, {origin})"
        )
        print(
            f"  backend {node.segmenter.backend_name}, device cpu, model input S={node.segmenter.input_size}"
        )
        print(f"  {'stage':<16}{'p50 ms':>10}{'mean ms':>10}")
        for key, values in rows.items():
            print(f"  {key:<16}{_ms(values, 50):>10.2f}{np.mean(values):>10.2f}")
        node_ms = (
            np.array(rows["sync"]) + np.array(rows["convert"]) + np.array(rows["render_publish"])
        )
        model_ms = np.array(rows["model"])
        ratio = float(np.median(node_ms / model_ms))
        print(f"  node total      {np.median(node_ms):>10.2f}{node_ms.mean():>10.2f}")
        print(
            f"  node / model = {100 * ratio:.1f} % (goal < 10 %)   outputs received by the sink: {received[0]}"
        )
        node.stop_worker()
        executor.shutdown()
        node.destroy_node()
        sink.destroy_node()
        rclpy.try_shutdown()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(checkpoint: str | None, seconds: float, rate_hz: float = 30.0) -> None:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from ..node.diagnostics import diagnostics_values
    from ..node.node import DIAGNOSTIC_NAME
    from ..qos import SENSOR_DATA, qos_profile
    from ..ros_time import set_stamp, stamp_ns
    from ..topics import RGB_TOPIC, SEMANTIC_TOPIC, THERMAL_TOPIC

    with tempfile.TemporaryDirectory() as tmp:
        path, origin = _checkpoint(checkpoint, Path(tmp))
        log = open(Path(tmp) / "node.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fusionsam_ros.node.node",
                "--ros-args",
                "-p",
                f"checkpoint:={path}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        rclpy.init()
        client = rclpy.create_node("bench_load")
        latencies: list[float] = []
        diagnostics: list[DiagnosticArray] = []

        def on_mask(msg: Image) -> None:
            latencies.append((time.time_ns() - stamp_ns(msg)) / 1e6)

        client.create_subscription(Image, SEMANTIC_TOPIC, on_mask, 10)
        client.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        rgb_pub = client.create_publisher(Image, RGB_TOPIC, qos_profile(SENSOR_DATA, 5))
        th_pub = client.create_publisher(Image, THERMAL_TOPIC, qos_profile(SENSOR_DATA, 5))
        executor = SingleThreadedExecutor()
        executor.add_node(client)
        threading.Thread(target=executor.spin, daemon=True).start()
        deadline = time.monotonic() + 120
        while rgb_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"node exited: {(Path(tmp) / 'node.log').read_text()}")
            time.sleep(0.2)
        time.sleep(1.0)
        rng = np.random.default_rng(0)
        frames = [_pair(rng, 0) for _ in range(8)]
        period = 1.0 / rate_hz
        start = time.monotonic()
        sent = 0
        memory: list[tuple[float, float]] = [(0.0, _rss_mb(proc.pid))]
        while (elapsed := time.monotonic() - start) < seconds:
            rgb_msg, th_msg = frames[sent % len(frames)]
            now_ns = time.time_ns()
            for m in (rgb_msg, th_msg):
                set_stamp(m, now_ns)
            rgb_pub.publish(rgb_msg)
            th_pub.publish(th_msg)
            sent += 1
            if elapsed >= memory[-1][0] + 5.0:
                memory.append((elapsed, _rss_mb(proc.pid)))
            time.sleep(max(0.0, start + sent * period - time.monotonic()))
        memory.append((time.monotonic() - start, _rss_mb(proc.pid)))
        time.sleep(2.5)  # last outputs and a diagnostics message
        values = diagnostics_values(diagnostics[-1], DIAGNOSTIC_NAME) if diagnostics else {}
        proc.send_signal(2)
        code = proc.wait(30)
        print(
            f"load run: {sent} pairs sent at {rate_hz:.0f} pairs/s for {seconds:.0f} s, {W}x{H} rgb8 + mono8"
        )
        print(f"  checkpoint {path.name} ({origin})")
        print("  node resident memory (MB) over time:")
        print("   " + "  ".join(f"{t:5.0f}s {mb:6.1f}" for t, mb in memory))
        steady = [mb for t, mb in memory if t >= 10.0]
        if steady:
            print(f"  growth after the first 10 s: {steady[-1] - steady[0]:+.1f} MB")
        if latencies:
            print(
                f"  masks received {len(latencies)}; stamp->receive latency p50 {_ms(latencies, 50):.0f} ms, "
                f"p99 {_ms(latencies, 99):.0f} ms"
            )
        keys = (
            "pairs_received",
            "published",
            "dropped_pairs",
            "sync_misses",
            "errors_total",
            "latency_p50_ms",
            "latency_p99_ms",
            "model_p50_ms",
            "node_overhead_p50_ms",
        )
        print("  node diagnostics: " + ", ".join(f"{k}={values.get(k)}" for k in keys))
        print(f"  node exit code after SIGINT: {code}")
        executor.shutdown()
        client.destroy_node()
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=20, help="pairs timed in the overhead mode")
    parser.add_argument(
        "--load", type=float, default=0.0, metavar="SECONDS", help="load run length"
    )
    parser.add_argument("--rate", type=float, default=30.0, help="pairs/s in the load run")
    parser.add_argument("--checkpoint", default=None, help="default: the bundled model")
    args = parser.parse_args(argv)
    _setup_env()
    if args.load > 0:
        load(args.checkpoint, args.load, args.rate)
    else:
        overhead(args.checkpoint, args.pairs)


if __name__ == "__main__":
    main()
