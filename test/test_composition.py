"""The fused image's composition: colours from the visible camera, detail from the
stronger camera, the decision maps steer the base layer, torch and OpenCV agree."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fusionsam_model.modeling.composition import (
    NUM_MAPS,
    compose,
    compose_numpy,
    luminance,
    visible_detail_wins,
    visible_detail_wins_numpy,
)


def _pair(h: int = 96, w: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (7, 7), 2.0)
    th = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (7, 7), 2.0)
    return rgb, th


def _torch(rgb: np.ndarray, th: np.ndarray, maps: np.ndarray) -> np.ndarray:
    out = compose(
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0,
        torch.from_numpy(th)[None, None],
        torch.from_numpy(maps)[None],
    )
    return out[0].permute(1, 2, 0).numpy() * 255.0


def _maps(value_base: float, value_gain: float, hw: tuple[int, int]) -> np.ndarray:
    maps = np.empty((NUM_MAPS, *hw), np.float32)
    maps[0], maps[1] = value_base, value_gain
    return maps


def test_torch_and_opencv_compositions_agree() -> None:
    rgb, th = _pair()
    maps = np.random.default_rng(1).normal(size=(NUM_MAPS, 24, 32)).astype(np.float32)
    a = compose_numpy(rgb, th, maps).astype(np.float32)
    b = _torch(rgb, th, maps)
    diff = np.abs(a - b)
    # uint8 YCrCb round trips vs float maths: about one grey level on average
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 6.0, (diff.mean(), diff.max())


def test_visible_weight_one_and_no_detail_gain_change_keeps_the_visible_image() -> None:
    """base weight -> 1 (all visible) and the visible detail is stronger everywhere when
    thermal is flat: the result is the visible image (up to YCrCb rounding)."""
    rgb, _ = _pair()
    flat = np.full(rgb.shape[:2], 0.5, np.float32)
    out = compose_numpy(rgb, flat, _maps(30.0, 0.0, (24, 32)))
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 3


def test_thermal_weight_takes_the_warm_object_and_keeps_visible_colour() -> None:
    """A dark night scene with a warm square: with the base weight on thermal the square
    is bright in the fused image; the chroma (Cr, Cb) stays the visible camera's."""
    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 40, 20  # a reddish dark scene
    th = np.full((96, 128), 0.3, np.float32)
    th[32:64, 48:80] = 0.6
    out = compose_numpy(rgb, th, _maps(-30.0, 0.0, (24, 32)))
    assert out[40:56, 56:72].mean() > 120 and out[:16, :16].mean() < 100
    ycc_in = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(int)
    ycc_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb).astype(int)
    for region in (np.s_[:16, :16], np.s_[40:56, 56:72]):  # background and warm square
        assert np.abs(ycc_out[region][..., 1:] - ycc_in[region][..., 1:]).max() <= 2


def test_detail_comes_from_the_stronger_camera_at_full_resolution() -> None:
    """One-pixel lines only the thermal camera sees survive at full resolution (the
    decision grid is 4x coarser): the fused image is as sharp as its sharpest source."""
    rgb = np.full((96, 128, 3), 128, np.uint8)
    th = np.full((96, 128), 0.3, np.float32)
    th[:, ::6] = 0.9
    out = compose_numpy(rgb, th, _maps(0.0, 0.0, (24, 32)))
    y = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert (y[:, 6:120:6].mean() - y[:, 7:121:6].mean()) > 60


def test_gradients_reach_the_decision_maps() -> None:
    rgb, th = _pair(32, 32)
    maps = torch.zeros(1, NUM_MAPS, 8, 8, requires_grad=True)
    fused = compose(
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0,
        torch.from_numpy(th)[None, None],
        maps,
    )
    (luminance(fused) - 1.0).abs().mean().backward()
    assert maps.grad is not None
    assert maps.grad[0, 0].abs().sum() > 0 and maps.grad[0, 1].abs().sum() > 0


@pytest.mark.parametrize("hw", [(480, 640), (100, 70)])
def test_composition_keeps_the_camera_size(hw: tuple[int, int]) -> None:
    rgb, th = _pair(*hw)
    out = compose_numpy(rgb, th, _maps(0.0, 0.0, (hw[0] // 10 + 1, hw[1] // 10 + 1)))
    assert out.shape == (*hw, 3) and out.dtype == np.uint8


def test_detail_choice_is_local_so_an_edge_stays_one_cameras() -> None:
    """Visible texture on the left, thermal texture on the right, weak noise in the other
    camera: the choice follows the regions (a per-pixel max-abs choice flips to the
    noise wherever the texture crosses zero)."""
    rng = np.random.default_rng(3)
    h, w = 96, 128
    strong = cv2.GaussianBlur(rng.normal(0, 40, (h, w)).astype(np.float32), (3, 3), 1.0)
    weak = rng.normal(0, 6, (h, w)).astype(np.float32)
    y = np.where(np.arange(w) < w // 2, strong, weak) + 128
    t = np.where(np.arange(w) < w // 2, weak, strong) + 128
    base = np.full((h, w), 128, np.float32)
    wins = visible_detail_wins_numpy(y, base, t, base) > 0
    left, right = np.s_[:, 8 : w // 2 - 8], np.s_[:, w // 2 + 8 : -8]
    assert wins[left].mean() > 0.99 and wins[right].mean() < 0.01
    per_pixel = np.abs(y - 128) >= np.abs(t - 128)
    assert per_pixel[left].mean() < 0.97  # what the local choice avoids
    d = torch.from_numpy(np.stack([y - 128, t - 128]))[:, None]
    torch_wins = visible_detail_wins(d[0:1], d[1:2])[0, 0].numpy()
    assert (torch_wins == wins).mean() > 0.99
