"""Model configuration: one dataclass that fully describes a FusionSAM network.

The config travels inside every project checkpoint, so a checkpoint rebuilds its own
network without the caller knowing the preset. Presets ``vit_b``/``vit_l``/``vit_h``
use segment_anything's image-encoder dimensions so the official SAM weights load;
``tiny`` is a from-scratch model sized for 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

PATCH_SIZE = 16  # SAM's ViT patch size: g = S / 16
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)

FUSION_MODES = ("fmp", "concat")
MODALITIES = ("both", "rgb", "thermal")
# SAM image encoder: segment_anything's ViT ("sam", dims from the preset) or a SAM2 Hiera
# trunk + FPN neck (fusionsam_model.modeling.sam2_encoder.SAM2_SPECS).
IMAGE_ENCODERS = ("sam", "sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b+", "sam2_hiera_l")
# What a SAM baseline (``sam_baseline=True``, paper Table 4) sees: one camera, a fixed
# pixel-level fusion (mean of RGB and thermal), or the fused image of a trained FusionSAM
# front (LSTG + FMP, frozen; the paper's "SAM / SAM2 infer the fused feature maps").
BASELINE_INPUTS = ("rgb", "thermal", "pixel_fusion", "fused")


@dataclass
class ModelConfig:
    """All shape-defining choices of a FusionSAM network, plus its ablation switches."""

    preset: str = "tiny"
    input_size: int = 320  # S: letterboxed square side, multiple of 16
    num_classes: int = 9
    # LSTG (one VQ autoencoder per modality)
    latent_dim: int = 32  # D
    num_codes: int = 256  # K
    lstg_channels: int = 16
    lstg_res_blocks: int = 1
    # FMP
    fmp_embed_dim: int = 64
    fmp_heads: int = 4
    fmp_depth: int = 1
    fmp_decoder_channels: int = 16
    # SAM image encoder (ImageEncoderViT)
    encoder_embed_dim: int = 128
    encoder_depth: int = 4
    encoder_num_heads: int = 4
    encoder_global_attn_indexes: tuple[int, ...] = (3,)
    encoder_window_size: int = 10
    encoder_mlp_ratio: float = 4.0
    prompt_embed_dim: int = 128  # = image-encoder out_chans = decoder transformer dim
    mask_in_chans: int = 16
    # SAM mask decoder
    decoder_depth: int = 2
    decoder_heads: int = 4
    decoder_mlp_dim: int = 512
    presence_hidden_dim: int = 128
    # prompts derived from the fusion mask
    num_points: int = 10
    use_box: bool = True
    # ablations
    fusion: str = "fmp"  # "fmp" | "concat"
    modalities: str = "both"  # "both" | "rgb" | "thermal"
    lstg: bool = True  # False: conv stem without quantisation (paper ablation A)
    sam_baseline: bool = False  # SAM encoder on ``baseline_input`` + same decoder, no prompts
    baseline_input: str = "rgb"  # one of BASELINE_INPUTS (sam_baseline only)
    # False: no dense mask prompt and no points/box derived from the fusion mask (the
    # paper's ablation B "without the fusion mask hint"); the decoder sees SAM's no-mask
    # embedding and only its own output tokens.
    mask_prompt: bool = True
    image_encoder: str = "sam"  # one of IMAGE_ENCODERS
    freeze_image_encoder: bool = False
    encoder_backprop: bool = False  # frozen encoder: still pass gradients to the fused image
    # thermal normalisation defaults used by the Segmenter
    thermal_range: tuple[float, float] | None = None  # None: per-frame percentile gain
    thermal_percentiles: tuple[float, float] = (1.0, 99.0)

    def __post_init__(self) -> None:
        self.encoder_global_attn_indexes = tuple(int(i) for i in self.encoder_global_attn_indexes)
        if self.thermal_range is not None:
            self.thermal_range = (float(self.thermal_range[0]), float(self.thermal_range[1]))
        self.thermal_percentiles = tuple(float(p) for p in self.thermal_percentiles)
        self.validate()

    def validate(self) -> None:
        """Reject configs that would only fail later, deep inside a forward pass."""
        s = self.input_size
        if s <= 0 or s % PATCH_SIZE:
            raise ValueError(f"ModelConfig.input_size must be a positive multiple of 16, got {s}")
        if self.num_classes < 2:
            raise ValueError(f"ModelConfig.num_classes must be >= 2, got {self.num_classes}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(
                f"ModelConfig.fusion must be one of {FUSION_MODES}, got {self.fusion!r}"
            )
        if self.modalities not in MODALITIES:
            raise ValueError(
                f"ModelConfig.modalities must be one of {MODALITIES}, got {self.modalities!r}"
            )
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ValueError(
                f"ModelConfig.image_encoder must be one of {IMAGE_ENCODERS}, "
                f"got {self.image_encoder!r}"
            )
        if self.image_encoder != "sam" and s % 32:
            raise ValueError(
                f"ModelConfig.input_size must be a multiple of 32 for a SAM2 Hiera encoder "
                f"(stride 32 at its last stage), got {s}"
            )
        if self.baseline_input not in BASELINE_INPUTS:
            raise ValueError(
                f"ModelConfig.baseline_input must be one of {BASELINE_INPUTS}, "
                f"got {self.baseline_input!r}"
            )
        if self.prompt_embed_dim % 8 or self.prompt_embed_dim % self.decoder_heads:
            raise ValueError(
                "ModelConfig.prompt_embed_dim must be divisible by 8 and by decoder_heads, got "
                f"{self.prompt_embed_dim} with {self.decoder_heads} heads"
            )
        if self.encoder_embed_dim % self.encoder_num_heads:
            raise ValueError("ModelConfig.encoder_embed_dim must be divisible by encoder_num_heads")
        bad = [i for i in self.encoder_global_attn_indexes if not 0 <= i < self.encoder_depth]
        if bad:
            raise ValueError(f"ModelConfig.encoder_global_attn_indexes {bad} outside the depth")
        if not 0 < self.num_points:
            raise ValueError("ModelConfig.num_points must be >= 1")
        if self.thermal_range is not None and not self.thermal_range[0] < self.thermal_range[1]:
            raise ValueError(
                f"ModelConfig.thermal_range must be (lo, hi) with lo < hi, got {self.thermal_range}"
            )

    @property
    def grid_size(self) -> int:
        """g = S / 16, the SAM embedding grid."""
        return self.input_size // PATCH_SIZE

    @property
    def mask_size(self) -> int:
        """S / 4: size of the fusion mask and of the class logits."""
        return self.input_size // 4

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder_global_attn_indexes"] = list(self.encoder_global_attn_indexes)
        d["thermal_range"] = None if self.thermal_range is None else list(self.thermal_range)
        d["thermal_percentiles"] = list(self.thermal_percentiles)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"ModelConfig.from_dict: unknown keys {unknown}")
        d = dict(d)
        if d.get("thermal_range") is not None:
            d["thermal_range"] = tuple(d["thermal_range"])
        return cls(**d)


def _sam(embed_dim: int, depth: int, heads: int, global_idx: tuple[int, ...]) -> dict[str, Any]:
    """segment_anything's build_sam dimensions (prompt dim 256, decoder 2 x 8 heads x 2048)."""
    return dict(
        input_size=1024,
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=heads,
        encoder_global_attn_indexes=global_idx,
        encoder_window_size=14,
        prompt_embed_dim=256,
        decoder_depth=2,
        decoder_heads=8,
        decoder_mlp_dim=2048,
        presence_hidden_dim=256,
        latent_dim=64,
        num_codes=512,
        lstg_channels=32,
        fmp_embed_dim=256,
        fmp_heads=8,
        fmp_depth=1,
        fmp_decoder_channels=32,
        freeze_image_encoder=True,
    )


PRESETS: dict[str, dict[str, Any]] = {
    # tiny = the dataclass defaults. S = 320 puts a 480x640 frame at scale 1/2, so the
    # S/4 = 80 class-logit grid has one cell per 8 camera pixels: a 22 px cone still
    # spans ~3 cells and a 10 px bump ~1.3 (S = 256 would give 1); the network costs
    # ~40 ms on 2 idle cores (LSTG 13, FMP 10, ViT 4x128 at g = 20 with 10x10 windows 10,
    # decoder 5), leaving room for pre/post-processing inside 100 ms (10 pairs/s).
    "tiny": {},
    "vit_b": _sam(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": _sam(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": _sam(1280, 32, 16, (7, 15, 23, 31)),
}
# SAM2 / SAM2.1 image encoders (Hiera trunk + FPN neck, dims in sam2_encoder.SAM2_SPECS)
# with SAM's decoder dimensions, so official SAM2 checkpoints load (load_sam2_weights).
# ``model.image_encoder=sam2_hiera_*`` on another preset (e.g. tiny) swaps only the encoder.
for _name in IMAGE_ENCODERS[1:]:
    PRESETS[_name] = {**_sam(768, 12, 12, (2, 5, 8, 11)), "image_encoder": _name}


def build_config(preset: str = "tiny", **overrides: Any) -> ModelConfig:
    """Preset dimensions with any field overridden, e.g. ``build_config("vit_b", input_size=512)``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = ModelConfig(preset=preset, **PRESETS[preset])
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"build_config: unknown option(s) {unknown}; valid: {sorted(known)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **overrides)
