"""`make demo`: replay a synthetic drive through the node and score it, in one command.

Steps (1 and 2 are reused when ``runs/demo`` already holds them for the same arguments):
1. generate a small synthetic MFNet-layout dataset (fixed seed) into ``data/`` and
2. write its test split as a rosbag2 ``drive_bag/`` (mcap; 10 Hz cameras, thermal 8 ms
   late with 2 ms jitter, so the node's approximate-time pairing is exercised);
3. time the model on a few frames and pick a playback rate the CPU can follow, so the
   node does not have to drop frames (the report still counts any that it does);
4. start ``fusionsam_node`` with the bundled model, ``fusionsam-evaluate`` and
   ``fusionsam-play`` as separate processes on their own ROS domain, localhost only,
   with the project's Fast DDS profile (a 16 MB shared-memory segment for images);
5. print frames, rate, latency and mIoU overall / day / night with the protocol, and
   leave ``report.json``, ``report.md``, plots and an overlay strip under ``runs/demo``;
6. real camera: RoadScene pairs (``../shared/data/roadscene``; skipped with a message when
   absent) as a bag in compressed transport (RGB JPEG, thermal PNG) through the node with
   ``rgb_transport``/``thermal_transport`` = compressed: rate, no-reference fusion metrics
   of the fused images and an overlay strip under ``runs/demo/real``. No mIoU: the pairs
   have no labels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import SOURCE_ROOT
from ..processes import LoggedProcess, ros_environment

SAFETY = 2.5  # playback period / measured inference time: the CPU is shared with 3 processes
ROADSCENE = SOURCE_ROOT.parent / "shared" / "data" / "roadscene"


class DemoError(RuntimeError):
    pass


def log(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def prepare_drive(out: Path, num_test: int, seed: int, camera_hz: float) -> Any:
    """Synthetic dataset + its test-split bag, rebuilt only when the recipe changed or a
    previous run was interrupted (``drive.json`` is written last)."""
    import shutil

    from fusionsam_model.data.datasets import open_dataset
    from fusionsam_model.data.synth import generate

    from ..bags.writer import write_bag

    data, bag, stamp = out / "data", out / "drive_bag", out / "drive.json"
    recipe = {"num_test": num_test, "seed": seed, "camera_hz": camera_hz}
    complete = stamp.is_file() and data.is_dir() and bag.is_dir()
    if complete and json.loads(stamp.read_text()) == recipe:
        log(f"drive: {data} and {bag} (exist)")
        return open_dataset(data, "test")
    stamp.unlink(missing_ok=True)
    for stale in (data, bag):
        shutil.rmtree(stale, ignore_errors=True)
    # the generator puts a quarter of the pairs in the test split
    log(f"drive: generating {4 * num_test} synthetic pairs (seed {seed}) into {data}")
    generate(data, num=4 * num_test, seed=seed, layout="mfnet", workers=min(2, os.cpu_count() or 1))
    dataset = open_dataset(data, "test")
    summary = write_bag(
        dataset,
        bag,
        storage="mcap",
        rate_hz=camera_hz,
        thermal_offset_ms=8.0,
        jitter_ms=2.0,
        seed=seed,
    )
    log(f"drive: bag {bag} with {summary.frames} frames over {summary.duration_s:.1f} s")
    stamp.write_text(json.dumps(recipe))
    return dataset


def load_segmenter(checkpoint: Path) -> Any:
    """The model as the node runs it (same thread count), for timing and the offline check."""
    import torch

    from fusionsam_model.runtime.segmenter import Segmenter

    torch.set_num_threads(int(node_threads()))
    return Segmenter.from_checkpoint(checkpoint)


def node_threads() -> str:
    return os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))


def measure_inference_s(segmenter: Any, dataset: Any, frames: int = 3) -> float:
    """Median Segmenter.predict time on the first test frames (the first one warms up)."""
    import statistics

    times = []
    for i in range(min(frames + 1, len(dataset))):
        sample = dataset[i]
        t0 = time.perf_counter()
        segmenter.predict(sample.rgb, sample.thermal)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:] or times)


class _Frames:
    """The dataset restricted to the frames the stream scored, in dataset order."""

    def __init__(self, dataset: Any, names: set[str]) -> None:
        self.dataset = dataset
        self.indices = [i for i, n in enumerate(dataset.names) if n in names]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def offline_check(segmenter: Any, dataset: Any, report: dict[str, Any]) -> str:
    """The offline evaluation (training/evaluate.py's) on the frames the stream scored: the two mIoUs must agree."""
    from fusionsam_model.evaluation.offline import evaluate

    names = {m["name"] for m in report["matched"] if m["name"]}
    if not names:
        return "offline check: skipped (no named frame was scored)"
    offline = evaluate(segmenter, _Frames(dataset, names))
    streamed, reference = report["overall"]["miou"], offline["overall"]["miou"]
    verdict = (
        "identical" if streamed == reference else f"differs by {abs(streamed - reference):.2e}"
    )
    return (
        f"offline check (training/evaluate.py, same {len(names)} frames): "
        f"mIoU {100 * reference:.2f} vs streamed {100 * streamed:.2f}: {verdict}"
    )


def launch_tools() -> str | None:
    """The ``ros2`` command when launch_ros and the package's ament registration are there."""
    import importlib.util
    import shutil

    ros2 = shutil.which(
        "ros2", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    registered = Path(sys.prefix, "share/ament_index/resource_index/packages/fusionsam_ros")
    if ros2 and importlib.util.find_spec("launch_ros") and registered.is_file():
        return ros2
    return None


def run_launch(
    out: Path,
    bag: Path,
    checkpoint: Path,
    frames: int,
    rate: float,
    overlays: int,
    env: dict[str, str],
    logs: Path,
    node_params: tuple[str, ...],
    evaluator_args: tuple[str, ...],
) -> dict[str, Any]:
    """Node + evaluator + player as ``ros2 launch fusionsam_ros demo.launch.py``."""
    import shlex

    env = dict(env)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(
        p for p in (sys.prefix, env.get("AMENT_PREFIX_PATH", "")) if p
    )
    cmd = [launch_tools(), "launch", "fusionsam_ros", "demo.launch.py", f"bag:={bag}"]
    cmd += [f"out:={out}", f"count:={frames}", f"rate:={rate:.6g}", f"checkpoint:={checkpoint}"]
    cmd += [f"overlays:={overlays}"]
    # ros2 launch refuses an empty `name:=`: optional arguments only when given
    cmd += [f"node_params:={shlex.join(node_params)}"] if node_params else []
    cmd += [f"evaluator_args:={shlex.join(evaluator_args)}"] if evaluator_args else []
    launch = LoggedProcess(cmd, env, logs / "launch.log", name="launch")
    log(
        f"ros2 launch fusionsam_ros demo.launch.py on ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} "
        f"(log {launch.log_path})"
    )
    try:
        code = launch.wait(3600)
    finally:
        launch.stop()
    report_path = out / "report.json"
    if code != 0 or not report_path.is_file():
        raise DemoError(f"ros2 launch demo.launch.py: exit {code}, no report:\n{launch.tail(30)}")
    return json.loads(report_path.read_text())


def run_pipeline(
    out: Path,
    bag: Path,
    checkpoint: Path,
    frames: int,
    rate: float,
    overlays: int,
    domain_id: int,
    node_params: tuple[str, ...] = (),
    evaluator_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    env = ros_environment(domain_id, node_threads())
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if launch_tools():
        return run_launch(
            out, bag, checkpoint, frames, rate, overlays, env, logs, node_params, evaluator_args
        )
    py = sys.executable
    processes: list[LoggedProcess] = []
    try:
        node = LoggedProcess(
            # reliable inputs, as the bag offers them: transport loses no frame, so every
            # drop the report counts is the node's own (it keeps only the newest pair)
            [
                py,
                "-m",
                "fusionsam_ros.node.node",
                "--ros-args",
                "-p",
                f"checkpoint:={checkpoint}",
                "-p",
                "qos:=reliable",
                *(arg for param in node_params for arg in ("-p", param)),
            ],
            env,
            logs / "node.log",
            name="node",
        )
        processes.append(node)
        log(f"node: starting on ROS_DOMAIN_ID={domain_id} (log {node.log_path})")
        if not node.wait_for_output("ready:", 300):
            raise DemoError(f"the node did not become ready; its log ends with:\n{node.tail()}")
        evaluator = LoggedProcess(
            [
                py,
                "-m",
                "fusionsam_ros.evaluation.stream_evaluator",
                "--out",
                str(out),
                "--count",
                str(frames),
                "--timeout",
                "10",
                "--overlays",
                str(overlays),
                *evaluator_args,
            ],
            env,
            logs / "evaluator.log",
            name="evaluator",
        )
        processes.append(evaluator)
        from ..evaluation.stream_evaluator import READY_LINE

        # the player starts once the node's masks reach the evaluator (DDS match), or the
        # first masks of the drive would be published to nobody
        if not evaluator.wait_for_output(READY_LINE, 120):
            raise DemoError(
                f"the evaluator never matched the node's mask topic:\n{evaluator.tail()}"
            )
        log(f"player: replaying {bag} at {rate:.3g}x recorded speed")
        player = LoggedProcess(
            [
                py,
                "-m",
                "fusionsam_ros.bags.player",
                str(bag),
                "--rate",
                f"{rate:.6g}",
                "--wait-for-subscribers",
                "60",
            ],
            env,
            logs / "player.log",
            name="player",
        )
        processes.append(player)
        player_rc = player.wait(3600)
        if player_rc != 0:
            raise DemoError(f"the player failed (exit {player_rc}):\n{player.tail()}")
        log("player: done; waiting for the last masks")
        if evaluator.wait(120) is None:
            raise DemoError(f"the evaluator did not finish:\n{evaluator.tail()}")
        report_path = out / "report.json"
        if not report_path.is_file():
            raise DemoError(f"the evaluator wrote no report:\n{evaluator.tail()}")
        return json.loads(report_path.read_text())
    finally:
        for process in reversed(processes):
            process.stop()


class RoadScenePairs:
    """``limit`` RoadScene pairs (``fusionsam_model.data.unlabelled.UnlabelledPairs``) spread
    evenly over the set (consecutive names are near-duplicates), with ``label`` None so the
    bag gets no label topic."""

    def __init__(self, root: Path, limit: int) -> None:
        from fusionsam_model.data.datasets import DatasetError
        from fusionsam_model.data.unlabelled import UnlabelledPairs

        try:
            self.pairs = UnlabelledPairs(root)
        except DatasetError as exc:
            raise DemoError(str(exc)) from exc
        count = min(limit, len(self.pairs))
        self.indices = sorted({round(i) for i in np.linspace(0, len(self.pairs) - 1, count)})
        self.names = [self.pairs.names[i] for i in self.indices]
        self.total = len(self.pairs)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        import dataclasses

        return dataclasses.replace(self.pairs[self.indices[i]], label=None)


def prepare_real_drive(out: Path, root: Path, frames: int, camera_hz: float) -> RoadScenePairs:
    """RoadScene pairs as an mcap bag in compressed transport (RGB JPEG q90, thermal PNG)."""
    import shutil

    from ..bags.writer import Compression, write_bag

    pairs = RoadScenePairs(root, frames)
    bag, stamp = out / "real_bag", out / "real_drive.json"
    recipe = {"names": pairs.names, "camera_hz": camera_hz, "jpeg_quality": 90}
    if stamp.is_file() and bag.is_dir() and json.loads(stamp.read_text()) == recipe:
        log(f"real drive: {bag} (exists)")
        return pairs
    stamp.unlink(missing_ok=True)
    shutil.rmtree(bag, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    summary = write_bag(
        pairs,
        bag,
        storage="mcap",
        rate_hz=camera_hz,
        thermal_offset_ms=8.0,
        jitter_ms=2.0,
        compression=Compression("jpeg", 90),
    )
    log(
        f"real drive: bag {bag} with {summary.frames} of {pairs.total} RoadScene pairs, "
        "rgb/image/compressed (JPEG q90) + thermal/image/compressed (PNG)"
    )
    stamp.write_text(json.dumps(recipe))
    return pairs


def fusion_metric_lines(pairs: RoadScenePairs, report: dict[str, Any]) -> list[str]:
    """The evaluator's means of the no-reference fusion metrics over every fused frame it
    received, with the same metrics of the visible and infrared inputs for scale."""
    fused = report.get("fusion_metrics")
    if not fused:
        return ["fusion metrics: none in the report (no fused frame arrived)"]
    from fusionsam_model.evaluation.fusion_metrics import compute_no_reference

    inputs: dict[str, list[dict[str, float]]] = {"visible": [], "infrared": []}
    for i in range(len(pairs)):
        sample = pairs[i]
        inputs["visible"].append(compute_no_reference(sample.rgb))
        infrared = np.repeat(sample.thermal[..., None], 3, axis=2)  # scored like an RGB image
        inputs["infrared"].append(compute_no_reference(infrared))
    names = list(fused["means"])
    rows = {"fused": fused["means"]}
    rows.update(
        {k: {m: float(np.mean([v[m] for v in vals])) for m in names} for k, vals in inputs.items()}
    )
    lines = [
        f"fusion metrics (no-reference, mean over {fused['frames']} fused frames; "
        f"the {len(pairs)} inputs' own values for scale):"
    ]
    for key, means in rows.items():
        lines.append(f"  {key:<8} " + ", ".join(f"{m} {means[m]:.3f}" for m in names))
    return lines


def write_fused_strip(folder: Path) -> None:
    """The fused images of the frames in the overlay strip, in the same order."""
    import cv2

    from ..evaluation.report_plots import horizontal_strip, save_rgb_png

    names = [p.name.removeprefix("overlay_") for p in sorted(folder.glob("overlay_*.png"))]
    fused = [folder / f"fused_{n}" for n in names if n != "strip.png"]
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1] for p in fused if p.is_file()]
    if images:
        save_rgb_png(horizontal_strip(images), folder / "fused_strip.png")


def real_camera_demo(
    args: argparse.Namespace, out: Path, checkpoint: Path, segmenter: Any, domain_id: int
) -> int:
    """Step 6: RoadScene in compressed transport; 0 when done or skipped."""
    from ..evaluation.stream_evaluator import summary_text

    root = Path(args.roadscene)
    if args.real_frames <= 0:
        return 0
    if not root.is_dir():
        print(f"\nreal-camera demo skipped: {root} is absent (the shared data folder)")
        return 0
    real = out / "real"
    pairs = prepare_real_drive(real, root, args.real_frames, args.camera_hz)
    infer_s = measure_inference_s(segmenter, pairs)
    rate = min(1.0, 1.0 / (SAFETY * infer_s) / args.camera_hz)
    log(
        f"real drive: model {infer_s * 1e3:.0f} ms per pair; playing {rate * args.camera_hz:.2f} pairs/s"
    )
    for stale in [*real.glob("overlay_*.png"), *real.glob("fused_*.png"), real / "report.json"]:
        stale.unlink(missing_ok=True)
    report = run_pipeline(
        real,
        real / "real_bag",
        checkpoint,
        len(pairs),
        rate,
        args.overlays,
        domain_id,
        node_params=("rgb_transport:=compressed", "thermal_transport:=compressed"),
        evaluator_args=("--no-labels", "--fused", str(len(pairs))),
    )
    print()
    print(
        f"FusionSAM real-camera demo: {checkpoint.name} on {len(pairs)} RoadScene pairs (FLIR "
        f"ADAS, registered visible + infrared), compressed transport from {real / 'real_bag'}"
    )
    print(
        f"playback: {rate * args.camera_hz:.2f} pairs/s; model alone {1.0 / infer_s:.2f} pairs/s"
        " on these frames"
    )
    print(summary_text(report))
    for line in fusion_metric_lines(pairs, report):
        print(line)
    if (real / "overlay_strip.png").is_file():
        print(f"overlays: {real / 'overlay_strip.png'} (real frames; no labels, so no mIoU)")
        write_fused_strip(real)
        print(f"fused images: {real / 'fused_strip.png'} (the same frames)")
    return 0 if report["frames"]["predictions"] > 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionsam-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SOURCE_ROOT / "runs" / "demo"), help="demo folder")
    parser.add_argument("--num-test", type=int, default=60, help="test pairs in the drive")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="default: the bundled tiny model")
    parser.add_argument("--camera-hz", type=float, default=10.0, help="frame rate in the bag")
    parser.add_argument(
        "--rate", type=float, default=None, help="playback speed factor (default: from a timing)"
    )
    parser.add_argument("--overlays", type=int, default=6, help="overlay frames in the strip")
    parser.add_argument(
        "--no-offline-check",
        dest="offline_check",
        action="store_false",
        help="skip re-scoring the streamed frames with training/evaluate.py",
    )
    parser.add_argument("--domain-id", type=int, default=None, help="default: 100 + pid %% 100")
    parser.add_argument(
        "--real-frames",
        type=int,
        default=40,
        help="RoadScene pairs in the real-camera part (0: skip it)",
    )
    parser.add_argument("--roadscene", default=str(ROADSCENE), help="RoadScene folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fusionsam_model.runtime.checkpoint import CheckpointError
    from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT

    from ..evaluation.stream_evaluator import summary_text

    started = time.monotonic()
    out = Path(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(BUNDLED_CHECKPOINT)
    if not checkpoint.is_file():
        print(
            f"demo: model checkpoint not found: {checkpoint}\n"
            "  the bundled model is made by training/train.py (see docs/results.md); "
            "or pass --checkpoint PATH",
            file=sys.stderr,
        )
        return 2
    try:
        dataset = prepare_drive(out, args.num_test, args.seed, args.camera_hz)
        segmenter = load_segmenter(checkpoint)
        infer_s = measure_inference_s(segmenter, dataset)
        rate = args.rate
        if rate is None:
            rate = min(1.0, 1.0 / (SAFETY * infer_s) / args.camera_hz)
        log(
            f"model: {infer_s * 1e3:.0f} ms per pair here; playing {rate * args.camera_hz:.2f} "
            f"pairs/s (rate {rate:.3g}) so the node can keep up"
        )
        for stale in [*out.glob("overlay_*.png"), out / "report.json"]:
            stale.unlink(missing_ok=True)
        domain_id = args.domain_id if args.domain_id is not None else 100 + os.getpid() % 100
        report = run_pipeline(
            out, out / "drive_bag", checkpoint, len(dataset), rate, args.overlays, domain_id
        )
    except CheckpointError as exc:
        print(f"demo: cannot load the model: {exc}", file=sys.stderr)
        return 2
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print()
    print(
        f"FusionSAM demo: {checkpoint.name} on {len(dataset)} synthetic test frames, "
        f"replayed from {out / 'drive_bag'}"
    )
    print(
        f"playback: {rate * args.camera_hz:.2f} pairs/s (bag {args.camera_hz:g} Hz x {rate:.3g}); "
        f"model alone {1.0 / infer_s:.2f} pairs/s"
    )
    print(summary_text(report))
    if args.offline_check and report["frames"]["matched"]:
        print(offline_check(segmenter, dataset, report))
    print(f"report: {out / 'report.md'} (+ report.json, iou.png, latency.png)")
    if (out / "overlay_strip.png").is_file():
        print(f"overlays: {out / 'overlay_strip.png'}")
    try:
        real_rc = real_camera_demo(args, out, checkpoint, segmenter, domain_id)
    except DemoError as exc:
        print(f"demo (real camera): {exc}", file=sys.stderr)
        real_rc = 1
    print(f"total time: {time.monotonic() - started:.0f} s")
    return 0 if report["frames"]["matched"] > 0 and real_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
