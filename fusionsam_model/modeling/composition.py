"""The fused image, composed from the cameras' own pixels at any resolution.

The network does not paint the fused image; it decides, on a coarse grid (S/4 of the
letterboxed input), *what to take from which camera*: ``maps`` holds two logit planes,

* ``base``: the visible camera's share of the base (low-frequency) layer; the thermal
  camera gets the rest, so a warm pedestrian at night can take its brightness from thermal;
* ``gain``: a detail gain in (0, 2) applied to the detail layer (1 = keep it as it is).

The composition then runs at whatever resolution the camera images have: S x S inside
the network (``compose``, torch: SAM's image encoder input, the training losses, the
ONNX front graph) and the camera's native H x W in the Segmenter's post-processing
(``compose_numpy``, OpenCV: the image the node publishes, the same for every backend;
planar float32 OpenCV calls run it in ~2 ms per 640 x 480 pair on one thread, the torch
version took 8 ms there). ``test_composition`` checks the two agree. The steps:

1. luminance Y of the visible image (BT.601) and the thermal image T;
2. two-scale split: the base layer is the image averaged down to the decision grid and
   bilinearly back up; the detail layer is the rest (so the detail is the camera's own,
   at its own resolution);
3. the base weight is brought to full resolution edge-aware by a fast guided filter
   (He & Sun 2015): its linear coefficients are fitted on the coarse grid against the
   coarse guide (mean of Y and T) and applied to the full-resolution guide, so a weight
   edge follows an image edge instead of a 10-pixel bilinear ramp (the detail gain is
   smooth by nature: bilinear);
4. detail: the camera whose detail is locally stronger (the absolute detail averaged at
   half resolution under a 7 x 7 Gaussian, ~14 camera pixels, then compared), times the
   gain. A per-pixel max-abs choice switched camera from pixel to pixel inside textured
   areas and broke edges apart; the local choice keeps an edge from one camera (40
   RoadScene pairs: Qabf 0.541 -> 0.600, Mutinf 2.59 -> 2.68, ``scripts/composition_study.py``);
5. Y_f = w B_y + (1 - w) B_t + gain * D; colour: the visible chroma is kept (YCbCr), so
   colours stay the visible camera's.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

NUM_MAPS = 2  # base weight, detail gain
LUMA = (0.299, 0.587, 0.114)
GUIDE_RADIUS = 1  # box radius of the guided filter, in decision-grid cells
GUIDE_EPS = 1e-3  # guided-filter regulariser (image values in [0, 1])
CHOICE_KSIZE, CHOICE_SIGMA = 7, 1.4  # Gaussian of the detail-activity comparison (half res)
_CHOICE_KERNEL = cv2.getGaussianKernel(CHOICE_KSIZE, CHOICE_SIGMA).astype(np.float32)


def luminance(rgb: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) BT.601 luma."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return LUMA[0] * r + LUMA[1] * g + LUMA[2] * b


def _box(x: Tensor, radius: int) -> Tensor:
    """Mean over a (2r+1)^2 window, mirrored borders (OpenCV's default BORDER_REFLECT_101)."""
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="reflect"), 2 * radius + 1, stride=1)


def _up(x: Tensor, hw: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


def guided_upsample(
    guide_low: Tensor,
    guide: Tensor,
    maps_low: Tensor,
    radius: int = GUIDE_RADIUS,
    eps: float = GUIDE_EPS,
) -> Tensor:
    """Fast guided filter: fit q = a I + b per coarse window, apply it at full resolution.

    guide_low (B, 1, h, w), guide (B, 1, H, W), maps_low (B, K, h, w) -> (B, K, H, W)."""
    mean_i = _box(guide_low, radius)
    mean_p = _box(maps_low, radius)
    cov_ip = _box(guide_low * maps_low, radius) - mean_i * mean_p
    var_i = _box(guide_low * guide_low, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    hw = (guide.shape[-2], guide.shape[-1])
    return _up(_box(a, radius), hw) * guide + _up(_box(b, radius), hw)


def visible_detail_wins(d_y: Tensor, d_t: Tensor) -> Tensor:
    """(B, 1, H, W) details -> bool mask where the visible detail is locally stronger:
    |detail| averaged to half resolution, Gaussian-smoothed, compared, nearest back up."""
    hw = (d_y.shape[-2], d_y.shape[-1])
    half = (-(-hw[0] // 2), -(-hw[1] // 2))
    act = F.interpolate(torch.cat([d_y.abs(), d_t.abs()], dim=1), size=half, mode="area")
    k = torch.from_numpy(_CHOICE_KERNEL[:, 0]).to(act)
    r = CHOICE_KSIZE // 2
    act = F.pad(act, (r, r, r, r), mode="reflect")
    act = F.conv2d(act, k.view(1, 1, 1, -1).expand(2, 1, 1, -1), groups=2)
    act = F.conv2d(act, k.view(1, 1, -1, 1).expand(2, 1, -1, 1), groups=2)
    wins = (act[:, 0:1] >= act[:, 1:2]).to(d_y.dtype)
    return F.interpolate(wins, size=hw, mode="nearest") > 0.5


def compose(rgb: Tensor, thermal: Tensor, maps: Tensor) -> Tensor:
    """rgb (B, 3, H, W), thermal (B, 1, H, W) in [0, 1] and decision logits (B, 2, h, w)
    on the coarse grid covering the same field of view -> fused (B, 3, H, W) in [0, 1]."""
    hw = (rgb.shape[-2], rgb.shape[-1])
    grid = (maps.shape[-2], maps.shape[-1])
    y = luminance(rgb)
    yt = torch.cat([y, thermal], dim=1)  # (B, 2, H, W)
    yt_low = F.adaptive_avg_pool2d(yt, grid)
    base = _up(yt_low, hw)
    detail = yt - base
    guide = yt.mean(dim=1, keepdim=True)
    guide_low = yt_low.mean(dim=1, keepdim=True)
    p = torch.sigmoid(maps)
    w = guided_upsample(guide_low, guide, p[:, 0:1]).clamp(0.0, 1.0)
    gain = 2.0 * _up(p[:, 1:2], hw)
    d_y, d_t = detail[:, 0:1], detail[:, 1:2]
    detail_max = torch.where(visible_detail_wins(d_y, d_t), d_y, d_t)
    fused_y = base[:, 1:2] + w * (base[:, 0:1] - base[:, 1:2]) + gain * detail_max
    return (rgb + (fused_y.clamp(0.0, 1.0) - y)).clamp(0.0, 1.0)


def _box_np(x: np.ndarray) -> np.ndarray:
    k = 2 * GUIDE_RADIUS + 1
    return cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT_101)


def visible_detail_wins_numpy(y: np.ndarray, base_y: np.ndarray, t: np.ndarray, base_t: np.ndarray):
    """``visible_detail_wins`` with OpenCV: uint8 mask (255 where visible wins), full size."""
    h, w = y.shape
    half = (-(-w // 2), -(-h // 2))
    act_y = cv2.resize(cv2.absdiff(y, base_y), half, interpolation=cv2.INTER_AREA)
    act_t = cv2.resize(cv2.absdiff(t, base_t), half, interpolation=cv2.INTER_AREA)
    act_y = cv2.sepFilter2D(act_y, -1, _CHOICE_KERNEL, _CHOICE_KERNEL)
    act_t = cv2.sepFilter2D(act_t, -1, _CHOICE_KERNEL, _CHOICE_KERNEL)
    wins = cv2.compare(act_y, act_t, cv2.CMP_GE)
    return cv2.resize(wins, (w, h), interpolation=cv2.INTER_NEAREST)


def compose_numpy(rgb: np.ndarray, thermal: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """``compose`` for one camera-size pair: rgb (H, W, 3) uint8, thermal (H, W) float32
    in [0, 1], decision logits (2, h, w) covering the same field of view -> (H, W, 3) uint8.
    Works in [0, 255] on planar float32 images, with OpenCV calls where numpy would make
    extra passes (the budget is ~3 ms per 640 x 480 pair on one thread)."""
    h, w = rgb.shape[:2]
    grid = (maps.shape[2], maps.shape[1])  # OpenCV sizes are (width, height)
    y8, cr, cb = cv2.split(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb))
    y = y8.astype(np.float32)
    t = cv2.multiply(thermal, 255.0, dtype=cv2.CV_32F)
    y_low = cv2.resize(y, grid, interpolation=cv2.INTER_AREA)
    t_low = cv2.resize(t, grid, interpolation=cv2.INTER_AREA)
    base_y = cv2.resize(y_low, (w, h), interpolation=cv2.INTER_LINEAR)
    base_t = cv2.resize(t_low, (w, h), interpolation=cv2.INTER_LINEAR)
    # guided filter on the coarse grid (guide in [0, 1] as in the torch version)
    g_low = (y_low + t_low) * (0.5 / 255.0)
    p = 1.0 / (1.0 + np.exp(-maps.astype(np.float32)))
    mean_i = _box_np(g_low)
    var_i = _box_np(g_low * g_low) - mean_i * mean_i + GUIDE_EPS
    guide = cv2.addWeighted(y, 0.5 / 255.0, t, 0.5 / 255.0, 0.0)
    mean_p = _box_np(p[0])
    a = (_box_np(g_low * p[0]) - mean_i * mean_p) / var_i
    b = mean_p - a * mean_i
    weight = cv2.multiply(cv2.resize(_box_np(a), (w, h), interpolation=cv2.INTER_LINEAR), guide)
    cv2.add(weight, cv2.resize(_box_np(b), (w, h), interpolation=cv2.INTER_LINEAR), dst=weight)
    np.clip(weight, 0.0, 1.0, out=weight)
    gain = cv2.resize(p[1], (w, h), interpolation=cv2.INTER_LINEAR)
    y_wins = visible_detail_wins_numpy(y, base_y, t, base_t)
    d_y, d_t = cv2.subtract(y, base_y), cv2.subtract(t, base_t)
    cv2.copyTo(d_y, y_wins, d_t)  # d_t now holds the locally stronger detail of the two
    cv2.multiply(d_t, gain, dst=d_t, scale=2.0)
    cv2.subtract(base_y, base_t, dst=base_y)
    cv2.multiply(base_y, weight, dst=base_y)
    cv2.add(base_y, base_t, dst=base_y)
    cv2.add(base_y, d_t, dst=base_y)
    fused_y = cv2.convertScaleAbs(np.maximum(base_y, 0.0, out=base_y))  # rounds, saturates
    return cv2.cvtColor(cv2.merge([fused_y, cr, cb]), cv2.COLOR_YCrCb2RGB)
