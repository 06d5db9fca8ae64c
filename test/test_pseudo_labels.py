"""Pseudo-labels for self-training (training/pseudo_labels.py): only confident pixels of the
real-frame classes, the boxes overrule the teacher, held-out frames are never labelled, and
training reads the void pixels as ignored."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from training_helpers import small_trainer

from fusionsam_model.data.box_datasets import select_names
from fusionsam_model.data.classes import MFNET
from fusionsam_model.data.datasets import VOID_LABEL, DatasetError, MFNetDataset
from training.pseudo_labels import main as pseudo_main
from training.pseudo_labels import pseudo_label

BG, CAR, PERSON, BIKE, CURVE = (
    MFNET.names.index(n) for n in ("unlabeled", "car", "person", "bike", "curve")
)
BOXED = (CAR, PERSON, BIKE)


def _probs(ids: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """(C, H, W) probabilities whose argmax is ``ids`` with top probability ``confidence``."""
    c = MFNET.num_classes
    probs = np.repeat(((1.0 - confidence) / (c - 1))[None], c, axis=0)
    np.put_along_axis(probs, ids[None].astype(np.int64), confidence[None], axis=0)
    return probs.astype(np.float32)


def test_only_confident_real_frame_classes_inside_their_boxes_are_labelled() -> None:
    ids = np.full((40, 60), BG)
    ids[5:15, 5:15] = CAR  # inside the car box
    ids[5:15, 40:50] = CAR  # a car the boxes do not vouch for
    ids[25:35, 5:15] = CURVE  # a synthetic-only class
    ids[25:35, 40:50] = PERSON  # inside the person box but unsure
    conf = np.full(ids.shape, 0.95)
    conf[25:35, 40:50] = 0.5
    boxes = np.array([[5, 5, 15, 15, CAR], [40, 25, 50, 35, PERSON]], np.float64)
    label = pseudo_label(_probs(ids, conf), MFNET, 0.9, boxes, BOXED)
    assert np.all(label[6:14, 6:14] == CAR)
    assert np.all(label[5:15, 40:50] == VOID_LABEL)
    assert np.all(label[25:35, 5:15] == VOID_LABEL)
    assert np.all(label[25:35, 40:50] == VOID_LABEL)
    assert label[20, 30] == BG  # confident background outside every box
    assert label[4, 8] == VOID_LABEL  # background inside the car's grown box


def test_without_boxes_only_background_is_labelled() -> None:
    ids = np.full((20, 30), BG)
    ids[5:10, 5:10] = CAR
    label = pseudo_label(_probs(ids, np.full(ids.shape, 0.99)), MFNET, 0.9, None, BOXED)
    assert np.all(label[5:10, 5:10] == VOID_LABEL)
    assert np.count_nonzero(label == BG) == ids.size - 25


def _write_msrs(root: Path, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    for sub in ("vi", "ir", "boxes/visible", "boxes/infrared", "boxes/fusion"):
        (root / sub).mkdir(parents=True)
    (root / "boxes" / "classes.txt").write_text("0 person\n1 bicycle\n2 car\n")
    for name in names:
        cv2.imwrite(str(root / "vi" / f"{name}.png"), rng.integers(0, 256, (48, 64, 3), np.uint8))
        cv2.imwrite(str(root / "ir" / f"{name}.png"), rng.integers(0, 256, (48, 64), np.uint8))
        (root / "boxes" / "visible" / f"{name}.txt").write_text("2 0.3 0.5 0.25 0.4\n")


def _write_pairs(root: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    (root / "visible").mkdir(parents=True)
    (root / "infrared").mkdir()
    for i in range(n):
        cv2.imwrite(
            str(root / "visible" / f"p{i}.png"), rng.integers(0, 256, (40, 56, 3), np.uint8)
        )
        cv2.imwrite(str(root / "infrared" / f"p{i}.png"), rng.integers(0, 256, (40, 56), np.uint8))


def test_the_tool_writes_a_training_set_without_the_held_out_frames(tiny_checkpoint, tmp_path):
    msrs, rs, out = tmp_path / "msrs", tmp_path / "rs", tmp_path / "pseudo"
    _write_msrs(msrs, [f"{i:05d}D" for i in range(12)])
    _write_pairs(rs, 3)
    argv = ["--out", str(out), "--checkpoint", str(tiny_checkpoint), "--min-prob", "0"]
    assert pseudo_main([*argv, "--msrs", str(msrs), "--roadscene", str(rs)]) == 0
    written = (out / "train.txt").read_text().split()
    train, holdout = select_names(msrs, "train"), select_names(msrs, "holdout")
    assert [n for n in written if n.startswith("msrs_")] == [f"msrs_{n}" for n in train]
    assert holdout and not {f"msrs_{n}" for n in holdout} & set(written)
    ds = MFNetDataset(out, "train", void_ok=True)
    assert len(ds) == len(train) + 3
    for i in range(len(ds)):
        sample = ds[i]
        assert sample.thermal.shape == sample.label.shape == sample.rgb.shape[:2]
        allowed = {BG, VOID_LABEL} if sample.name.startswith("rs_") else {BG, *BOXED, VOID_LABEL}
        assert set(np.unique(sample.label)) <= allowed, sample.name
    with pytest.raises(DatasetError, match="unexpected ids"):
        MFNetDataset(out, "train")[0]  # void is refused where it is not expected


def test_training_joins_the_pseudo_labelled_frames_to_the_train_split(tiny_checkpoint, tmp_path):
    from training.data import PairTransform
    from training.losses import IGNORE

    _write_pairs(tmp_path / "rs", 4)
    out = tmp_path / "pseudo"  # an untrained teacher is never this sure: every pixel void
    argv = ["--out", str(out), "--checkpoint", str(tiny_checkpoint), "--min-prob", "0.999"]
    assert pseudo_main([*argv, "--roadscene", str(tmp_path / "rs")]) == 0
    trainer = small_trainer(tmp_path, {"pseudo": "{root: " + str(out) + "}"})
    pairs = trainer.data.train_pairs
    n_synth = len(MFNetDataset(tmp_path / "synth", "train"))
    assert len(pairs) == n_synth + 4
    sample = pairs.dataset[n_synth]
    assert np.all(sample.label == VOID_LABEL)
    plain = PairTransform(64, MFNET)
    assert torch.all(plain(sample, None)["label"] == IGNORE)  # void reaches the loss as ignored
    trainer.setup_stage("seg")
    trainer._set_modes("seg")
    batch = next(iter(trainer.train_loader))
    assert np.isfinite(trainer.seg_step(batch)["loss"])
