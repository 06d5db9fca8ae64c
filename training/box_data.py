"""Real frames with box labels as training items: letterboxed tensors plus boxes at S.

The frames go through the inference pre-processing (``preprocess_pair``, what the node
does), so the network trains on exactly what it will see on a camera. Augmentation is
geometric and box-aware: a random crop (70-100 % of each side) and a horizontal flip,
applied to both cameras and the boxes alike. A box cut to less than half of its area
stays a *negative-free* region (nothing is penalised inside it) but is not used as a
positive bag (the object may have left the crop). With ``photometric`` each camera is
also jittered on its own, as the synthetic pairs are (``data.augment``: brightness,
contrast and saturation of the RGB image, gain and offset of the thermal one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fusionsam_model.data.augment import AugmentConfig, jitter_rgb, jitter_thermal
from fusionsam_model.data.box_datasets import BoxDataset
from fusionsam_model.runtime.preprocess import ThermalRange, preprocess_pair

MIN_CROP = 0.7  # crop side as a share of the frame side
MIN_KEPT_AREA = 0.5  # a cropped box stays a positive bag when this much of it is left


@dataclass
class BoxedItem:
    rgb: torch.Tensor  # (3, S, S) in [0, 1]
    thermal: torch.Tensor  # (1, S, S) in [0, 1]
    valid: torch.Tensor  # (1, S, S) 1 on the image, 0 on letterbox padding
    boxes: torch.Tensor  # (N, 6): x1, y1, x2, y2 in S pixels, class id, 1 = positive bag


def crop_and_flip(
    rgb: np.ndarray, thermal: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crop + horizontal flip of a pair and its (N, 5) pixel boxes -> (N', 6) boxes
    with a positive-bag flag (see module docstring); boxes outside the crop are dropped."""
    h, w = thermal.shape[:2]
    ch, cw = (int(round(s * rng.uniform(MIN_CROP, 1.0))) for s in (h, w))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    rgb, thermal = rgb[y0 : y0 + ch, x0 : x0 + cw], thermal[y0 : y0 + ch, x0 : x0 + cw]
    b = boxes.astype(np.float64).copy()
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]] - x0, 0, cw)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]] - y0, 0, ch)
    kept = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inside = kept > 0
    positive = kept >= MIN_KEPT_AREA * np.maximum(area, 1e-9)
    out = np.concatenate([b, positive[:, None].astype(np.float64)], axis=1)[inside]
    if rng.random() < 0.5:
        rgb, thermal = rgb[:, ::-1], thermal[:, ::-1]
        out[:, [0, 2]] = cw - out[:, [2, 0]]
    return np.ascontiguousarray(rgb), np.ascontiguousarray(thermal), out


class BoxedPairs:
    """``[i, rng] -> BoxedItem`` over a ``BoxDataset``; images decoded once and kept."""

    def __init__(
        self,
        dataset: BoxDataset,
        input_size: int,
        thermal_range: ThermalRange | None,
        percentiles: tuple[float, float],
        augment: bool = True,
        photometric: bool = False,
    ) -> None:
        self.samples = [dataset[i] for i in range(len(dataset))]
        table = dataset.class_table
        self.classes = tuple(table.names.index(n) for n in dataset.labels.classes)  # box ids
        self.input_size = input_size
        self.thermal_range = thermal_range
        self.percentiles = percentiles
        self.augment = augment
        self.photometric = AugmentConfig() if photometric else None

    def __len__(self) -> int:
        return len(self.samples)

    def item(self, index: int, rng: np.random.Generator) -> BoxedItem:
        s = self.samples[index]
        boxes = np.concatenate([s.boxes, np.ones((len(s.boxes), 1))], axis=1)
        rgb, thermal = s.rgb, s.thermal
        if self.augment:
            rgb, thermal, boxes = crop_and_flip(rgb, thermal, s.boxes, rng)
        if self.photometric is not None:
            rgb = jitter_rgb(rgb, rng, self.photometric)
            thermal = jitter_thermal(thermal, rng, self.photometric)
        r, t, box = preprocess_pair(
            rgb, thermal, self.input_size, self.thermal_range, self.percentiles
        )
        valid = np.zeros((1, self.input_size, self.input_size), np.float32)
        rh, rw = box.resized_hw
        valid[:, :rh, :rw] = 1.0
        at_s = boxes.copy()
        at_s[:, :4] *= box.scale
        return BoxedItem(
            torch.from_numpy(r),
            torch.from_numpy(t),
            torch.from_numpy(valid),
            torch.from_numpy(at_s).float().reshape(-1, 6),
        )
