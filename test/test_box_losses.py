"""The weak box losses: MIL bags, negatives outside the grown boxes, the pairwise term."""

from __future__ import annotations

import torch

from training.box_losses import box_losses, pairwise_affinity_loss

S, GRID, C = 64, 16, 4  # input size, logit grid, classes (0 background, 1..3 boxed)
CELL = S // GRID


def _logits(labels: torch.Tensor, confidence: float = 8.0) -> torch.Tensor:
    """(h, w) class ids -> (1, C, h, w) logits that pick them with the given margin."""
    return (torch.nn.functional.one_hot(labels, C).permute(2, 0, 1)[None].float()) * confidence


def _images(thermal_square: tuple[int, int, int, int] | None = None):
    """Grey RGB and a thermal image with one warm square (grid cells x1, y1, x2, y2)."""
    rgb = torch.full((1, 3, S, S), 0.4)
    thermal = torch.full((1, 1, S, S), 0.2)
    if thermal_square is not None:
        x1, y1, x2, y2 = (v * CELL for v in thermal_square)
        thermal[..., y1:y2, x1:x2] = 0.9
    return rgb, thermal, torch.ones(1, 1, S, S)


def test_box_losses_reward_a_filled_box_and_punish_the_class_outside():
    labels = torch.zeros(GRID, GRID, dtype=torch.long)
    labels[4:8, 4:8] = 2
    box = torch.tensor([[4 * CELL, 4 * CELL, 8 * CELL, 8 * CELL, 2, 1.0]])
    mil, neg = box_losses(_logits(labels), [box], torch.ones(1, 1, S, S), (1, 2, 3), S)
    assert mil < 0.01 and neg < 0.01
    shifted = torch.zeros(GRID, GRID, dtype=torch.long)
    shifted[10:14, 10:14] = 2  # the object painted where no box of its class is
    mil2, neg2 = box_losses(_logits(shifted), [box], torch.ones(1, 1, S, S), (1, 2, 3), S)
    assert mil2 > 1.0 and neg2 > 10 * neg


def test_pairwise_term_penalises_the_dotted_mask_the_bags_accept():
    rgb, thermal, valid = _images((4, 4, 12, 12))
    filled = torch.zeros(GRID, GRID, dtype=torch.long)
    filled[4:12, 4:12] = 2
    dotted = filled.clone()
    dotted[4:12:2, 4:12:2] = 3  # another class every other cell inside the object
    dotted[5:12:2, 5:12:2] = 3
    box = torch.tensor([[4 * CELL, 4 * CELL, 12 * CELL, 12 * CELL, 2, 1.0]])
    bags_filled, _ = box_losses(_logits(filled), [box], valid, (1, 2, 3), S)
    bags_dotted, _ = box_losses(_logits(dotted), [box], valid, (1, 2, 3), S)
    assert abs(float(bags_dotted - bags_filled)) < 0.01  # the MIL bags cannot tell them apart
    pair_filled = pairwise_affinity_loss(_logits(filled), rgb, thermal, valid)
    pair_dotted = pairwise_affinity_loss(_logits(dotted), rgb, thermal, valid)
    assert pair_filled < 0.01 and pair_dotted > 0.5


def test_pairwise_term_lets_the_class_change_at_an_image_edge_only():
    rgb, thermal, valid = _images((4, 4, 12, 12))
    at_edge = torch.zeros(GRID, GRID, dtype=torch.long)
    at_edge[4:12, 4:12] = 2  # the class boundary follows the warm square's edge
    off_edge = torch.zeros(GRID, GRID, dtype=torch.long)
    off_edge[4:12, 4:8] = 2  # ... or cuts through the square
    assert pairwise_affinity_loss(_logits(at_edge), rgb, thermal, valid) < 0.01
    assert pairwise_affinity_loss(_logits(off_edge), rgb, thermal, valid) > 0.1


def test_pairwise_term_ignores_padding_and_has_gradients():
    rgb, thermal, valid = _images()
    labels = torch.zeros(GRID, GRID, dtype=torch.long)
    labels[:, 8:] = 1  # a class change inside a uniform image ...
    valid[..., :, 8 * CELL :] = 0  # ... where the right half is letterbox padding
    logits = _logits(labels).requires_grad_()
    loss = pairwise_affinity_loss(logits, rgb, thermal, valid)
    assert loss < 0.01
    noisy = (torch.randn(1, C, GRID, GRID)).requires_grad_()
    pairwise_affinity_loss(noisy, rgb, thermal, torch.ones(1, 1, S, S)).backward()
    assert noisy.grad is not None and noisy.grad.abs().sum() > 0


def test_class_balanced_bags_weigh_a_rare_class_like_a_common_one():
    labels = torch.zeros(GRID, GRID, dtype=torch.long)
    labels[0:4, 0:4] = 2  # four found persons, one missed bike
    labels[0:4, 6:10] = 2
    labels[6:10, 0:4] = 2
    labels[6:10, 6:10] = 2
    cells = [(0, 0), (6, 0), (0, 6), (6, 6)]
    boxes = [[x * CELL, y * CELL, (x + 4) * CELL, (y + 4) * CELL, 2, 1.0] for x, y in cells]
    boxes.append([12 * CELL, 12 * CELL, 16 * CELL, 16 * CELL, 3, 1.0])
    args = (_logits(labels), [torch.tensor(boxes)], torch.ones(1, 1, S, S), (1, 2, 3), S)
    plain, _ = box_losses(*args)
    balanced, _ = box_losses(*args, class_balanced=True)
    missed = 8.0  # -log p of the missed class under these logits, about the margin
    assert abs(float(plain) - missed / 5) < 0.1  # one bag in five
    assert abs(float(balanced) - missed / 2) < 0.1  # one class in two
