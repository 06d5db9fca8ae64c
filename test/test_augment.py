"""Aligned augmentation: geometry shared by all three arrays, photometry per sensor."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fusionsam_model.data.augment import AugmentConfig, augment, augment_sample, label_pad_value
from fusionsam_model.data.classes import FMB, MFNET, ClassTable
from fusionsam_model.data.datasets import Sample

H, W = 120, 160


def _triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box of class 3 that is red in RGB and warm in thermal, off-centre so flips show."""
    label = np.zeros((H, W), np.uint8)
    label[30:80, 20:90] = 3
    box = label == 3
    rgb = np.full((H, W, 3), 60, np.uint8)
    rgb[box] = (230, 40, 40)
    thermal = np.where(box, 200, 50).astype(np.uint8)
    return rgb, thermal, label


def _boundary_ok(mask: np.ndarray, label_mask: np.ndarray) -> bool:
    """mask agrees with label_mask everywhere except within one pixel of the label edge."""
    k = np.ones((3, 3), np.uint8)
    inner = cv2.erode(label_mask.astype(np.uint8), k).astype(bool)
    outer = cv2.dilate(label_mask.astype(np.uint8), k).astype(bool)
    return bool(mask[inner].all() and not mask[~outer].any())


def test_geometry_keeps_modalities_aligned() -> None:
    rgb, thermal, label = _triple()
    cfg = AugmentConfig(crop_size=(96, 128), scale_range=(0.6, 1.6))
    centroids, flips = set(), 0
    for seed in range(24):
        out_rgb, out_th, out_label = augment(rgb, thermal, label, np.random.default_rng(seed), cfg)
        assert out_rgb.shape == (96, 128, 3) and out_th.shape == out_label.shape == (96, 128)
        box = out_label == 3
        if box.sum() < 20:
            continue
        warm = out_th > (int(out_th[box].max()) + int(out_th[~box].min())) / 2
        assert _boundary_ok(warm, box), f"thermal edge off the label edge (seed {seed})"
        red = out_rgb[..., 0].astype(int) - out_rgb[..., 1] > 60
        assert _boundary_ok(red, box), f"RGB edge off the label edge (seed {seed})"
        ys, xs = np.nonzero(box)
        centroids.add((round(ys.mean()), round(xs.mean())))
        cols = np.nonzero(box.any(axis=0))[0]
        flips += int(cols.mean() > 64 and cols.min() > 0)  # the box started on the left
    assert len(centroids) > 10, "augmentation barely moved anything"
    assert flips > 0


def test_label_values_stay_in_original_set() -> None:
    rng = np.random.default_rng(0)
    label = np.kron(rng.choice([0, 2, 5, 7], size=(12, 16)), np.ones((10, 10), np.int64)).astype(
        np.uint8
    )
    rgb, thermal = np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8)
    cfg = AugmentConfig(crop_size=(100, 100), scale_range=(0.37, 1.93))
    for seed in range(10):
        out = augment(rgb, thermal, label, np.random.default_rng(seed), cfg, label_pad=255)[2]
        assert set(np.unique(out).tolist()) <= {0, 2, 5, 7, 255}


def test_padding_uses_label_pad_and_zero_images() -> None:
    rgb, thermal, label = _triple()
    label[:] = 4
    cfg = AugmentConfig(crop_size=(H, W), scale_range=(0.5, 0.5), hflip_prob=0.0)
    out_rgb, out_th, out_label = augment(
        rgb, thermal, label, np.random.default_rng(1), cfg, label_pad=255
    )
    pad = out_label == 255
    assert pad.sum() == H * W - (H // 2) * (W // 2)
    assert (out_label[~pad] == 4).all()
    assert not out_rgb[pad].any() and not out_th[pad].any()


def test_photometric_jitter_is_per_sensor_and_leaves_geometry() -> None:
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    thermal = rng.integers(20, 230, (H, W), dtype=np.uint8)
    label = rng.integers(0, 9, (H, W), dtype=np.uint8)
    cfg = AugmentConfig(crop_size=None, scale_range=(1.0, 1.0), hflip_prob=0.0)
    out_rgb, out_th, out_label = augment(rgb, thermal, label, np.random.default_rng(2), cfg)
    np.testing.assert_array_equal(out_label, label)
    assert not np.array_equal(out_rgb, rgb)
    # thermal only gets gain + offset: an affine map of the input, up to rounding
    a, b = np.polyfit(thermal.ravel().astype(float), out_th.ravel().astype(float), 1)
    assert a != pytest.approx(1.0, abs=1e-3) or b != pytest.approx(0.0, abs=0.5)
    residual = out_th.astype(float) - (a * thermal + b)
    assert np.abs(residual).max() <= 1.0


def test_same_generator_same_output_and_dtypes() -> None:
    rgb, thermal, label = _triple()
    thermal16 = thermal.astype(np.uint16) * 250
    first = augment(rgb, thermal16, label, np.random.default_rng(9))
    second = augment(rgb, thermal16, label, np.random.default_rng(9))
    other = augment(rgb, thermal16, label, np.random.default_rng(10))
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[1], other[1])
    assert first[1].dtype == np.uint16 and first[1].max() > 255
    assert first[0].dtype == np.uint8 and first[2].dtype == np.uint8


def test_sample_wrapper_and_pad_value() -> None:
    assert label_pad_value(MFNET) == 0 and label_pad_value(FMB) == 0
    table = ClassTable("t", ("a", "b"), ((0, 0, 0), (1, 1, 1)), ignore_index=255)
    assert label_pad_value(table) == 255
    rgb, thermal, label = _triple()
    label[:] = 1
    cfg = AugmentConfig(crop_size=(200, 200), scale_range=(1.0, 1.0))
    out = augment_sample(Sample("x", rgb, thermal, label), np.random.default_rng(0), table, cfg)
    assert out.name == "x" and out.label.shape == (200, 200)
    assert set(np.unique(out.label).tolist()) == {1, 255}


def test_misaligned_inputs_rejected() -> None:
    rgb, thermal, label = _triple()
    with pytest.raises(ValueError, match="misaligned"):
        augment(rgb, thermal[:-1], label, np.random.default_rng(0))
