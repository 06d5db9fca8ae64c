"""Box-labelled real frames as training items (training/box_data.py): the augmentation
moves the boxes with the pixels, and the photometric jitter changes only the pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusionsam_model.data.box_datasets import BoxDataset
from training.box_data import BoxedPairs, crop_and_flip

H, W = 120, 160
WARM = (30, 40, 70, 100)  # x1, y1, x2, y2 of the warm person, pixels


def warm_frame() -> tuple[np.ndarray, np.ndarray]:
    """A cold scene with one warm, bright rectangle at WARM (a textured background, so a
    jitter has something to change everywhere)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(20, 60, (H, W, 3), dtype=np.uint8)
    thermal = rng.integers(10, 40, (H, W), dtype=np.uint8)
    x1, y1, x2, y2 = WARM
    rgb[y1:y2, x1:x2] = 200
    thermal[y1:y2, x1:x2] = 250
    return rgb, thermal


@pytest.fixture()
def pairs_root(tmp_path: Path) -> Path:
    rgb, thermal = warm_frame()
    for sub in ("vi", "ir", "boxes/a"):
        (tmp_path / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "vi" / "00001D.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "ir" / "00001D.png"), thermal)
    (tmp_path / "boxes" / "classes.txt").write_text("0 person\n1 bicycle\n2 car\n")
    x1, y1, x2, y2 = WARM
    line = f"0 {(x1 + x2) / 2 / W} {(y1 + y2) / 2 / H} {(x2 - x1) / W} {(y2 - y1) / H}\n"
    (tmp_path / "boxes" / "a" / "00001D.txt").write_text(line)
    return tmp_path


def test_crop_and_flip_keeps_the_box_on_its_object() -> None:
    rgb, thermal = warm_frame()
    boxes = np.array([[*WARM, 2.0]])
    for seed in range(40):
        r, t, out = crop_and_flip(rgb, thermal, boxes, np.random.default_rng(seed))
        assert r.shape[:2] == t.shape and out.shape[1] == 6
        hot = t > 200
        if len(out) == 0:  # the crop missed the object entirely
            assert not hot.any()
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in out[0, :4])
        inside = np.zeros_like(hot)
        inside[y1:y2, x1:x2] = True
        assert hot.sum() > 0 and not (hot & ~inside).any(), seed  # no warm pixel outside
        assert (hot == inside).mean() > 0.99
        kept = (x2 - x1) * (y2 - y1) / ((WARM[2] - WARM[0]) * (WARM[3] - WARM[1]))
        assert out[0, 5] == (1.0 if kept >= 0.5 else 0.0)


def test_photometric_jitter_changes_pixels_not_geometry(pairs_root: Path) -> None:
    dataset = BoxDataset(pairs_root, ["00001D"], ["a"])
    plain = BoxedPairs(dataset, 64, None, (1.0, 99.0))
    jittered = BoxedPairs(dataset, 64, None, (1.0, 99.0), photometric=True)
    differs = 0
    for seed in range(6):
        a = plain.item(0, np.random.default_rng(seed))
        b = jittered.item(0, np.random.default_rng(seed))
        torch.testing.assert_close(a.boxes, b.boxes)  # same crop and flip
        torch.testing.assert_close(a.valid, b.valid)
        differs += int(not torch.equal(a.rgb, b.rgb))
        # the warm object stays the warmest thing inside its box
        x1, y1, x2, y2 = (int(v) for v in b.boxes[0, :4].round())
        inside = b.thermal[0, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
        assert inside.numel() == 0 or inside.mean() > b.thermal[0][b.valid[0] > 0].mean()
    assert differs == 6
