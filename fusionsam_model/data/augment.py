"""Aligned augmentation of an (rgb, thermal, label) triple for training.

Why: the two modalities and the label must stay pixel-aligned through every geometric
change (one scale, one crop window, one flip for all three; the label resized with
nearest neighbour only so no new ids appear), while photometric changes stay
per-sensor (colour jitter for RGB, gain/offset for thermal) because the two cameras
vary independently. All randomness comes from the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.data.datasets import Sample


@dataclass
class AugmentConfig:
    crop_size: tuple[int, int] | None = (480, 640)  # (height, width); None keeps the scaled size
    scale_range: tuple[float, float] = (0.75, 1.5)  # uniform factor on both sides
    hflip_prob: float = 0.5
    brightness: float = 0.25  # RGB multiplied by 1 +- brightness
    contrast: float = 0.25  # RGB pulled to/away from its mean grey by 1 +- contrast
    saturation: float = 0.25  # RGB pulled to/away from per-pixel grey by 1 +- saturation
    thermal_gain: float = 0.15  # thermal multiplied by 1 +- thermal_gain
    thermal_offset: float = 0.05  # thermal shifted by +- this fraction of its full range


def label_pad_value(class_table: ClassTable) -> int:
    """Padded label pixels: the ignore index when the table has one, else 0 (unlabeled)."""
    return 0 if class_table.ignore_index is None else int(class_table.ignore_index)


def _resize(img: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    return cv2.resize(img, (size[1], size[0]), interpolation=interpolation)


def _pad_to(img: np.ndarray, height: int, width: int, value: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h >= height and w >= width:
        return img
    pad = ((0, max(0, height - h)), (0, max(0, width - w))) + ((0, 0),) * (img.ndim - 2)
    return np.pad(img, pad, constant_values=value)


def jitter_rgb(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    img = rgb.astype(np.float32)
    img *= 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    c = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    img = (img - grey.mean()) * c + grey.mean()
    s = 1.0 + rng.uniform(-cfg.saturation, cfg.saturation)
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = (img - grey[..., None]) * s + grey[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def jitter_thermal(thermal: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    top = float(np.iinfo(thermal.dtype).max) if thermal.dtype.kind in "ui" else 1.0
    gain = 1.0 + rng.uniform(-cfg.thermal_gain, cfg.thermal_gain)
    offset = rng.uniform(-cfg.thermal_offset, cfg.thermal_offset) * top
    out = thermal.astype(np.float32) * gain + offset
    if thermal.dtype.kind in "ui":
        return np.clip(np.rint(out), 0, top).astype(thermal.dtype)
    return out.astype(thermal.dtype)


def augment(
    rgb: np.ndarray,
    thermal: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig | None = None,
    label_pad: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jitter each sensor, then scale, crop (padding with 0 / ``label_pad``) and flip all three."""
    cfg = cfg or AugmentConfig()
    if not (rgb.shape[:2] == thermal.shape[:2] == label.shape[:2]):
        raise ValueError(
            f"misaligned inputs: rgb {rgb.shape}, thermal {thermal.shape}, label {label.shape}"
        )
    # photometry first, so padded borders stay exactly 0 in both images
    rgb = jitter_rgb(rgb, rng, cfg)
    thermal = jitter_thermal(thermal, rng, cfg)
    h, w = label.shape
    scale = rng.uniform(*cfg.scale_range)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size != (h, w):
        rgb = _resize(rgb, size, cv2.INTER_LINEAR)
        thermal = _resize(thermal, size, cv2.INTER_LINEAR)
        label = _resize(label, size, cv2.INTER_NEAREST)
    if cfg.crop_size is not None:
        ch, cw = cfg.crop_size
        rgb, thermal = _pad_to(rgb, ch, cw, 0), _pad_to(thermal, ch, cw, 0)
        label = _pad_to(label, ch, cw, label_pad)
        top = int(rng.integers(0, label.shape[0] - ch + 1))
        left = int(rng.integers(0, label.shape[1] - cw + 1))
        window = (slice(top, top + ch), slice(left, left + cw))
        rgb, thermal, label = rgb[window], thermal[window], label[window]
    if rng.random() < cfg.hflip_prob:
        rgb, thermal, label = rgb[:, ::-1], thermal[:, ::-1], label[:, ::-1]
    return np.ascontiguousarray(rgb), np.ascontiguousarray(thermal), np.ascontiguousarray(label)


def augment_sample(
    sample: Sample,
    rng: np.random.Generator,
    class_table: ClassTable,
    cfg: AugmentConfig | None = None,
) -> Sample:
    rgb, thermal, label = augment(
        sample.rgb, sample.thermal, sample.label, rng, cfg, label_pad_value(class_table)
    )
    return Sample(sample.name, rgb, thermal, label)
