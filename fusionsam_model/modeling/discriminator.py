"""PatchGAN discriminator and hinge losses for stage-1 (LSTG) training, VQGAN style.

The discriminator scores overlapping patches rather than whole images, which pushes
the decoders towards sharp local texture. GroupNorm replaces BatchNorm so that the
result does not depend on the per-GPU batch size under DDP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionsam_model.modeling.lstg import group_norm


class PatchDiscriminator(nn.Module):
    """``num_layers`` stride-2 4x4 convs, then two stride-1 4x4 convs to one logit per patch."""

    def __init__(self, in_channels: int, base_channels: int = 32, num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"PatchDiscriminator: num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels = base_channels
        for i in range(1, num_layers + 1):
            out = base_channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [
                nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=False),
                group_norm(out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, S, S) -> (B, 1, h', w') patch logits."""
        return self.layers(x)


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss: 0.5 * (E[relu(1 - real)] + E[relu(1 + fake)])."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """Generator hinge loss: -E[fake]."""
    return -fake_logits.mean()


def adaptive_adversarial_weight(
    rec_loss: Tensor,
    g_loss: Tensor,
    last_layer: nn.Parameter,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> Tensor:
    """VQGAN's balance: ||d rec / d last|| / (||d g / d last|| + eps), detached, in [0, max].

    Both losses must still have their graphs (the caller backpropagates them later),
    hence ``retain_graph=True``.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + eps)
    return weight.clamp(0.0, max_weight).detach()
