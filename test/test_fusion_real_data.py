"""Real imagery: the unlabelled-pair reader, its use in training, and fusionsam-fusion-eval."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from training_helpers import small_trainer

from fusionsam_model.data.datasets import DatasetError
from fusionsam_model.data.unlabelled import UNLABELLED, UnlabelledPairs
from fusionsam_model.evaluation import fusion_benchmark as fb
from fusionsam_model.evaluation import fusion_metrics as fm

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VIFB, ROADSCENE = SHARED / "vifb", SHARED / "roadscene"
REPO = Path(__file__).resolve().parents[1]


def write_pairs(root: Path, n: int, size: tuple[int, int] = (40, 56)) -> Path:
    """n registered pairs (thermal stored as 3 equal channels, like RoadScene) + one orphan."""
    rng = np.random.default_rng(0)
    (root / "visible").mkdir(parents=True)
    (root / "infrared").mkdir()
    for i in range(n):
        rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        th = rng.integers(0, 256, size, dtype=np.uint8)
        cv2.imwrite(str(root / "visible" / f"p{i}.png"), rgb)
        cv2.imwrite(str(root / "infrared" / f"p{i}.png"), cv2.merge([th, th, th]))
    cv2.imwrite(str(root / "visible" / "orphan.png"), rng.integers(0, 256, (*size, 3), np.uint8))
    return root


def test_unlabelled_pairs_reads_same_name_pairs(tmp_path):
    root = write_pairs(tmp_path / "pairs", 3)
    pairs = UnlabelledPairs(root)
    assert pairs.names == ["p0", "p1", "p2"] and pairs.unpaired == ["orphan"]
    s = pairs[1]
    bgr = cv2.imread(str(root / "visible" / "p1.png"))
    assert np.array_equal(s.rgb, bgr[..., ::-1])  # RGB order
    assert s.thermal.ndim == 2 and s.thermal.dtype == np.uint8
    assert np.array_equal(s.thermal, cv2.imread(str(root / "infrared" / "p1.png"))[..., 0])
    assert s.label.shape == s.thermal.shape and np.all(s.label == UNLABELLED)
    cv2.imwrite(str(root / "infrared" / "p2.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="differ in size"):
        pairs[2]
    with pytest.raises(DatasetError, match="missing folder"):
        UnlabelledPairs(root, infrared="thermal")
    (root / "thermal").mkdir()
    with pytest.raises(DatasetError, match="no visible/infrared pairs"):
        UnlabelledPairs(root, infrared="thermal")


@pytest.mark.skipif(not ROADSCENE.is_dir(), reason=f"RoadScene not found at {ROADSCENE}")
def test_roadscene_layout_opens():
    pairs = UnlabelledPairs(ROADSCENE)
    assert len(pairs) == 221 and not pairs.unpaired
    s = pairs[0]
    assert s.rgb.shape[:2] == s.thermal.shape and s.rgb.shape[2] == 3


def test_training_mixes_unlabelled_pairs_into_label_free_losses(tmp_path):
    """Unlabelled pairs join each batch (drawn by step, so resumable); their labels are ignored."""
    from training.losses import IGNORE

    real = write_pairs(tmp_path / "real", 5)
    trainer = small_trainer(tmp_path, {"unlabelled": "{root: " + str(real) + ", batch_size: 3}"})
    batch = next(iter(trainer.train_loader))
    mixed = trainer.data.with_unlabelled(batch, trainer.state)
    assert mixed["rgb"].shape[0] == 2 + 3
    assert torch.equal(mixed["label"][:2], batch["label"])
    assert torch.all(mixed["label"][2:] == IGNORE)
    again = trainer.data.with_unlabelled(batch, trainer.state)  # same step: the same draw
    assert torch.equal(again["rgb"], mixed["rgb"])
    trainer.state.step += 1
    assert not torch.equal(trainer.data.with_unlabelled(batch, trainer.state)["rgb"], mixed["rgb"])
    for stage in ("lstg", "seg"):
        trainer.setup_stage(stage)
        trainer._set_modes(stage)
        stats = (trainer.lstg_step if stage == "lstg" else trainer.seg_step)(batch)
        assert np.isfinite(stats["loss"]), stats


@pytest.mark.skipif(not (VIFB / "metrics.csv").is_file(), reason=f"VIFB not found at {VIFB}")
def test_fusion_eval_ranks_against_published_methods(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(tiny_checkpoint), "--data", str(VIFB), "--limit", "2"]
    assert fb.main([*argv, "--out", str(out), "--no-published-extra", "--threads", "1"]) == 0
    result = json.loads((out / "fusion_eval.json").read_text())
    assert len(result["pairs"]) == 2 and len(result["published_methods"]) == 25
    ranked = {r["metric"]: r for r in result["table"] if "rank" in r}
    assert set(ranked) == set(fm.VIFB_METRICS)  # VIF / SCD unranked without the extra pass
    for r in ranked.values():
        assert r["of"] == 26 and 1 <= r["rank"] <= 26
        assert r["best_method"] in result["published_methods"]
    # the rank is the count of published means that beat ours, plus one
    psnr = ranked["Psnr"]
    means = [v["Psnr"] for v in result["published_means"].values()]
    assert psnr["rank"] == 1 + sum(m > psnr["ours"] for m in means)
    assert psnr["best_value"] == max(means)
    assert len(result["strip_methods"]) == 2
    for name in ("fusion_eval.md", "fusion_ranks.png", "fusion_strip.png"):
        assert (out / name).stat().st_size > 0
    strip = cv2.imread(str(out / "fusion_strip.png"))
    assert strip.shape[0] > 2 * 180  # one row per pair


@pytest.mark.skipif(not ROADSCENE.is_dir(), reason=f"RoadScene not found at {ROADSCENE}")
def test_fusion_eval_on_a_plain_folder_pair_has_no_ranks(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(tiny_checkpoint), "--data", str(ROADSCENE), "--limit", "1"]
    assert fb.main([*argv, "--out", str(out), "--threads", "1"]) == 0
    result = json.loads((out / "fusion_eval.json").read_text())
    assert result["published_methods"] == [] and all("rank" not in r for r in result["table"])
    assert set(result["ours"]) == set(fm.METRICS)
    assert fb.main(["--data", str(tmp_path), "--out", str(out)]) == 2  # no known layout


def test_offline_evaluator_reports_fused_image_metrics(tiny_checkpoint, tmp_path):
    from fusionsam_model.data import synth
    from fusionsam_model.data.datasets import open_dataset
    from fusionsam_model.runtime.segmenter import Segmenter
    from training.evaluate import evaluate

    synth.generate(tmp_path / "synth", 8, 5, "mfnet", progress=False)
    dataset = open_dataset(tmp_path / "synth", "test")
    segmenter = Segmenter.from_checkpoint(tiny_checkpoint)
    result = evaluate(segmenter, dataset, limit=2)
    expected = fm.FusionMeter()
    for i in range(2):
        s = dataset[i]
        expected.update(fm.compute_no_reference(segmenter.predict(s.rgb, s.thermal).fused))
    assert set(result["fusion_metrics"]) == set(fm.NO_REFERENCE_METRICS)
    for k, v in expected.means().items():
        assert result["fusion_metrics"][k] == pytest.approx(v, rel=1e-6)


def test_stream_report_lists_fused_image_metrics():
    from fusionsam_ros.evaluation.stream_evaluator import _fusion_lines

    assert _fusion_lines({}) == []
    report = {
        "fusion_metrics": {"frames": 3, "kind": "fused image only", "means": {"Entropy": 6.5}}
    }
    assert _fusion_lines(report)[0] == "Fused image (3 frames, fused image only): Entropy 6.5."
