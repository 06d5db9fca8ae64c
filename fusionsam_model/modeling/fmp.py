"""FMP (Fusion Mask Prompting): fuse the two modalities' latent tokens (paper eq. 10-13).

Data flow, per image (S = model input size, g = S/16, D = latent dim, E = embed dim):

1. patch-merge each quantized latent (D, S/4, S/4) -> (E, g, g) with a 4x4 stride-4 conv
   (attention over (S/4)^2 tokens would not fit in memory at S = 1024), plus a depthwise
   3x3 conv positional encoding, so that any S works without interpolating tables;
2. cross-domain fusion unit: cross-attention both ways, RGB tokens query thermal tokens
   and thermal tokens query RGB tokens, each with pre-LayerNorm, feed-forward and
   residuals (eq. 10-11); the two results are concatenated and mixed by a 1x1 conv into
   F_init;
3. complementary fusion unit (eq. 12): our reading of "what each modality has alone" is
   the part of a modality's tokens T_m (output of step 2) that F_init does not carry,
   r_m = T_m - F_init.
   F_init queries the concatenation [r_rgb; r_th] (2 g^2 keys) in a second cross-attention
   block, giving F_c (a residual block, so F_c = F_init + what the residuals add);
4. F = conv3x3(F_init + F_c) (eq. 13).

Heads on F: the fusion mask M (1 x S/4 x S/4 logits, SAM's mask-prompt size) and the
fused image's decision maps (``composition.NUM_MAPS`` x S/4 x S/4 logits: what to take from
which camera; ``composition.compose`` makes the image from them and the cameras' own
pixels, at S for SAM and at the camera's resolution for the node). Both share a trunk that upsamples F to S/4 and adds
a 1x1 projection of the full-resolution latents, so the mask keeps the detail that the
16x16 patches lose. The trunk's S/4 features are also returned ("fine" features): the
mask decoder adds them to its upscaled embedding (an HQ-SAM-style skip), so class maps
see more than the g x g grid.

Ablation modes: "concat" replaces steps 2-4 by concatenation + convs (no attention);
"rgb" / "thermal" take one latent only and replace cross-attention by self-attention
blocks of the same depth, so capacity stays comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionsam_model.modeling.composition import NUM_MAPS
from fusionsam_model.modeling.lstg import group_norm

MODES = ("fmp", "concat", "rgb", "thermal")


@dataclass
class FMPOutput:
    features: Tensor  # (B, E, g, g) fused features F, g = S/16
    mask_logits: Tensor  # (B, 1, S/4, S/4) fusion mask M logits
    fusion_maps: Tensor  # (B, NUM_MAPS, S/4, S/4) decision logits of the fused image
    fine: Tensor  # (B, decoder_channels, S/4, S/4) trunk features for the decoder's skip


class Attention(nn.Module):
    """Multi-head attention, queries from ``x`` and keys/values from ``context``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, n, c = x.shape
        heads, head_dim = self.num_heads, c // self.num_heads
        q = self.q(x).view(b, n, heads, head_dim).transpose(1, 2)
        k, v = self.kv(context).view(b, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class CrossBlock(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x), LN(ctx)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_kv(context))
        return x + self.ff(self.norm_ff(x))


class PatchMerge(nn.Module):
    """(D, S/4, S/4) -> (E, S/16, S/16): 4x4 stride-4 conv, then depthwise-conv positions."""

    def __init__(self, latent_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.merge = nn.Conv2d(latent_dim, embed_dim, 4, stride=4)
        self.position = nn.Conv2d(embed_dim, embed_dim, 3, padding=1, groups=embed_dim)

    def forward(self, z: Tensor) -> Tensor:
        x = self.merge(z)
        return x + self.position(x)


def _tokens(x: Tensor) -> Tensor:
    return x.flatten(2).transpose(1, 2)  # (B, E, g, g) -> (B, g*g, E)


def _grid(tokens: Tensor, g: int) -> Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, g, g)


class CrossDomainFusion(nn.Module):
    """Eq. 10-11: each modality attends to the other; concat + 1x1 conv -> F_init.

    Also returns both modalities' updated tokens for the complementary unit.
    """

    def __init__(self, dim: int, num_heads: int, depth: int, mlp_ratio: float) -> None:
        super().__init__()
        self.rgb_from_th = nn.ModuleList(
            CrossBlock(dim, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.th_from_rgb = nn.ModuleList(
            CrossBlock(dim, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.mix = nn.Conv2d(2 * dim, dim, 1)

    def forward(self, rgb: Tensor, th: Tensor, g: int) -> tuple[Tensor, Tensor, Tensor]:
        for to_rgb, to_th in zip(self.rgb_from_th, self.th_from_rgb, strict=True):
            rgb, th = to_rgb(rgb, th), to_th(th, rgb)
        f_init = self.mix(torch.cat([_grid(rgb, g), _grid(th, g)], dim=1))
        return f_init, rgb, th


class ComplementaryFusion(nn.Module):
    """Eq. 12: F_init queries what each modality carries beyond F_init -> F_c."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.block = CrossBlock(dim, num_heads, mlp_ratio)

    def forward(self, f_init: Tensor, rgb: Tensor, th: Tensor) -> Tensor:
        residuals = torch.cat([rgb - f_init, th - f_init], dim=1)
        return self.block(f_init, residuals)


class FusionHeads(nn.Module):
    """Fusion-mask logits, the fused image's decision maps and the trunk features, all at
    S/4, from F (g x g) and the S/4 latents."""

    def __init__(self, embed_dim: int, skip_channels: int, channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(  # g -> S/4 in two x2 steps, like SAM's output upscaling
            nn.ConvTranspose2d(embed_dim, 2 * channels, 2, stride=2),
            group_norm(2 * channels),
            nn.GELU(),
            nn.ConvTranspose2d(2 * channels, channels, 2, stride=2),
        )
        self.skip = nn.Conv2d(skip_channels, channels, 1)
        self.trunk = nn.Sequential(
            group_norm(channels), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1), nn.GELU()
        )
        self.mask = nn.Conv2d(channels, 1, 1)
        # zero init: every pixel starts at half visible / half thermal base, detail gain 1
        self.fusion_maps = nn.Conv2d(channels, NUM_MAPS, 3, padding=1)
        nn.init.zeros_(self.fusion_maps.weight)
        nn.init.zeros_(self.fusion_maps.bias)

    def forward(self, features: Tensor, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.trunk(self.up(features) + self.skip(latents))  # (B, C, S/4, S/4)
        return self.mask(x), self.fusion_maps(x), x


class FusionMaskPrompting(nn.Module):
    """Fuses quantized RGB and thermal latents into F, the fusion mask M and the fused
    image's decision maps."""

    def __init__(
        self,
        latent_dim: int,
        embed_dim: int,
        input_size: int,
        num_heads: int = 4,
        depth: int = 1,
        mode: str = "fmp",
        mlp_ratio: float = 2.0,
        decoder_channels: int = 32,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"FusionMaskPrompting: mode must be one of {MODES}, got {mode!r}")
        if input_size % 16:
            raise ValueError(
                f"FusionMaskPrompting: input_size {input_size} must be divisible by 16"
            )
        if mode != "concat" and embed_dim % num_heads:
            raise ValueError(
                f"FusionMaskPrompting: embed_dim {embed_dim} not divisible by num_heads {num_heads}"
            )
        if depth < 1:
            raise ValueError(f"FusionMaskPrompting: depth must be >= 1, got {depth}")
        self.mode = mode
        self.latent_dim = latent_dim
        self.embed_dim = embed_dim
        self.input_size = input_size
        self.grid = input_size // 16
        uses_rgb, uses_th = mode in ("fmp", "concat", "rgb"), mode in ("fmp", "concat", "thermal")
        self.merge_rgb = PatchMerge(latent_dim, embed_dim) if uses_rgb else None
        self.merge_th = PatchMerge(latent_dim, embed_dim) if uses_th else None
        if mode == "fmp":
            self.cross = CrossDomainFusion(embed_dim, num_heads, depth, mlp_ratio)
            self.complementary = ComplementaryFusion(embed_dim, num_heads, mlp_ratio)
            self.out = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        elif mode == "concat":
            self.out = nn.Sequential(
                nn.Conv2d(2 * embed_dim, embed_dim, 1),
                nn.GELU(),
                nn.Conv2d(embed_dim, embed_dim, 3, padding=1),
            )
        else:
            self.self_blocks = nn.ModuleList(
                CrossBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)
            )
            self.out = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        num_inputs = int(uses_rgb) + int(uses_th)
        self.heads = FusionHeads(embed_dim, num_inputs * latent_dim, decoder_channels)

    def _check(self, z: Tensor | None, name: str) -> Tensor:
        if z is None:
            raise ValueError(f"FusionMaskPrompting(mode={self.mode!r}): {name} is required")
        side = self.input_size // 4
        if z.dim() != 4 or tuple(z.shape[1:]) != (self.latent_dim, side, side):
            raise ValueError(
                f"FusionMaskPrompting: {name} must be (B, {self.latent_dim}, {side}, {side}) "
                f"for input_size {self.input_size}, got {tuple(z.shape)}"
            )
        return z

    def forward(self, z_rgb: Tensor | None, z_th: Tensor | None) -> FMPOutput:
        """z_* (B, D, S/4, S/4); in "rgb"/"thermal" mode the other latent is ignored."""
        g = self.grid
        latents = []
        if self.merge_rgb is not None:
            latents.append(self._check(z_rgb, "z_rgb"))
        if self.merge_th is not None:
            latents.append(self._check(z_th, "z_th"))

        if self.mode == "fmp":
            rgb, th = _tokens(self.merge_rgb(latents[0])), _tokens(self.merge_th(latents[1]))
            f_init, rgb, th = self.cross(rgb, th, g)
            f_init_tokens = _tokens(f_init)
            f_c = _grid(self.complementary(f_init_tokens, rgb, th), g)
            features = self.out(f_init + f_c)
        elif self.mode == "concat":
            merged = [self.merge_rgb(latents[0]), self.merge_th(latents[1])]
            features = self.out(torch.cat(merged, dim=1))
        else:
            merge = self.merge_rgb if self.merge_rgb is not None else self.merge_th
            tokens = _tokens(merge(latents[0]))
            for block in self.self_blocks:
                tokens = block(tokens, tokens)
            features = self.out(_grid(tokens, g))

        mask_logits, maps, fine = self.heads(features, torch.cat(latents, dim=1))
        return FMPOutput(features=features, mask_logits=mask_logits, fusion_maps=maps, fine=fine)
