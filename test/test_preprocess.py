"""Shared pre/post-processing: thermal normalisation, letterbox and its inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fusionsam_model.runtime.preprocess import (
    letterbox_for,
    normalize_thermal,
    preprocess_batch,
    preprocess_pair,
    unletterbox_labels,
    unletterbox_logits,
)


def test_thermal_fixed_range_for_each_dtype():
    cases = (
        (np.uint8, 10, 250, 255),
        (np.uint16, 1000, 9000, 20000),
        (np.float32, 250.0, 320.0, 400),
    )
    for dtype, lo, hi, above in cases:
        t = np.array([[lo, hi], [(lo + hi) / 2, above], [0, lo / 2]]).astype(dtype)
        out = normalize_thermal(t, thermal_range=(lo, hi))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, [[0.0, 1.0], [0.5, 1.0], [0.0, 0.0]], atol=1e-3)


def test_thermal_auto_gain_uses_percentiles():
    rng = np.random.default_rng(0)
    t = rng.integers(20000, 30000, (64, 64)).astype(np.uint16)
    t[0, 0] = 65535  # a hot dead pixel must not decide the gain
    out = normalize_thermal(t, None, (1.0, 99.0))
    assert out.min() == 0.0 and out.max() == 1.0
    # the bulk spans almost the whole range despite the outlier
    assert np.percentile(out, 95) > 0.9 and np.percentile(out, 5) < 0.1


def test_thermal_nan_inf_and_flat_frames_are_safe():
    t = np.full((8, 8), 300.0, np.float32)
    t[1, 1], t[2, 2], t[3, 3] = np.nan, np.inf, -np.inf
    out = normalize_thermal(t)
    assert np.isfinite(out).all()
    assert out[1, 1] == out[2, 2] == out[3, 3] == 0.0
    assert np.all(normalize_thermal(np.full((4, 4), np.nan, np.float32)) == 0)
    with pytest.raises(ValueError, match="thermal image must be"):
        normalize_thermal(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="lo < hi"):
        normalize_thermal(np.zeros((4, 4), np.uint8), thermal_range=(5, 5))


@pytest.mark.parametrize(
    ("hw", "content"),
    [((480, 640), (240, 320)), ((600, 800), (240, 320)), ((640, 480), (320, 240))],
)
def test_letterbox_geometry(hw, content):
    box = letterbox_for(hw, 320)
    assert box.resized_hw == content
    assert box.pad == (320 - content[0], 320 - content[1])
    assert box.original_hw == hw


def test_preprocess_pads_with_zeros_and_keeps_range():
    rgb = np.full((480, 640, 3), 255, np.uint8)
    th = np.full((480, 640), 200, np.uint8)
    r, t, box = preprocess_pair(rgb, th, 320, thermal_range=(0, 255))
    assert r.shape == (3, 320, 320) and t.shape == (1, 320, 320)
    assert np.allclose(r[:, :240, :320], 1.0) and np.all(r[:, 240:] == 0)
    assert np.allclose(t[0, :240], 200 / 255, atol=1e-6) and np.all(t[0, 240:] == 0)
    with pytest.raises(ValueError, match="same H x W"):
        preprocess_pair(rgb, th[:100], 320)


def test_batch_helper_stacks_mixed_sizes():
    rgbs = [np.zeros((480, 640, 3), np.uint8), np.zeros((600, 800, 3), np.uint8)]
    ths = [np.zeros((480, 640), np.uint16), np.zeros((600, 800), np.float32)]
    r, t, boxes = preprocess_batch(rgbs, ths, 256)
    assert r.shape == (2, 3, 256, 256) and t.shape == (2, 1, 256, 256)
    assert [b.original_hw for b in boxes] == [(480, 640), (600, 800)]


def test_unletterbox_matches_torch_bilinear():
    """The cv2 path must equal F.interpolate(align_corners=False) on the cropped logits."""
    box = letterbox_for((480, 640), 320)
    logits = torch.randn(9, 80, 80)
    ours = unletterbox_logits(logits, box)
    ref = F.interpolate(
        logits[None, :, :60, :80], size=(480, 640), mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(ours.transpose(2, 0, 1), ref[0].numpy(), atol=1e-4)


def test_unletterbox_labels_round_trip():
    """A label map drawn at S/4 inside the letterbox comes back at H x W in the right place."""
    box = letterbox_for((600, 800), 256)
    m = 64
    logits = torch.zeros(3, m, m)
    logits[0] = 1.0
    logits[1, :, : m // 2] = 5.0  # left half of the content -> class 1
    logits[2, 40:, :] = 9.0  # content is 48 rows at S/4: rows 40-47 content, 48+ padding
    labels, probs = unletterbox_labels(logits, box, return_probs=True)
    assert labels.shape == (600, 800) and labels.dtype == np.uint8
    assert probs.shape == (3, 600, 800) and np.allclose(probs.sum(0), 1.0, atol=1e-5)
    assert np.all(labels[:480, 450:] == 0)
    # rows 40-47 of 48 -> bottom sixth (from y=500); without the crop it would start at 375
    assert np.all(labels[520:, :] == 2) and np.all(labels[:480, :350] == 1)
