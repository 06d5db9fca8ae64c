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

The bags alone are met by a *dotted* mask (one pixel per row and column is enough), and
that is what the first real-frame models learnt. BoxInst's answer is a pairwise term:
neighbouring pixels that look alike carry the same label (``pairwise_affinity_loss``; here
on the logit grid, "look alike" in RGB *and* thermal), which fills an object between its
bag maxima and keeps a dot of another class out of it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GROW = 0.1  # share of the box size added per side (negatives)
GROW_PX = 2.0  # plus this many input pixels per side
PAIR_SIGMA = 0.1  # image distance scale of the pairwise similarity (values in [0, 1])
PAIR_TAU = 0.5  # pairs at least this similar must agree ...
PAIR_MAX_DIST = PAIR_SIGMA * math.log(1.0 / PAIR_TAU)  # ... i.e. this close: exp(-d/sigma) >= tau
PAIR_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))  # each of the 8 neighbours once


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
    class_balanced: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """class_logits (B, C, h, w); ``boxes[i]`` (N, 6) x1 y1 x2 y2 (S pixels), class id,
    positive-bag flag; valid (B, 1, S, S); ``classes``: the ids the boxes label.
    Returns (MIL loss of the positive bags, negative loss outside the grown boxes).
    ``class_balanced``: the MIL loss is the mean over classes of each class's mean bag
    loss, so a rare class (msrs_dev: 50 bikes against 242 persons) weighs as much as a
    common one; otherwise the mean over all bags."""
    b, _, h, w = class_logits.shape
    cell = input_size / w
    log_p = F.log_softmax(class_logits.float(), dim=1)
    valid_grid = F.adaptive_avg_pool2d(valid.float(), (h, w)) > 0.5
    bag_terms: dict[int, list[torch.Tensor]] = {}
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
                terms = bag_terms.setdefault(c, [])
                terms.append(-region.amax(dim=1).mean())  # rows
                terms.append(-region.amax(dim=0).mean())  # columns
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
    if not bag_terms:
        mil = log_p.new_zeros(())
    elif class_balanced:
        mil = torch.stack([torch.stack(t).mean() for t in bag_terms.values()]).mean()
    else:
        mil = torch.stack([x for t in bag_terms.values() for x in t]).mean()
    neg = neg_sum / max(neg_count, 1)
    return mil, neg


def _shifted(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two (..., h - dy, w - |dx|) views of x whose pixels are (dy, dx) apart."""
    h, w = x.shape[-2:]
    a = x[..., : h - dy, max(0, -dx) : w - max(0, dx)]
    b = x[..., dy:, max(0, dx) : w - max(0, -dx)]
    return a, b


def pairwise_affinity_loss(
    class_logits: torch.Tensor, rgb: torch.Tensor, thermal: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """BoxInst's pairwise term for semantic classes, on the logit grid (B, C, h, w).

    rgb (B, 3, S, S), thermal (B, 1, S, S) in [0, 1] are averaged over each grid cell;
    two neighbouring cells are *alike* when exp(-d / sigma) >= tau, with d the distance
    of their colour (RMS over R, G, B) and thermal values combined, and alike pairs pay
    -log P(same class) = -log sum_c p_i,c p_j,c. Padding (valid (B, 1, S, S)) is left out.
    Mean over the alike pairs; 0 when there are none."""
    h, w = class_logits.shape[-2:]
    p = F.softmax(class_logits.float(), dim=1)
    image = F.adaptive_avg_pool2d(torch.cat([rgb, thermal], dim=1).float(), (h, w))
    ok = F.adaptive_avg_pool2d(valid.float(), (h, w)) > 0.5
    total = p.new_zeros(())
    count = p.new_zeros(())
    for dy, dx in PAIR_OFFSETS:  # tensors throughout: no host sync inside the training step
        ia, ib = _shifted(image, dy, dx)
        diff = (ia - ib).square()
        dist = (diff[:, :3].mean(dim=1) + diff[:, 3]).sqrt()
        oa, ob = _shifted(ok[:, 0], dy, dx)
        alike = (dist <= PAIR_MAX_DIST) & oa & ob
        pa, pb = _shifted(p, dy, dx)
        same = (pa * pb).sum(dim=1).clamp_min(1e-6)
        total = total - torch.where(alike, torch.log(same), 0.0).sum()
        count = count + alike.sum()
    return total / count.clamp_min(1.0)
