"""Streamed box evaluation: folder pairs -> bag -> node -> ``fusionsam-evaluate --boxes``.

The evaluator matches each mask to its sample name by stamp (``label/name``) and scores
it against that name's boxes; with nothing dropped its report must equal the offline box
evaluation (``training/evaluate.py --boxes``: Segmenter.predict + box_metrics) exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from ros_helpers import in_graph, start_fusionsam_node, wait_until

from fusionsam_ros.bags.writer import FolderPairs, write_bag
from fusionsam_ros.evaluation.stream_evaluator import READY_LINE

NAMES = ["00001D", "00002D", "00003N", "00004N"]
BOXES = {  # YOLO lines; 00004N has no file (no objects)
    "00001D": "0 0.5 0.5 0.4 0.6\n2 0.2 0.3 0.3 0.3\n",
    "00002D": "1 0.7 0.6 0.3 0.5\n",
    "00003N": "0 0.3 0.5 0.2 0.5\n0 0.7 0.5 0.2 0.5\n",
}


def start(module: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def make_drive(root: Path) -> Path:
    rng = np.random.default_rng(2)
    for sub in ("vi", "ir", "boxes/a"):
        (root / sub).mkdir(parents=True)
    for name in NAMES:
        cv2.imwrite(str(root / "vi" / f"{name}.png"), rng.integers(0, 256, (48, 64, 3), np.uint8))
        cv2.imwrite(str(root / "ir" / f"{name}.png"), rng.integers(0, 256, (48, 64), np.uint8))
    (root / "boxes" / "classes.txt").write_text("0 person\n1 bicycle\n2 car\n")
    for name, text in BOXES.items():
        (root / "boxes" / "a" / f"{name}.txt").write_text(text)
    write_bag(FolderPairs(str(root), NAMES, "vi", "ir"), root / "bag", rate_hz=2.0)
    return root / "bag"


def test_streamed_box_scores_equal_the_offline_box_evaluation(
    tmp_path: Path, ros_env: dict[str, str], tiny_checkpoint: Path, ros_client
) -> None:
    import torch

    from fusionsam_model.data.box_datasets import BoxDataset
    from fusionsam_model.evaluation.box_metrics import evaluate_boxes, model_variants
    from fusionsam_model.runtime.segmenter import Segmenter

    root = tmp_path / "pairs"
    bag = make_drive(root)
    out = tmp_path / "report"
    node = start_fusionsam_node(
        ros_env, tmp_path / "logs", checkpoint=tiny_checkpoint, params={"qos": "reliable"}
    )
    log = tmp_path / "evaluator.log"
    try:
        assert node.wait_for_output("ready:", 300.0), node.output()
        args = ["--out", str(out), "--count", str(len(NAMES)), "--timeout", "30"]
        evaluator = start(
            "fusionsam_ros.evaluation.stream_evaluator",
            [*args, "--boxes", str(root / "boxes" / "a")],
            ros_env,
            log,
        )
        graph = {
            "/fusionsam/semantic": ("fusionsam_node", "fusionsam_evaluator"),
            "/label/name": ("", "fusionsam_evaluator"),
            "/rgb/image": ("", "fusionsam_node"),
            "/thermal/image": ("", "fusionsam_node"),
        }
        ok = wait_until(lambda: in_graph(ros_client, graph), 300.0, 0.1)
        assert ok, log.read_text() + node.output()
        assert wait_until(lambda: READY_LINE in log.read_text(), 120.0), log.read_text()
        # 2 s between frames (2 Hz at 0.25x): the node drops none even when stalled
        player_args = [str(bag), "--wait-for-subscribers", "60", "--rate", "0.25"]
        player = start("fusionsam_ros.bags.player", player_args, ros_env, tmp_path / "player.log")
        assert player.wait(120) == 0, (tmp_path / "player.log").read_text()
        assert evaluator.wait(120) == 0, log.read_text() + node.output()
    finally:
        node.stop()
    report = json.loads((out / "report.json").read_text())
    boxes = report["boxes"]
    assert boxes["frames"] == {"names": 4, "scored": 4, "dropped": 0, "unnamed_masks": 0}
    assert boxes["frames_without_box_file"] == ["00004N"]
    assert "box F1 all (4 frames)" in (out / "report.md").read_text()

    threads = torch.get_num_threads()
    torch.set_num_threads(int(ros_env["OMP_NUM_THREADS"]))  # as in the node process
    try:
        segmenter = Segmenter.from_checkpoint(tiny_checkpoint)
        dataset = BoxDataset(root, NAMES, ["a"])
        offline = evaluate_boxes(
            dataset, model_variants(segmenter, False, False), segmenter.class_table
        )
    finally:
        torch.set_num_threads(threads)
    for split in ("all", "day", "night"):
        assert boxes[split] == offline["variants"]["model"][split], split
