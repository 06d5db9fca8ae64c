"""SAM2 image encoder (Hiera trunk + FPN neck) as a drop-in for SAM's ViT, and SAM2 weights.

Design: the SAM2 encoder's stride-16 FPN level (plus SAM2's ``no_mem_embed``, which
SAM2 adds to it for single images) feeds **our** decoder path (prompt encoder + C-token
mask decoder + presence head) unchanged. Why not SAM2's own mask decoder: its two-way
transformer, output tokens, hypernetwork MLPs and upscaling are the same modules as
SAM's (same state-dict keys), so the official SAM2 decoder weights load into ours; what
SAM2 adds (high-resolution skip convs ``conv_s0/conv_s1``, object-score head) has a
counterpart here already (the FMP fine-feature skip, the presence head). Keeping one
decoder keeps the batched one-prompt-set-per-image forward, the ONNX decoder graph and
every runtime backend as they are, and Table 4 then compares image encoders only.

The ``sam2`` package (``pip install --no-build-isolation sam2==1.1.0`` with
``SAM2_BUILD_CUDA=0``) is imported lazily: without it only the SAM2 presets fail, with
a message saying how to install it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusionsam_model.modeling.config import ModelConfig
from fusionsam_model.modeling.sam_weights import LoadReport, load_sam_weights
from fusionsam_model.modeling.weights_file import CheckpointError


@dataclass(frozen=True)
class Sam2Spec:
    """Hiera + FPN-neck dimensions of one official SAM2 / SAM2.1 model (its YAML config)."""

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_pos_embed_bkg_spatial_size: tuple[int, int]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    checkpoints: tuple[str, ...] = ()

    @property
    def channel_list(self) -> list[int]:
        """Trunk output channels, lowest resolution first (the neck's backbone_channel_list)."""
        return [self.embed_dim * 2**i for i in range(len(self.stages))][::-1]


# From sam2/configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml (SAM2 and SAM2.1 share the shapes).
SAM2_SPECS: dict[str, Sam2Spec] = {
    "sam2_hiera_t": Sam2Spec(
        96, 1, (1, 2, 7, 2), (5, 7, 9), (7, 7),
        checkpoints=("sam2_hiera_tiny.pt", "sam2.1_hiera_tiny.pt"),
    ),
    "sam2_hiera_s": Sam2Spec(
        96, 1, (1, 2, 11, 2), (7, 10, 13), (7, 7),
        checkpoints=("sam2_hiera_small.pt", "sam2.1_hiera_small.pt"),
    ),
    "sam2_hiera_b+": Sam2Spec(
        112, 2, (2, 3, 16, 3), (12, 16, 20), (14, 14),
        checkpoints=("sam2_hiera_base_plus.pt", "sam2.1_hiera_base_plus.pt"),
    ),
    "sam2_hiera_l": Sam2Spec(
        144, 2, (2, 6, 36, 4), (23, 33, 43), (7, 7), (8, 4, 16, 8),
        checkpoints=("sam2_hiera_large.pt", "sam2.1_hiera_large.pt"),
    ),
}  # fmt: skip

SAM2_INSTALL_HINT = (
    "the SAM2 image encoders need the sam2 package: "
    "SAM2_BUILD_CUDA=0 .venv/bin/pip install --no-build-isolation -r requirements-sam2.txt"
)


def sam2_available() -> bool:
    """True when the ``sam2`` package imports (the SAM2 presets can be built)."""
    try:
        import sam2.modeling.backbones.image_encoder  # noqa: F401
    except ImportError:
        return False
    return True


class Sam2ImageEncoder(nn.Module):
    """(B, 3, S, S) normalised image -> (B, d_model, S/16, S/16): SAM2's stride-16 FPN level.

    ``trunk``, ``neck`` and ``no_mem_embed`` carry SAM2's own module and parameter names,
    so an official checkpoint's ``image_encoder.*`` and ``no_mem_embed`` keys map 1:1.
    """

    def __init__(self, spec: Sam2Spec, d_model: int) -> None:
        super().__init__()
        try:
            from sam2.modeling.backbones.hieradet import Hiera
            from sam2.modeling.backbones.image_encoder import FpnNeck
            from sam2.modeling.position_encoding import PositionEmbeddingSine
        except ImportError as e:
            raise ImportError(SAM2_INSTALL_HINT) from e
        self.trunk = Hiera(
            embed_dim=spec.embed_dim,
            num_heads=spec.num_heads,
            stages=spec.stages,
            global_att_blocks=spec.global_att_blocks,
            window_pos_embed_bkg_spatial_size=spec.window_pos_embed_bkg_spatial_size,
            window_spec=spec.window_spec,
        )
        self.neck = FpnNeck(
            position_encoding=PositionEmbeddingSine(
                num_pos_feats=d_model, normalize=True, scale=None, temperature=10000
            ),
            d_model=d_model,
            backbone_channel_list=spec.channel_list,
            fpn_top_down_levels=[2, 3],
            fpn_interp_model="nearest",
        )
        # SAM2 adds this learned "no memory" embedding to the stride-16 features of a
        # single image (directly_add_no_mem_embed); kept so official weights behave as in SAM2.
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.trunc_normal_(self.no_mem_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, _pos = self.neck(self.trunk(x))
        # levels: strides 4, 8, 16, 32; SAM2 (scalp=1) drops 32 and uses 16 as the embedding
        src = features[2]
        return src + self.no_mem_embed.to(src.dtype).reshape(1, -1, 1, 1)


def build_sam2_image_encoder(cfg: ModelConfig) -> Sam2ImageEncoder:
    """The SAM2 encoder named by ``cfg.image_encoder``; its neck width is the decoder's
    ``prompt_embed_dim`` (256 in the official models)."""
    if cfg.image_encoder not in SAM2_SPECS:
        raise ValueError(f"not a SAM2 image encoder: {cfg.image_encoder!r}")
    return Sam2ImageEncoder(SAM2_SPECS[cfg.image_encoder], cfg.prompt_embed_dim)


# SAM2 checkpoint key prefixes -> the names load_sam_weights (SAM layout) expects.
SAM2_TO_SAM_PREFIXES = {
    "image_encoder.": "image_encoder.",
    "no_mem_embed": "image_encoder.no_mem_embed",
    "sam_prompt_encoder.": "prompt_encoder.",
    "sam_mask_decoder.": "mask_decoder.",
}


def sam2_state_in_sam_layout(official: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An official SAM2 / SAM2.1 state dict (``{"model": ...}`` or bare) renamed to SAM's
    layout; returns it and the keys that have no place in an image model (memory
    attention / encoder, object pointers, ...), which the report lists as dropped."""
    state = official.get("model", official)
    if not isinstance(state, dict) or not any(k.startswith("image_encoder.trunk.") for k in state):
        raise ValueError(
            "not an official SAM2 checkpoint (no image_encoder.trunk.* keys); expected "
            "e.g. sam2.1_hiera_tiny.pt"
        )
    mapped: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for k, v in state.items():
        prefix = next((p for p in SAM2_TO_SAM_PREFIXES if k.startswith(p)), None)
        if prefix is None:
            unused.append(k)
            continue
        mapped[SAM2_TO_SAM_PREFIXES[prefix] + k[len(prefix) :]] = v
    return mapped, sorted(unused)


def load_sam2_weights(model: nn.Module, source: str | Path | dict[str, Any]) -> LoadReport:
    """Load an official SAM2 / SAM2.1 checkpoint into a model built with a SAM2 encoder.

    Trunk, neck, ``no_mem_embed``, prompt encoder and the shared mask-decoder modules are
    copied; the 4 official mask tokens / hypernetwork MLPs are tiled over C classes; SAM2's
    high-res convs, object-score head, IoU head and all video-memory modules are dropped.
    Returns ``sam_weights.LoadReport`` (loaded / adapted / dropped / random)."""
    if getattr(model.config, "image_encoder", "sam") == "sam":
        raise CheckpointError(
            "a SAM2 checkpoint needs a model with model.image_encoder=sam2_hiera_* "
            f"(this one has {model.config.image_encoder!r}); use load_sam_weights for SAM files"
        )
    if isinstance(source, dict):
        official, name = source, "<state dict>"
    else:
        name = str(source)
        if not Path(source).is_file():
            raise CheckpointError(f"no SAM2 checkpoint at {name}")
        official = torch.load(source, map_location="cpu", weights_only=True)
    try:
        mapped, unused = sam2_state_in_sam_layout(official)
    except ValueError as e:
        raise CheckpointError(f"{name}: {e}") from e
    report = load_sam_weights(model, mapped)
    report.dropped = sorted(report.dropped + unused)
    return report
