"""SAM's image encoder, prompt encoder and mask decoder, adapted to C semantic classes.

We build segment_anything's own modules (so the official checkpoints load key for
key) but run our own decoder forward: the stock ``MaskDecoder.predict_masks`` repeats
the image embedding once per prompt (one image, many prompts); here every image of a
batch has exactly one prompt set, so the batch dimension is shared and nothing is
repeated. The decoder has C mask tokens (``num_multimask_outputs = C - 1``), one per
class, so its C low-res maps are the class logits ("full-fledged output tokens").
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn

from fusionsam_model.modeling.config import PATCH_SIZE, ModelConfig
from fusionsam_model.modeling.prompts import SparsePrompts


def build_image_encoder(cfg: ModelConfig) -> ImageEncoderViT:
    """ViT sized for S: positional embeddings and global rel-pos tables are built at g = S/16."""
    return ImageEncoderViT(
        img_size=cfg.input_size,
        patch_size=PATCH_SIZE,
        embed_dim=cfg.encoder_embed_dim,
        depth=cfg.encoder_depth,
        num_heads=cfg.encoder_num_heads,
        mlp_ratio=cfg.encoder_mlp_ratio,
        out_chans=cfg.prompt_embed_dim,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=cfg.encoder_window_size,
        global_attn_indexes=cfg.encoder_global_attn_indexes,
    )


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, g0, g0, E) absolute positional embedding -> (1, g, g, E), bicubic like ViTDet."""
    if pos_embed.shape[1] == grid and pos_embed.shape[2] == grid:
        return pos_embed
    x = pos_embed.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(grid, grid), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).to(pos_embed.dtype)


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """(L0, C) relative-position table -> (length, C), linear (as segment_anything does at run time)."""
    if rel_pos.shape[0] == length:
        return rel_pos
    x = rel_pos.float().T[None]  # (1, C, L0)
    x = F.interpolate(x, size=length, mode="linear", align_corners=False)
    return x[0].T.contiguous().to(rel_pos.dtype)


def fourier_pe(pe_layer: nn.Module, coords01: torch.Tensor) -> torch.Tensor:
    """SAM's random-Fourier positional encoding of [0, 1] coordinates, always in fp32.

    Same maths as ``PositionEmbeddingRandom._pe_encoding``; fp32 because in fp16/bf16 an
    S-pixel coordinate loses whole pixels and SAM's own code fails on mixed dtypes.
    """
    gaussian = pe_layer.positional_encoding_gaussian_matrix.float()
    c = (2.0 * coords01.float() - 1.0) @ gaussian
    c = 2.0 * math.pi * c
    return torch.cat([torch.sin(c), torch.cos(c)], dim=-1)


def dense_pe(pe_layer: nn.Module, grid: int) -> torch.Tensor:
    """(1, E, g, g) encoding of the embedding-grid cell centres (``get_dense_pe``, fp32)."""
    centres = (
        torch.arange(grid, device=pe_layer.positional_encoding_gaussian_matrix.device) + 0.5
    ) / grid
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return fourier_pe(pe_layer, torch.stack([xs, ys], dim=-1)).permute(2, 0, 1)[None]


class FineSkip(nn.Module):
    """HQ-SAM-style skip: FMP's S/4 trunk features -> the decoder's upscaled-embedding width.

    SAM's class maps are a product of per-class hypernetwork vectors with an embedding
    upscaled from g x g; at small S (g = 16-20) thin or small classes (bumps, cones,
    people far away) fall between grid cells. Adding these fine features before the
    product gives every S/4 cell its own evidence. The input comes from the fusion
    front (predicted, never labels), so the prompt contract is unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.GroupNorm(next(g for g in (8, 4, 2, 1) if out_channels % g == 0), out_channels),
            nn.GELU(),
            nn.Conv2d(out_channels, out_channels, 1),
        )

    def forward(self, fine: torch.Tensor) -> torch.Tensor:
        return self.proj(fine)


def _tracing() -> bool:
    """Inside torch.jit / torch.compile / torch.export tracing (no Python-side caches there)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def batched_hypernetwork(
    class_tokens: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """C per-class MLPs (SAM's ``output_hypernetworks_mlps``) in one batched matrix product
    per layer: class_tokens (B, C, E), layers [(W (C, E_in, E_out), b (C, 1, E_out))] ->
    (B, C, E_out); ReLU between layers like SAM's MLP."""
    x = class_tokens.transpose(0, 1)  # (C, B, E)
    for i, (weight, bias) in enumerate(layers):
        x = torch.baddbmm(bias.to(x.dtype), x, weight.to(x.dtype))
        if i < len(layers) - 1:
            x = F.relu(x)
    return x.transpose(0, 1)


class SamDecoder(nn.Module):
    """Prompt encoder + C-token mask decoder + class-presence MLP, batched per image.

    What does not depend on the frame (positional encoding of the grid, the output tokens,
    the stacked hypernetwork weights) is built once and reused while the weights it comes
    from are unchanged (checked by tensor identity and version counter) and no gradient is
    wanted; training and tracing build it in the graph as before.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        g = cfg.grid_size
        e = cfg.prompt_embed_dim
        self.input_size = cfg.input_size
        self.num_classes = cfg.num_classes
        self.prompt_encoder = PromptEncoder(
            embed_dim=e,
            image_embedding_size=(g, g),
            input_image_size=(cfg.input_size, cfg.input_size),
            mask_in_chans=cfg.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder(
            transformer_dim=e,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=e,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_heads,
            ),
            num_multimask_outputs=cfg.num_classes - 1,
            iou_head_hidden_dim=e,
        )
        # SAM's IoU head scores multimask candidates; with one mask per class it has no
        # role, and the presence head below replaces it. The IoU token stays: it is part
        # of the transformer's token set in the official weights.
        del self.mask_decoder.iou_prediction_head
        self.presence_head = nn.Sequential(
            nn.Linear(e, cfg.presence_hidden_dim),
            nn.ReLU(),
            nn.Linear(cfg.presence_hidden_dim, 1),
        )
        self.fine_skip = FineSkip(cfg.fmp_decoder_channels, e // 8)  # e // 8: upscaled width
        self._constants_cache: tuple[tuple, dict[str, object]] | None = None

    def _constant_sources(self) -> list[torch.Tensor]:
        dec, pe_enc = self.mask_decoder, self.prompt_encoder
        sources = [
            pe_enc.pe_layer.positional_encoding_gaussian_matrix,
            dec.iou_token.weight,
            dec.mask_tokens.weight,
            pe_enc.point_embeddings[2].weight,
            pe_enc.point_embeddings[3].weight,
        ]
        for mlp in dec.output_hypernetworks_mlps:
            for layer in mlp.layers:
                sources += [layer.weight, layer.bias]
        return sources

    def _build_constants(self, grid: int) -> dict[str, object]:
        dec, pe_enc = self.mask_decoder, self.prompt_encoder
        mlps = dec.output_hypernetworks_mlps
        layers = [
            (
                torch.stack([m.layers[i].weight.t() for m in mlps]),  # (C, E_in, E_out)
                torch.stack([m.layers[i].bias for m in mlps])[:, None, :],  # (C, 1, E_out)
            )
            for i in range(mlps[0].num_layers)
        ]
        return {
            "grid": grid,
            "dense_pe": dense_pe(pe_enc.pe_layer, grid),
            "tokens_out": torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0),
            "box_embed": torch.cat(
                [pe_enc.point_embeddings[2].weight, pe_enc.point_embeddings[3].weight], 0
            ),
            "hyper_layers": layers,
        }

    def constants(self, grid: int) -> dict[str, object]:
        """Frame-independent tensors of the forward pass (see the class docstring)."""
        if torch.is_grad_enabled() or _tracing():
            return self._build_constants(grid)
        key = (grid, *((id(t), t._version) for t in self._constant_sources()))
        cached = self._constants_cache
        if cached is None or cached[0] != key:
            cached = (key, self._build_constants(grid))
            self._constants_cache = cached
        return cached[1]

    def embed_sparse(
        self,
        prompts: SparsePrompts | None,
        batch: int,
        box_embed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Points and box -> (B, N, E) tokens; ``torch.where`` instead of SAM's boolean
        index assignment so the graph exports to ONNX. ``box_embed``: the two corner
        embeddings (2, E) when already built."""
        pe_enc = self.prompt_encoder
        e = pe_enc.embed_dim
        weight = pe_enc.point_embeddings[0].weight
        if prompts is None:
            return weight.new_zeros((batch, 0, e))
        s = float(self.input_size)
        pts = (prompts.points + 0.5) / s
        lab = prompts.labels[..., None]
        pe = fourier_pe(pe_enc.pe_layer, pts).to(weight.dtype)
        not_point = pe_enc.not_a_point_embed.weight
        neg = pe_enc.point_embeddings[0].weight
        pos = pe_enc.point_embeddings[1].weight
        point_tokens = torch.where(
            lab == -1, not_point, pe + torch.where(lab == 1, pos, neg).to(pe.dtype)
        )
        if prompts.boxes is None:  # SAM pads points-only prompts with one "not a point"
            box_tokens = not_point[None].expand(batch, 1, e).to(pe.dtype)
        else:
            corners = (prompts.boxes.reshape(-1, 2, 2) + 0.5) / s
            corner_pe = fourier_pe(pe_enc.pe_layer, corners).to(weight.dtype)
            if box_embed is None:
                box_embed = torch.cat(
                    [pe_enc.point_embeddings[2].weight, pe_enc.point_embeddings[3].weight], 0
                )
            box_tokens = corner_pe + box_embed
        return torch.cat([point_tokens, box_tokens], dim=1).to(weight.dtype)

    def embed_dense(self, mask_logits: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Fusion-mask logits (B, 1, S/4, S/4) -> (B, E, g, g); SAM's no-mask token when absent."""
        pe_enc = self.prompt_encoder
        if mask_logits is not None:
            return pe_enc.mask_downscaling(mask_logits)
        g = pe_enc.image_embedding_size
        return pe_enc.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, g[0], g[1])

    def forward(
        self,
        image_embedding: torch.Tensor,
        mask_logits: torch.Tensor | None,
        prompts: SparsePrompts | None,
        fine: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, E, g, g) embedding + one prompt set per image (+ optional fine features
        (B, fmp_decoder_channels, 4g, 4g)) -> class logits (B, C, 4g, 4g) and presence
        logits (B, C)."""
        dec = self.mask_decoder
        b, _, h, w = image_embedding.shape
        const = self.constants(h)
        sparse = self.embed_sparse(prompts, b, const["box_embed"])
        dense = self.embed_dense(mask_logits, b)
        tokens_out = const["tokens_out"]
        tokens = torch.cat([tokens_out[None].expand(b, -1, -1).to(sparse.dtype), sparse], dim=1)
        src = image_embedding + dense
        c = src.shape[1]
        pos = const["dense_pe"].to(src.dtype).expand(b, -1, -1, -1)
        hs, src = dec.transformer(src, pos, tokens)
        class_tokens = hs[:, 1 : 1 + dec.num_mask_tokens, :]
        upscaled = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        if fine is not None:
            upscaled = upscaled + self.fine_skip(fine.to(upscaled.dtype))
        hyper = batched_hypernetwork(class_tokens, const["hyper_layers"])  # (B, C, E/8)
        _, uc, uh, uw = upscaled.shape
        class_logits = (hyper @ upscaled.reshape(b, uc, uh * uw)).reshape(b, -1, uh, uw)
        presence = self.presence_head(class_tokens).squeeze(-1)
        return class_logits, presence
