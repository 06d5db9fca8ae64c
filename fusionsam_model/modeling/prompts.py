"""Sparse SAM prompts derived from the predicted fusion mask only (never from labels).

The paper prompts SAM with "10-point mask prompts and 1-box mask prompt". We take the
points at the K strongest local maxima of the fusion-mask logits and the box around
the pixels where sigmoid(M) > 0.5. Everything is batched tensor ops (max-pool, topk,
where, min/max) with no Python loop over data, so it exports to ONNX inside the
decoder graph.

Point labels: 1 (foreground) for a peak whose logit is > 0, -1 ("not a point", SAM's
padding label, which the prompt encoder embeds as ``not_a_point_embed``) otherwise.
A weak peak is not evidence of background, so it is ignored rather than negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

PEAK_WINDOW = 5  # NMS neighbourhood in mask pixels (S/4 grid): peaks at least ~2 px apart


@dataclass
class SparsePrompts:
    """Points (B, K, 2) as (x, y) in S-pixel coordinates, labels (B, K), boxes (B, 4) XYXY."""

    points: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor | None


def peak_points(
    mask_logits: torch.Tensor, input_size: int, num_points: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """K strongest local maxima of (B, 1, m, m) logits -> points (B, K, 2), labels (B, K)."""
    b, _, m, w = mask_logits.shape
    logits = mask_logits.float()
    pooled = F.max_pool2d(logits, PEAK_WINDOW, stride=1, padding=PEAK_WINDOW // 2)
    is_peak = logits >= pooled
    # Non-peaks sink below every peak but stay finite so topk ordering is defined.
    floor = logits.amin(dim=(2, 3), keepdim=True) - 1.0
    score = torch.where(is_peak, logits, floor).flatten(1)
    k = min(num_points, m * w)
    top, idx = torch.topk(score, k, dim=1)
    stride = input_size / m
    xs = (idx % w).float() * stride + (stride - 1.0) / 2.0  # pixel centre in S-pixel units
    ys = torch.div(idx, w, rounding_mode="floor").float() * stride + (stride - 1.0) / 2.0
    points = torch.stack([xs, ys], dim=-1)
    real_peak = torch.gather(is_peak.flatten(1), 1, idx)
    labels = torch.where(real_peak & (top > 0), 1.0, -1.0)
    return points, labels


def mask_box(mask_logits: torch.Tensor, input_size: int) -> torch.Tensor:
    """Box (B, 4) XYXY in S-pixels around sigmoid(M) > 0.5; the whole image when empty."""
    _, _, m, w = mask_logits.shape
    fg = mask_logits[:, 0] > 0
    cols = fg.any(dim=1)  # (B, w)
    rows = fg.any(dim=2)  # (B, m)
    xr = torch.arange(w, device=mask_logits.device, dtype=torch.float32)
    yr = torch.arange(m, device=mask_logits.device, dtype=torch.float32)
    big = torch.tensor(1e9, device=mask_logits.device)
    x0 = torch.where(cols, xr, big).amin(dim=1)
    x1 = torch.where(cols, xr, -big).amax(dim=1)
    y0 = torch.where(rows, yr, big).amin(dim=1)
    y1 = torch.where(rows, yr, -big).amax(dim=1)
    stride = input_size / m
    box = torch.stack([x0 * stride, y0 * stride, (x1 + 1) * stride - 1, (y1 + 1) * stride - 1], 1)
    whole = torch.tensor([0.0, 0.0, input_size - 1.0, input_size - 1.0], device=box.device)
    empty = ~cols.any(dim=1, keepdim=True)
    return torch.where(empty, whole.expand_as(box), box)


def prompts_from_mask(
    mask_logits: torch.Tensor, input_size: int, num_points: int = 10, use_box: bool = True
) -> SparsePrompts:
    """Points and box for each image of the batch, from its own fusion-mask logits."""
    if mask_logits.ndim != 4 or mask_logits.shape[1] != 1:
        raise ValueError(f"mask_logits must be (B, 1, m, m), got {tuple(mask_logits.shape)}")
    points, labels = peak_points(mask_logits, input_size, num_points)
    boxes = mask_box(mask_logits, input_size) if use_box else None
    return SparsePrompts(points=points, labels=labels, boxes=boxes)
