"""Pre- and post-processing shared by every backend (torch, onnxruntime, tensorrt).

The networks only ever see S x S tensors in [0, 1]; everything that depends on the
camera (dtype, thermal range, image size, aspect ratio) is handled here so that the
backends stay identical graphs and their outputs stay comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

ThermalRange = tuple[float, float]


@dataclass(frozen=True)
class Letterbox:
    """How an H x W image was scaled and padded into S x S (padding is bottom/right)."""

    scale: float  # S-pixels per input pixel
    pad: tuple[int, int]  # (pad_bottom, pad_right) in S-pixels
    original_hw: tuple[int, int]
    size: int  # S

    @property
    def resized_hw(self) -> tuple[int, int]:
        """Size of the image content inside the S x S square."""
        return self.size - self.pad[0], self.size - self.pad[1]


def letterbox_for(hw: tuple[int, int], size: int) -> Letterbox:
    """Longest side to S, aspect ratio kept, content at the top-left."""
    h, w = int(hw[0]), int(hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    scale = size / max(h, w)
    rh, rw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    return Letterbox(scale=scale, pad=(size - rh, size - rw), original_hw=(h, w), size=size)


def _thermal_array(thermal: np.ndarray) -> np.ndarray:
    t = np.asarray(thermal)
    if t.ndim == 3 and t.shape[2] == 1:
        t = t[:, :, 0]
    if t.ndim != 2:
        raise ValueError(f"thermal image must be (H, W) or (H, W, 1), got shape {t.shape}")
    if not (np.issubdtype(t.dtype, np.integer) or np.issubdtype(t.dtype, np.floating)):
        raise ValueError(f"thermal image dtype {t.dtype} not supported (uint8, uint16, float)")
    return t


def _percentiles(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``np.percentile`` (linear method) of a 1-D array; uint8/uint16 through a histogram,
    which gives the same order statistics in O(n) without sorting."""
    if values.dtype not in (np.uint8, np.uint16):
        lo, hi = np.percentile(values.astype(np.float32, copy=False), percentiles)
        return float(lo), float(hi)
    cum = np.cumsum(np.bincount(values))
    n = int(cum[-1])
    out = []
    for p in percentiles:
        pos = p / 100.0 * (n - 1)
        i = int(np.floor(pos))
        a = float(np.searchsorted(cum, i, side="right"))
        b = float(np.searchsorted(cum, min(i + 1, n - 1), side="right"))
        out.append(a + (b - a) * (pos - i))
    return out[0], out[1]


def thermal_levels(
    t: np.ndarray,
    thermal_range: ThermalRange | None,
    percentiles: tuple[float, float],
    finite: np.ndarray | None,
) -> tuple[float, float] | None:
    """The (lo, hi) raw values that map to 0 and 1: the fixed range, or the per-frame
    percentiles of the sensor's own (finite) pixels; None when no pixel is finite."""
    if thermal_range is not None:
        lo, hi = float(thermal_range[0]), float(thermal_range[1])
        if not hi > lo:
            raise ValueError(f"thermal_range must be (lo, hi) with lo < hi, got {thermal_range}")
        return lo, hi
    # Every other pixel in each direction: same percentiles to a fraction of a grey
    # level, at a quarter of the cost.
    sub = t[::2, ::2]
    valid = sub.ravel() if finite is None else sub[finite[::2, ::2]]
    if valid.size == 0:
        return None
    lo, hi = _percentiles(valid, percentiles)
    if hi - lo < 1e-6:  # flat frame: keep it flat instead of amplifying noise
        hi = lo + 1.0
    return lo, hi


def frame_levels(
    thermal: np.ndarray,
    thermal_range: ThermalRange | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> ThermalRange | None:
    """The (lo, hi) levels ``normalize_thermal`` uses for this frame, measured once so the
    model input and the published fused image share them (the percentiles are the costly
    part: ~0.2 ms per 640 x 480 frame)."""
    t = _thermal_array(thermal)
    return thermal_levels(t, thermal_range, percentiles, _finite_mask(t))


def _finite_mask(t: np.ndarray) -> np.ndarray | None:
    """Mask of finite pixels, or None when all are (always for integer images)."""
    if np.issubdtype(t.dtype, np.integer):
        return None
    finite = np.isfinite(t)
    return None if bool(finite.all()) else finite


def normalize_thermal(
    thermal: np.ndarray,
    thermal_range: ThermalRange | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """Thermal (H, W) of any dtype -> float32 in [0, 1].

    A fixed ``(lo, hi)`` range keeps brightness comparable between frames (what a
    radiometric camera wants); ``None`` uses a per-frame percentile gain (what an
    AGC-less 16-bit camera needs). NaN/inf pixels (dead pixels, float drivers) become 0.
    """
    t = _thermal_array(thermal)
    finite = _finite_mask(t)
    levels = thermal_levels(t, thermal_range, percentiles, finite)
    if levels is None:
        return np.zeros(t.shape, np.float32)
    lo, hi = levels
    if t.dtype == np.uint8:  # the same arithmetic on the 256 possible values, then a lookup
        table = (np.arange(256, dtype=np.float32) - lo) * (1.0 / (hi - lo))
        return cv2.LUT(t, np.clip(table, 0.0, 1.0).astype(np.float32))
    out = (t.astype(np.float32, copy=False) - lo) * (1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    if finite is not None:
        out[~finite] = 0.0
    return out


def resize_thermal(
    thermal: np.ndarray,
    box: Letterbox,
    thermal_range: ThermalRange | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """Thermal (H, W) -> (S, S, 1) float32 in [0, 1], letterboxed: the same values as
    ``_resize_pad(normalize_thermal(...))`` (up to float rounding), cheaper.

    The levels still come from the full-resolution sensor pixels; the raw image is clipped
    to them at full size (clipping commutes with the affine map, not with the resize),
    and the affine map is applied after the resize (it commutes with the resize, whose
    weights sum to 1), on S x S instead of H x W pixels.
    """
    t = _thermal_array(thermal)
    finite = _finite_mask(t)
    levels = thermal_levels(t, thermal_range, percentiles, finite)
    out = np.zeros((box.size, box.size, 1), np.float32)
    if levels is None:
        return out
    lo, hi = levels
    raw = t.astype(np.float32, copy=True)
    if finite is not None:
        raw[~finite] = lo  # -> 0, like normalize_thermal
    np.clip(raw, lo, hi, out=raw)
    rh, rw = box.resized_hw
    small = cv2.resize(raw, (rw, rh), interpolation=cv2.INTER_LINEAR)
    small -= lo
    small *= 1.0 / (hi - lo)
    np.clip(small, 0.0, 1.0, out=small)
    out[:rh, :rw, 0] = small
    return out


def rgb_to_float(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 in [0, 1]; float input is taken as already in [0, 1]."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"rgb image must be (H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) * (1.0 / 255.0)
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0, 1)
    raise ValueError(f"rgb image dtype {a.dtype} not supported (uint8 or float in [0, 1])")


def rgb_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) uint8, or float in [0, 1] -> uint8 (what OpenCV's colour code wants)."""
    a = np.asarray(rgb)
    if a.dtype == np.uint8:
        return a
    return (rgb_to_float(a) * 255.0 + 0.5).astype(np.uint8)


def _resize_pad(img: np.ndarray, box: Letterbox) -> np.ndarray:
    rh, rw = box.resized_hw
    resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    out = np.zeros((box.size, box.size, resized.shape[2]), np.float32)
    out[:rh, :rw] = resized
    return out


def preprocess_pair(
    rgb: np.ndarray,
    thermal: np.ndarray,
    size: int,
    thermal_range: ThermalRange | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> tuple[np.ndarray, np.ndarray, Letterbox]:
    """One pair -> rgb (3, S, S), thermal (1, S, S) float32 in [0, 1] and its Letterbox."""
    rgb = np.asarray(rgb)
    thermal = np.asarray(thermal)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb image must be (H, W, 3), got shape {rgb.shape}")
    if rgb.shape[:2] != thermal.shape[:2]:
        raise ValueError(
            f"rgb {rgb.shape[:2]} and thermal {thermal.shape[:2]} images must have the same H x W"
        )
    box = letterbox_for(rgb.shape[:2], size)
    # Resize uint8 first (cheaper), then convert; the thermal gain is measured on the
    # sensor's own pixels, then applied after the resize (see resize_thermal).
    rh, rw = box.resized_hw
    if rgb.dtype == np.uint8:
        small = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_LINEAR)
        rgb_sq = np.zeros((size, size, 3), np.float32)
        rgb_sq[:rh, :rw] = small.astype(np.float32) * (1.0 / 255.0)
    else:
        rgb_sq = _resize_pad(rgb_to_float(rgb), box)
    th_sq = resize_thermal(thermal, box, thermal_range, percentiles)
    return rgb_sq.transpose(2, 0, 1), th_sq.transpose(2, 0, 1), box


def preprocess_batch(
    rgbs: Sequence[np.ndarray],
    thermals: Sequence[np.ndarray],
    size: int,
    thermal_range: ThermalRange | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    levels: Sequence[ThermalRange | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[Letterbox]]:
    """Pairs of any sizes -> rgb (B, 3, S, S), thermal (B, 1, S, S) tensors and letterboxes.
    ``levels``: each frame's ``frame_levels`` when the caller already measured them."""
    if len(rgbs) != len(thermals):
        raise ValueError(f"got {len(rgbs)} rgb images but {len(thermals)} thermal images")
    if len(rgbs) == 0:
        raise ValueError("empty batch")
    ranges = [thermal_range] * len(rgbs) if levels is None else levels
    items = [
        preprocess_pair(r, t, size, lv if lv is not None else thermal_range, percentiles)
        for r, t, lv in zip(rgbs, thermals, ranges, strict=True)
    ]
    rgb = torch.from_numpy(np.stack([i[0] for i in items]))
    th = torch.from_numpy(np.stack([i[1] for i in items]))
    return rgb, th, [i[2] for i in items]


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def maps_over_image(maps: torch.Tensor | np.ndarray, box: Letterbox) -> np.ndarray:
    """(K, s, s) maps of the letterboxed input -> float32 (K, h, w): only the cells that
    cover the image (a cell partly over the padding counts), as the camera-size
    composition (``composition.compose_numpy``) reads them."""
    a = _as_numpy(maps)
    cell = box.size // a.shape[-1]
    rh, rw = box.resized_hw
    return np.ascontiguousarray(a[:, : -(-rh // cell), : -(-rw // cell)])


def unletterbox_logits(logits: torch.Tensor | np.ndarray, box: Letterbox) -> np.ndarray:
    """(C, s, s) logits at S/4 or S -> (H, W, C) float32 at the original size.

    Bilinear (half-pixel centres, like torch's align_corners=False) with cv2: on a CPU it
    is ~20x faster than F.interpolate for 9 x 480 x 640 and gives the same values.
    """
    a = _as_numpy(logits)
    if a.ndim != 3:
        raise ValueError(f"expected (C, s, s) logits, got shape {a.shape}")
    f = a.shape[-1] / box.size
    rh, rw = box.resized_hw
    ch, cw = max(1, round(rh * f)), max(1, round(rw * f))
    crop = np.ascontiguousarray(a[:, :ch, :cw].transpose(1, 2, 0))
    h, w = box.original_hw
    out = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, a.shape[0])


def _linear_source(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2 INTER_LINEAR (half-pixel centres) source of each output pixel: the lower source
    index (may be -1 or n_in - 1 at the borders) and the weight of the upper one."""
    s = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    lower = np.floor(s)
    return lower.astype(np.int64), (s - lower).astype(np.float32)


def resized_argmax(logits: torch.Tensor | np.ndarray, box: Letterbox) -> np.ndarray:
    """(C, s, s) logits -> (H, W) uint8 labels: the argmax of the bilinearly resized logits
    (``unletterbox_logits(...).argmax(-1)``) without resizing all C planes to H x W.

    A bilinear value is a convex combination of 4 source cells, so where those 4 cells
    have the same argmax class it wins at every pixel between them (it is >= every other
    class at each cell). Those pixels take the low-resolution argmax; only pixels whose
    cells disagree (class borders, ~13 % of a 1080p frame) get the exact value, from
    cv2's horizontal pass and the vertical weights. Same labels up to float rounding of
    exact ties.
    """
    a = _as_numpy(logits)
    if a.ndim != 3:
        raise ValueError(f"expected (C, s, s) logits, got shape {a.shape}")
    if a.shape[0] > 255:
        raise ValueError(f"at most 255 classes fit uint8 labels, got {a.shape[0]}")
    f = a.shape[-1] / box.size
    rh, rw = box.resized_hw
    ch, cw = max(1, round(rh * f)), max(1, round(rw * f))
    crop = np.ascontiguousarray(a[:, :ch, :cw].transpose(1, 2, 0))  # (ch, cw, C)
    low = np.pad(crop.argmax(-1).astype(np.uint8), 1, mode="edge")  # (ch + 2, cw + 2)
    corner = low[:-1, :-1]
    same = (corner == low[1:, :-1]) & (corner == low[:-1, 1:]) & (corner == low[1:, 1:])
    ambiguous = np.uint8(255)
    cell = np.where(same, corner, ambiguous)  # (ch + 1, cw + 1): cell i spans sources i-1, i
    h, w = box.original_hw
    y0, wy = _linear_source(h, ch)
    x0, _ = _linear_source(w, cw)
    cell_x = cell[:, np.clip(x0 + 1, 0, cw)]  # (ch + 1, W)
    labels = np.empty((h, w), np.uint8)
    horizontal = None
    starts = np.flatnonzero(np.diff(y0, prepend=y0[0] - 1))  # rows sharing a source pair
    for start, end in zip(starts, [*starts[1:], h], strict=True):
        row = cell_x[min(max(y0[start] + 1, 0), ch)]
        labels[start:end] = row
        cols = np.flatnonzero(row == ambiguous)
        if cols.size == 0:
            continue
        if horizontal is None:  # the exact horizontal pass, (ch, W, C)
            horizontal = cv2.resize(crop, (w, ch), interpolation=cv2.INTER_LINEAR)
            horizontal = horizontal.reshape(ch, w, a.shape[0])
        top = horizontal[min(max(y0[start], 0), ch - 1), cols]  # (n, C)
        bottom = horizontal[min(max(y0[start] + 1, 0), ch - 1), cols]
        beta = wy[start:end, None, None]
        values = top[None] * (1.0 - beta) + bottom[None] * beta  # (rows, n, C)
        labels[start:end, cols] = values.argmax(-1)
    return labels


def unletterbox_labels(
    logits: torch.Tensor | np.ndarray, box: Letterbox, return_probs: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """(C, s, s) class logits -> (H, W) uint8 ids (argmax after bilinear resize) and,
    when asked, (C, H, W) float32 softmax probabilities."""
    if not return_probs:
        return resized_argmax(logits, box), None
    full = unletterbox_logits(logits, box)
    labels = full.argmax(-1).astype(np.uint8)
    e = np.exp(full - full.max(-1, keepdims=True))
    e /= e.sum(-1, keepdims=True)
    probs = np.ascontiguousarray(e.transpose(2, 0, 1), dtype=np.float32)
    return labels, probs
