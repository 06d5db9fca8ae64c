"""Training objectives of both FusionSAM stages (DESIGN.md section 2, steps 2 and 5).

Stage 1 (``lstg``): L1 reconstruction + codebook/commitment (from the quantizer) +
perceptual + hinge adversarial. Stage 2 (``seg``): cross-entropy + Dice with the
dataset's ignore policy, presence BCE, fusion intensity/gradient loss on the fused
image and fusion-mask BCE against the labelled foreground.

Label tensors use ``IGNORE`` (255) for pixels that must not be scored: letterbox
padding and the class table's ``ignore_index`` (see ``training.data``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

IGNORE = 255  # label value for padding / ignored classes in training batches
BACKGROUND = 0  # class 0 is "unlabeled"/background in both MFNet and FMB


# --------------------------------------------------------------------------- helpers
def gray(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) or (B,1,H,W) in [0,1] -> (B,1,H,W) luminance (ITU-R BT.601)."""
    if image.shape[1] == 1:
        return image
    r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| of a one-channel image, same size (replicate padding)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=image.device)
    kernel = torch.stack([kx, kx.t()]).unsqueeze(1).to(image.dtype)  # (2,1,3,3)
    grads = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel)
    return grads.abs().sum(dim=1, keepdim=True)


# --------------------------------------------------------------------------- stage 2
def segmentation_losses(
    class_logits: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and soft Dice of (B,C,h,w) logits against (B,H,W) labels.

    Logits are upsampled to the label size (bilinear, as at inference) so the loss
    scores the same pixels mIoU does. Pixels equal to ``IGNORE`` are left out of both.
    ``class_weights`` (C,) weight the cross-entropy per class (see ``class_weights``).
    """
    logits = class_logits.float()
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    valid = labels != IGNORE
    if not bool(valid.any()):
        zero = logits.sum() * 0.0
        return zero, zero
    weight = None if class_weights is None else class_weights.to(logits.device, logits.dtype)
    ce = F.cross_entropy(logits, labels.long(), weight=weight, ignore_index=IGNORE)
    probs = logits.softmax(dim=1)
    target = F.one_hot(labels.clamp(max=num_classes - 1).long(), num_classes).permute(0, 3, 1, 2)
    mask = valid.unsqueeze(1).to(probs.dtype)
    target = target.to(probs.dtype) * mask
    probs = probs * mask
    inter = (probs * target).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    present = target.sum(dim=(0, 2, 3)) > 0  # Dice over classes in the batch
    dice = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
    dice = dice[present].mean() if bool(present.any()) else dice.mean() * 0.0
    return ce, dice


def class_weights(pixel_counts: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """Cross-entropy class weights 1 / frequency**power, normalised to mean 1 over the classes
    that occur; classes absent from the counts get weight 0 (they never appear as a target).

    Street scenes are ~90 % background, so unweighted CE first learns "background
    everywhere" and small classes (cones, bumps, people far away) come last; power 0.5
    (inverse square root) lifts them without the instability of full inverse frequency.
    Compute ``pixel_counts`` on the TRAIN split only.
    """
    counts = pixel_counts.double()
    present = counts > 0
    if not bool(present.any()):
        raise ValueError("class_weights: no labelled pixel in the counts")
    freq = counts / counts.sum()
    w = torch.zeros_like(freq)
    w[present] = freq[present].pow(-power)
    w[present] = w[present] / w[present].mean()
    return w.float()


def presence_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,H,W) labels -> (B,C) float: 1 where the class occurs among the scored pixels."""
    valid = labels != IGNORE
    onehot = F.one_hot(labels.clamp(max=num_classes - 1).long(), num_classes)
    onehot = onehot * valid.unsqueeze(-1)
    return (onehot.flatten(1, 2).sum(dim=1) > 0).float()


def presence_loss(presence_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE of the presence head against which classes the label contains."""
    target = presence_targets(labels, presence_logits.shape[1])
    return F.binary_cross_entropy_with_logits(presence_logits.float(), target)


def fusion_losses(
    fused: torch.Tensor, rgb: torch.Tensor, thermal: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Label-free terms of the fused image I_f (B,3,S,S): intensity, gradient, structure.

    Intensity: luma(I_f) follows max(luma(rgb), thermal), so the brighter (more
    informative, e.g. a warm body at night) source wins per pixel. Gradient: |Sobel(I_f)|
    follows the larger of the two sources' gradients, keeping the sharper edge of either
    camera. Structure: 1 - mean of SSIM(I_f, rgb) and SSIM(I_f, thermal) on luma, so the
    image keeps what both look like. ``valid`` (B,1,S,S) masks out letterbox padding.
    Colour is not a term: the composition keeps the visible chroma by construction.
    """
    fused_y = gray(fused.float())
    rgb_y = gray(rgb.float())
    th = thermal.float()
    target = torch.maximum(rgb_y, th)
    grad_target = torch.maximum(sobel_magnitude(rgb_y), sobel_magnitude(th))
    inten = (fused_y - target).abs()
    grad = (sobel_magnitude(fused_y) - grad_target).abs()
    structure = 1.0 - 0.5 * (ssim_map(fused_y, rgb_y) + ssim_map(fused_y, th))
    w = torch.ones_like(fused_y) if valid is None else valid.float()
    norm = w.sum().clamp(min=1.0)
    return (inten * w).sum() / norm, (grad * w).sum() / norm, (structure * w).sum() / norm


def foreground_target(
    labels: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft foreground fraction and validity at the mask size (area pooling of (B,H,W) labels).

    Foreground = any labelled non-background class, the region the fusion mask
    should prompt SAM with.
    """
    valid = (labels != IGNORE).float().unsqueeze(1)
    fg = ((labels != BACKGROUND) & (labels != IGNORE)).float().unsqueeze(1)
    valid_frac = F.adaptive_avg_pool2d(valid, size)
    fg_frac = F.adaptive_avg_pool2d(fg, size)
    target = fg_frac / valid_frac.clamp(min=1e-6)
    return target.clamp(0.0, 1.0), (valid_frac > 0.5).float()


def fusion_mask_loss(mask_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE of the fusion-mask logits (B,1,h,w) against the labelled foreground."""
    target, weight = foreground_target(labels, tuple(mask_logits.shape[-2:]))
    loss = F.binary_cross_entropy_with_logits(mask_logits.float(), target, reduction="none")
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)


# --------------------------------------------------------------------------- stage 1
def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean structural similarity with a uniform window (inputs in [0,1])."""
    return ssim_map(x, y, window).mean()


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel structural similarity with a uniform window (inputs in [0,1])."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2
    mu_x = F.avg_pool2d(F.pad(x, (pad,) * 4, mode="reflect"), window, 1)
    mu_y = F.avg_pool2d(F.pad(y, (pad,) * 4, mode="reflect"), window, 1)
    sxx = F.avg_pool2d(F.pad(x * x, (pad,) * 4, mode="reflect"), window, 1) - mu_x**2
    syy = F.avg_pool2d(F.pad(y * y, (pad,) * 4, mode="reflect"), window, 1) - mu_y**2
    sxy = F.avg_pool2d(F.pad(x * y, (pad,) * 4, mode="reflect"), window, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return num / den


class OfflinePerceptualLoss(nn.Module):
    """(1 - SSIM) + L1 of Sobel gradients: structure-aware, needs no downloaded weights."""

    name = "offline SSIM+gradient"

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        recon, target = recon.float(), target.float()
        structural = 1.0 - ssim(recon, target)
        grad = (sobel_magnitude(gray(recon)) - sobel_magnitude(gray(target))).abs().mean()
        return structural + grad


class VGGPerceptualLoss(nn.Module):
    """LPIPS-style distance on VGG16 features loaded from a user-supplied state dict.

    The file is a torchvision ``vgg16`` state dict (``features.*`` keys are used;
    classifier keys are ignored). Features at relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3 are unit-normalised over channels and compared with squared error.
    """

    LAYERS = (3, 8, 15, 22, 29)  # indices of relu1_2 ... relu5_3 in vgg16().features

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        from torchvision.models import vgg16

        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"loss.perceptual_weights: no such file {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - report which file is bad
            raise ValueError(f"loss.perceptual_weights: cannot load {path}: {exc}") from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        if not features:
            raise ValueError(
                f"loss.perceptual_weights: {path} has no 'features.*' keys; "
                "expected a torchvision vgg16 state dict"
            )
        net = vgg16(weights=None).features[: self.LAYERS[-1] + 1]
        missing, unexpected = net.load_state_dict(
            {k: v for k, v in features.items() if int(k.split(".")[0]) <= self.LAYERS[-1]},
            strict=False,
        )
        if missing:
            raise ValueError(f"loss.perceptual_weights: {path} lacks VGG16 keys {missing[:4]}...")
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.name = f"VGG16 features from {path}"

    def train(self, mode: bool = True) -> VGGPerceptualLoss:  # the VGG stays in eval mode
        super().train(mode)
        self.net.eval()
        return self

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x.float() - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.net):
            x = layer(x)
            if i in self.LAYERS:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = recon.new_zeros((), dtype=torch.float32)
        for a, b in zip(self._features(recon), self._features(target), strict=True):
            total = total + (a - b).pow(2).sum(dim=1).mean()
        return total


def build_perceptual_loss(weights_path: str | None) -> nn.Module:
    """VGG perceptual loss when a weights file is configured, else the offline loss; logs which."""
    loss: nn.Module = VGGPerceptualLoss(weights_path) if weights_path else OfflinePerceptualLoss()
    log.info("perceptual loss: %s", loss.name)
    return loss
