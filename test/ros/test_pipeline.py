"""The whole chain on a small bag: player -> node -> streaming evaluator -> report.

With playback slow enough that the node drops nothing, the streaming report must equal
the offline evaluation (training/evaluate.py, Segmenter.predict + ConfusionMatrix) of
the same frames with the same checkpoint exactly: the same code scores the same masks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ros_helpers import in_graph, start_fusionsam_node, wait_until

from fusionsam_ros.bags.writer import write_bag
from fusionsam_ros.evaluation.stream_evaluator import READY_LINE

FRAMES = 4  # the generator's test split of 16 pairs: 2 day, 2 night


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset root, bag of its test split at 2 Hz, thermal 8 ms late with jitter)."""
    from fusionsam_model.data.datasets import open_dataset
    from fusionsam_model.data.synth import generate

    root = tmp_path_factory.mktemp("drive")
    generate(root / "data", num=16, seed=11, progress=False)
    dataset = open_dataset(root / "data", "test")
    assert len(dataset) == FRAMES
    write_bag(dataset, root / "bag", rate_hz=2.0, thermal_offset_ms=8, jitter_ms=2, seed=1)
    return root / "data", root / "bag"


def start(module: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def play(bag: Path, env: dict[str, str], log: Path, extra: tuple[str, ...] = ()) -> None:
    player = start(
        "fusionsam_ros.bags.player", [str(bag), "--wait-for-subscribers", "60", *extra], env, log
    )
    assert player.wait(120) == 0, log.read_text()


def test_streaming_report_equals_offline_evaluation(
    tmp_path: Path,
    drive: tuple[Path, Path],
    ros_env: dict[str, str],
    tiny_checkpoint: Path,
    ros_client,
) -> None:
    import torch

    from fusionsam_model.data.datasets import open_dataset
    from fusionsam_model.runtime.segmenter import Segmenter
    from training.evaluate import evaluate

    data, bag = drive
    out = tmp_path / "report"
    # reliable inputs: transport loses nothing, so any drop would be the node's own
    node = start_fusionsam_node(
        ros_env, tmp_path / "logs", checkpoint=tiny_checkpoint, params={"qos": "reliable"}
    )
    try:
        # torch + model loading: seconds on an idle machine, minutes on a loaded one
        assert node.wait_for_output("ready:", 300.0), node.output()
        evaluator = start(
            "fusionsam_ros.evaluation.stream_evaluator",
            ["--out", str(out), "--count", str(FRAMES), "--timeout", "30", "--overlays", "2"],
            ros_env,
            tmp_path / "evaluator.log",
        )
        # real conditions, not sleeps: the node is ready (above), the evaluator's
        # subscriptions and the node's mask publisher are in the graph; the player then
        # waits until its own publishers are matched (--wait-for-subscribers)
        graph = {
            "/fusionsam/semantic": ("fusionsam_node", "fusionsam_evaluator"),
            "/label/image": ("", "fusionsam_evaluator"),
            "/label/name": ("", "fusionsam_evaluator"),
            "/rgb/image": ("", "fusionsam_node"),
            "/thermal/image": ("", "fusionsam_node"),
        }
        assert wait_until(lambda: in_graph(ros_client, graph), 300.0, 0.1), (
            tmp_path / "evaluator.log"
        ).read_text() + node.output()
        # ... and DDS has matched the node's mask publisher with the evaluator (the graph
        # can list both before their endpoints match)
        ready = lambda: READY_LINE in (tmp_path / "evaluator.log").read_text()  # noqa: E731
        assert wait_until(ready, 120.0), (tmp_path / "evaluator.log").read_text()
        # 2 s between frames (recorded at 2 Hz, played at 0.25x): the node must drop no
        # pair even when a loaded machine stalls it for a second (a stale pair waiting
        # in its one-slot mailbox is replaced by the next one, by design)
        play(bag, ros_env, tmp_path / "player.log", ("--rate", "0.25"))
        assert evaluator.wait(120) == 0, (tmp_path / "evaluator.log").read_text() + node.output()
    finally:
        node.stop()
    report = json.loads((out / "report.json").read_text())
    frames = report["frames"]
    assert report["stop_reason"].startswith("count reached"), (
        frames,
        report["dropped_stamps"],
        report["unmatched_prediction_stamps"],
        node.output()[-2000:],
    )
    assert (frames["matched"], frames["dropped"], frames["unmatched_predictions"]) == (FRAMES, 0, 0)

    dataset = open_dataset(data, "test")
    assert sorted(m["name"] for m in report["matched"]) == sorted(dataset.names)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(ros_env["OMP_NUM_THREADS"]))  # as in the node process
    try:
        offline = evaluate(Segmenter.from_checkpoint(tiny_checkpoint), dataset)
    finally:
        torch.set_num_threads(threads)
    assert report["confusion_matrix"] == offline["confusion_matrix"]
    assert report["overall"]["miou"] == offline["overall"]["miou"]
    assert report["overall"]["iou"] == offline["overall"]["iou"]
    for condition in ("day", "night"):
        assert report[condition]["miou"] == offline[condition]["miou"]
        assert report[condition]["pairs"] == offline[condition]["pairs"] == FRAMES // 2
    assert report["latency_ms"]["p50"] > 0
    for name in ("report.md", "iou.png", "latency.png", "overlay_strip.png"):
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.glob("overlay_0*.png"))) == 2
    assert "mIoU" in (out / "report.md").read_text()


def test_without_a_node_every_frame_is_reported_dropped(
    tmp_path: Path, drive: tuple[Path, Path], ros_env: dict[str, str]
) -> None:
    """The bag plays, no mask ever comes: the evaluator stops when the stream goes quiet
    and says what it received and why nothing was scored."""
    _, bag = drive
    out = tmp_path / "report"
    evaluator = start(
        "fusionsam_ros.evaluation.stream_evaluator",
        ["--out", str(out), "--timeout", "2"],
        ros_env,
        tmp_path / "evaluator.log",
    )
    play(bag, ros_env, tmp_path / "player.log", ("--topics", "label/image", "label/name"))
    assert evaluator.wait(60) == 1, (tmp_path / "evaluator.log").read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["frames"]["labels"] == FRAMES, report["frames"]
    assert report["frames"]["labels"] == FRAMES
    assert report["frames"]["matched"] == 0 and report["frames"]["dropped"] == FRAMES
    assert "the bag ended" in report["stop_reason"]
    assert "no mask arrived on fusionsam/semantic" in report["stop_reason"]
    assert report["overall"]["miou"] is None


def test_scorer_pairs_by_exact_stamp_in_any_arrival_order() -> None:
    """Masks may come before their label and names after both; only equal stamps pair."""
    import numpy as np

    from fusionsam_model.data.classes import MFNET
    from fusionsam_model.evaluation.metrics import ConfusionMatrix
    from fusionsam_ros.evaluation.stream_evaluator import StreamScorer

    rng = np.random.default_rng(0)
    label_a, mask_a, label_b, mask_b = rng.integers(0, 9, (4, 6, 8), dtype=np.uint8)
    scorer = StreamScorer(MFNET)
    scorer.add_prediction(200, mask_b, arrival=1.30)  # mask first
    scorer.add_label(100, label_a, arrival=1.00)
    scorer.add_label(200, label_b, arrival=1.10)
    scorer.add_name(200, "00002N")  # name after the pair was scored
    scorer.add_prediction(100, mask_a, arrival=1.25)
    scorer.add_name(100, "00001D")
    scorer.add_label(300, label_a, arrival=1.20)  # never answered: dropped
    scorer.add_prediction(301, mask_a, arrival=1.40)  # stamp 1 ns off: not a pair
    report = scorer.report("test", {})

    expected = ConfusionMatrix(MFNET)
    expected.update(mask_b, label_b)
    expected.update(mask_a, label_a)
    assert report["confusion_matrix"] == expected.matrix.tolist()
    assert report["frames"]["matched"] == 2
    assert (report["frames"]["dropped"], report["frames"]["unmatched_predictions"]) == (1, 1)
    assert (report["day"]["pairs"], report["night"]["pairs"]) == (1, 1)
    assert [m["latency_ms"] for m in report["matched"]] == pytest.approx([200.0, 250.0])
    assert [m["name"] for m in report["matched"]] == ["00002N", "00001D"]


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path, ros_env: dict[str, str], tiny_checkpoint: Path) -> None:
    """`make demo` on a 2-frame drive (the fast tests above cover the same chain)."""
    out = tmp_path / "demo"
    args = ["--out", str(out), "--num-test", "2", "--checkpoint", str(tiny_checkpoint)]
    args += ["--real-frames", "3"]  # the RoadScene part, when ../shared is present
    done = subprocess.run(
        [sys.executable, "-m", "fusionsam_ros.tools.demo", *args],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mIoU:" in done.stdout and "identical" in done.stdout
    assert (out / "overlay_strip.png").is_file() and (out / "report.md").is_file()
    if (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "roadscene").is_dir():
        assert "real-camera demo" in done.stdout and "mIoU: not computed (no labels)" in done.stdout
        assert (out / "real" / "overlay_strip.png").is_file()
    else:
        assert "real-camera demo skipped" in done.stdout


def test_overlay_strip_keeps_day_and_night_of_an_alternating_drive() -> None:
    """Frames alternate D/N (as the generator's test split does): the kept sample must not
    alias to one kind, and the strip is split between the two."""
    import numpy as np

    from fusionsam_ros.evaluation.stream_evaluator import OverlayKeeper

    keeper = OverlayKeeper(capacity=8)
    names = {}
    for i in range(200):
        keeper.add(i, np.full((2, 2, 3), i % 256, dtype=np.uint8))
        names[i] = f"{i:05d}{'N' if i % 2 else 'D'}"
    assert len(keeper.frames) == 8
    picked = keeper.pick(4, names)
    kinds = [names[stamp][-1] for stamp, _ in picked]
    assert sorted(kinds) == ["D", "D", "N", "N"]
    assert [stamp for stamp, _ in picked] == sorted(stamp for stamp, _ in picked)
