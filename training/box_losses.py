"""Weak supervision of the class maps from boxes (multiple-instance learning).

A box of class c says two things a loss can use without a mask:

* positive bags: every row and every column crossing the box contains at least one
  pixel of the object, so the highest class-c probability along each such row / column
  inside the box should be 1 (the projection idea of BoxInst, written as MIL:
  ``-log max p_c``);
* negatives: no pixel of class c lies outside the (grown) boxes of class c, for the
  classes the boxes label (person, bike, car). Other classes (road, curb ...) get no
  signal from boxes; the synthetic pixel labels keep teaching them.

Boxes are grown by 10 % of their size + 2 px per side for the negatives (the box-level
evaluation's precision rule), so a loose box edge is not penalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GROW = 0.1  # share of the box size added per side (negatives)
GROW_PX = 2.0  # plus this many input pixels per side


def _grid_box(box: torch.Tensor, cell: float, h: int, w: int) -> tuple[int, int, int, int]:
    """S-pixel box -> covering cell range on the (h, w) logit grid, at least one cell."""
    x1 = min(int(box[0] / cell), w - 1)
    y1 = min(int(box[1] / cell), h - 1)
    x2 = max(int(torch.ceil(box[2] / cell)), x1 + 1)
    y2 = max(int(torch.ceil(box[3] / cell)), y1 + 1)
    return x1, y1, min(x2, w), min(y2, h)


def box_losses(
    class_logits: torch.Tensor,
    boxes: list[torch.Tensor],
    valid: torch.Tensor,
    classes: tuple[int, ...],
    input_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """class_logits (B, C, h, w); ``boxes[i]`` (N, 6) x1 y1 x2 y2 (S pixels), class id,
    positive-bag flag; valid (B, 1, S, S); ``classes``: the ids the boxes label.
    Returns (MIL loss of the positive bags, negative loss outside the grown boxes)."""
    b, _, h, w = class_logits.shape
    cell = input_size / w
    log_p = F.log_softmax(class_logits.float(), dim=1)
    valid_grid = F.adaptive_avg_pool2d(valid.float(), (h, w)) > 0.5
    bag_terms: list[torch.Tensor] = []
    neg_sum = class_logits.new_zeros((), dtype=torch.float32)
    neg_count = 0
    for i in range(b):
        inside = {
            c: torch.zeros(h, w, dtype=torch.bool, device=class_logits.device) for c in classes
        }
        for box in boxes[i]:
            c = int(box[4])
            if c not in inside:
                continue
            x1, y1, x2, y2 = _grid_box(box[:4], cell, h, w)
            if box[5] > 0:
                region = log_p[i, c, y1:y2, x1:x2]
                bag_terms.append(-region.amax(dim=1).mean())  # rows
                bag_terms.append(-region.amax(dim=0).mean())  # columns
            bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
            grown = box[:4].clone()
            grown[0] -= GROW * bw + GROW_PX
            grown[1] -= GROW * bh + GROW_PX
            grown[2] += GROW * bw + GROW_PX
            grown[3] += GROW * bh + GROW_PX
            gx1, gy1, gx2, gy2 = _grid_box(grown.clamp(min=0.0), cell, h, w)
            inside[c][gy1:gy2, gx1:gx2] = True
        for c, mask in inside.items():
            outside = valid_grid[i, 0] & ~mask
            if outside.any():
                p = log_p[i, c][outside].exp().clamp(max=1.0 - 1e-6)
                neg_sum = neg_sum - torch.log1p(-p).sum()
                neg_count += int(outside.sum())
    mil = torch.stack(bag_terms).mean() if bag_terms else log_p.new_zeros(())
    neg = neg_sum / max(neg_count, 1)
    return mil, neg
