"""FusionSAM: LSTG per modality -> FMP (fusion mask + fused image) -> SAM -> C class maps.

The network is split into three export-friendly parts that the ONNX/TensorRT export
turns into three graphs 1:1:

* ``forward_front(rgb, thermal)``: LSTG encoders + FMP + heads -> fused image (composed
  from the inputs by the decision maps, ``composition.compose``), the decision maps,
  fusion mask, fine (S/4) features
* ``encode_image(fused)``: SAM image encoder (pixel normalisation inside)
* ``decode(image_embedding, mask_logits, fine)``: prompts derived from the mask, prompt
  encoder, C-token mask decoder (with the fine-feature skip), presence head

``forward`` chains them and adds what training needs (reconstructions, VQ losses).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from fusionsam_model.modeling.composition import NUM_MAPS, compose
from fusionsam_model.modeling.config import SAM_PIXEL_MEAN, SAM_PIXEL_STD, ModelConfig
from fusionsam_model.modeling.fmp import FusionMaskPrompting
from fusionsam_model.modeling.lstg import ConvStem, LSTGAutoencoder
from fusionsam_model.modeling.prompts import prompts_from_mask
from fusionsam_model.modeling.sam2_encoder import build_sam2_image_encoder
from fusionsam_model.modeling.sam_decoder import SamDecoder, build_image_encoder


@dataclass
class Latents:
    """Quantized latents per modality (None when the modality is switched off)."""

    z_rgb: torch.Tensor | None
    z_thermal: torch.Tensor | None
    vq_loss: torch.Tensor
    perplexity: dict[str, torch.Tensor] = field(default_factory=dict)
    # SAM baselines on a camera / pixel-level fusion: the image their encoder sees
    baseline_image: torch.Tensor | None = None


def baseline_image(rgb: torch.Tensor, thermal: torch.Tensor, which: str) -> torch.Tensor:
    """The (B, 3, S, S) image a SAM baseline segments: RGB, thermal as grey, or the fixed
    pixel-level fusion 0.5 RGB + 0.5 thermal (no learned part)."""
    if which == "rgb":
        return rgb
    th3 = thermal.expand(-1, 3, -1, -1)
    if which == "thermal":
        return th3
    if which == "pixel_fusion":
        return 0.5 * rgb + 0.5 * th3
    raise ValueError(f"no fixed baseline image for baseline_input={which!r}")


@dataclass
class FrontOutput:
    fused: torch.Tensor  # (B, 3, S, S) in [0, 1]
    fusion_maps: torch.Tensor  # (B, NUM_MAPS, S/4, S/4) decision logits of the fused image
    mask_logits: torch.Tensor  # (B, 1, S/4, S/4)
    fine: torch.Tensor  # (B, fmp_decoder_channels, S/4, S/4) for the decoder's skip
    features: torch.Tensor | None  # (B, E_fmp, g, g) fused features F
    vq_loss: torch.Tensor  # scalar
    perplexity: dict[str, torch.Tensor] = field(default_factory=dict)
    latents: Latents | None = None


@dataclass
class ModelOutput:
    class_logits: torch.Tensor  # (B, C, S/4, S/4)
    presence: torch.Tensor  # (B, C) logits
    fused: torch.Tensor
    mask_logits: torch.Tensor
    vq_loss: torch.Tensor
    perplexity: dict[str, torch.Tensor]
    fusion_maps: torch.Tensor | None = None
    recon_rgb: torch.Tensor | None = None  # (B, 3, S, S) LSTG reconstructions
    recon_thermal: torch.Tensor | None = None
    features: torch.Tensor | None = None


class FusionSAM(nn.Module):
    """The whole network for one ``ModelConfig`` (preset + ablation switches)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        # SAM baselines keep a (frozen, trained) fusion front only to segment its fused image
        front = not cfg.sam_baseline or cfg.baseline_input == "fused"
        use_rgb = front and cfg.modalities in ("both", "rgb")
        use_th = front and cfg.modalities in ("both", "thermal")
        self.lstg_rgb = self._make_stem(3) if use_rgb else None
        self.lstg_thermal = self._make_stem(1) if use_th else None
        if not front:
            self.fmp = None
        else:
            mode = cfg.fusion if cfg.modalities == "both" else cfg.modalities
            self.fmp = FusionMaskPrompting(
                latent_dim=cfg.latent_dim,
                embed_dim=cfg.fmp_embed_dim,
                input_size=cfg.input_size,
                num_heads=cfg.fmp_heads,
                depth=cfg.fmp_depth,
                mode=mode,
                decoder_channels=cfg.fmp_decoder_channels,
            )
        self.image_encoder = (
            build_image_encoder(cfg)
            if cfg.image_encoder == "sam"
            else build_sam2_image_encoder(cfg)
        )
        self.sam_decoder = SamDecoder(cfg)
        self.register_buffer("pixel_mean", torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1), False)
        if cfg.freeze_image_encoder:
            self.image_encoder.requires_grad_(False)

    def _make_stem(self, channels: int) -> nn.Module:
        cfg = self.config
        if cfg.lstg:
            return LSTGAutoencoder(
                in_channels=channels,
                latent_dim=cfg.latent_dim,
                num_codes=cfg.num_codes,
                base_channels=cfg.lstg_channels,
                num_res_blocks=cfg.lstg_res_blocks,
            )
        return ConvStem(channels, cfg.latent_dim, base_channels=cfg.lstg_channels)

    # ---- part 1: fusion front -------------------------------------------------------
    def encode_latents(
        self, rgb: torch.Tensor, thermal: torch.Tensor, inference: bool = False
    ) -> Latents:
        """LSTG encoders (S -> S/4, quantized) for the modalities the config uses.
        ``inference``: the same latents without the VQ loss and perplexity (zero / absent)."""
        vq_loss = rgb.new_zeros(())
        perplexity: dict[str, torch.Tensor] = {}
        z: dict[str, torch.Tensor | None] = {"rgb": None, "thermal": None}
        for name, stem, x in (("rgb", self.lstg_rgb, rgb), ("thermal", self.lstg_thermal, thermal)):
            if stem is None:
                continue
            if inference:
                z[name] = stem.encode_inference(x)
                continue
            q = stem.encode(x)
            z[name] = q.z_q
            vq_loss = vq_loss + q.loss
            perplexity[name] = q.perplexity
        base = None
        if self.config.sam_baseline and self.config.baseline_input != "fused":
            base = baseline_image(rgb, thermal, self.config.baseline_input)
        return Latents(z["rgb"], z["thermal"], vq_loss, perplexity, base)

    def fuse(self, latents: Latents, rgb: torch.Tensor, thermal: torch.Tensor) -> FrontOutput:
        """FMP on the latents -> decision maps, fused image (composed from ``rgb`` and
        ``thermal`` by them) and fusion mask. A SAM baseline passes its input image
        (``config.baseline_input``) through and has no fusion mask nor fine features (zeros
        keep the graph shapes fixed); its decision maps are zeros (half of each camera)."""
        m, b = self.config.mask_size, rgb.shape[0]
        if self.config.sam_baseline:
            mask = rgb.new_zeros((b, 1, m, m))
            fine = rgb.new_zeros((b, self.config.fmp_decoder_channels, m, m))
            maps = rgb.new_zeros((b, NUM_MAPS, m, m))
            if self.fmp is None:
                image = rgb if latents.baseline_image is None else latents.baseline_image
            else:  # baseline_input == "fused": the trained front's fused image only
                maps = self.fmp(latents.z_rgb, latents.z_thermal).fusion_maps
                image = compose(rgb, thermal, maps)
            return FrontOutput(
                image, maps, mask, fine, None, latents.vq_loss, latents.perplexity, latents
            )
        out = self.fmp(latents.z_rgb, latents.z_thermal)
        return FrontOutput(
            compose(rgb, thermal, out.fusion_maps),
            out.fusion_maps,
            out.mask_logits,
            out.fine,
            out.features,
            latents.vq_loss,
            latents.perplexity,
            latents,
        )

    def forward_front(
        self, rgb: torch.Tensor, thermal: torch.Tensor, inference: bool = False
    ) -> FrontOutput:
        """rgb (B, 3, S, S), thermal (B, 1, S, S) in [0, 1] -> fused image, fusion mask, fine
        features (``inference``: without the VQ training terms, see ``encode_latents``)."""
        return self.fuse(self.encode_latents(rgb, thermal, inference), rgb, thermal)

    # ---- part 2: SAM image encoder --------------------------------------------------
    def encode_image(self, fused: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, E, g, g). A frozen encoder runs without autograd
        unless ``config.encoder_backprop`` asks to pass gradients on to the fused image
        (costs the encoder's activation memory)."""
        x = (fused * 255.0 - self.pixel_mean.to(fused.dtype)) / self.pixel_std.to(fused.dtype)
        frozen = self.config.freeze_image_encoder
        ctx = (
            torch.no_grad()
            if frozen and not self.config.encoder_backprop
            else contextlib.nullcontext()
        )
        with ctx:
            return self.image_encoder(x)

    # ---- part 3: prompts + decoder --------------------------------------------------
    def decode(
        self, image_embedding: torch.Tensor, mask_logits: torch.Tensor, fine: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding + fusion-mask logits + fine features (all from the front) -> class
        logits (B, C, S/4, S/4), presence (B, C).

        The sparse prompts are computed here from ``mask_logits`` only, so no label can
        reach the decoder at inference or in an exported graph."""
        cfg = self.config
        if cfg.sam_baseline:
            return self.sam_decoder(image_embedding, None, None)
        if not cfg.mask_prompt:  # paper ablation B: no dense mask, no derived points / box
            return self.sam_decoder(image_embedding, None, None, fine)
        prompts = prompts_from_mask(mask_logits, cfg.input_size, cfg.num_points, cfg.use_box)
        return self.sam_decoder(image_embedding, mask_logits, prompts, fine)

    # ---- training / plain inference ------------------------------------------------
    def forward(
        self, rgb: torch.Tensor, thermal: torch.Tensor, reconstruct: bool | None = None
    ) -> ModelOutput:
        """Everything training needs; ``reconstruct`` (default: in training mode) also
        decodes the LSTG latents back to images for the stage-1 losses."""
        front = self.forward_front(rgb, thermal)
        embedding = self.encode_image(front.fused)
        class_logits, presence = self.decode(embedding, front.mask_logits, front.fine)
        out = ModelOutput(
            class_logits=class_logits,
            presence=presence,
            fused=front.fused,
            fusion_maps=front.fusion_maps,
            mask_logits=front.mask_logits,
            vq_loss=front.vq_loss,
            perplexity=front.perplexity,
            features=front.features,
        )
        if reconstruct is None:
            reconstruct = self.training
        lat = front.latents
        if reconstruct and self.config.lstg and lat is not None:
            if lat.z_rgb is not None:
                out.recon_rgb = self.lstg_rgb.decode(lat.z_rgb)
            if lat.z_thermal is not None:
                out.recon_thermal = self.lstg_thermal.decode(lat.z_thermal)
        return out

    def parts(self) -> dict[str, nn.Module]:
        """Named top-level parts, for parameter counts and gradient checks."""
        named = {
            "lstg_rgb": self.lstg_rgb,
            "lstg_thermal": self.lstg_thermal,
            "fmp": self.fmp,
            "image_encoder": self.image_encoder,
            "prompt_encoder": self.sam_decoder.prompt_encoder,
            "mask_decoder": self.sam_decoder.mask_decoder,
            "presence_head": self.sam_decoder.presence_head,
            "fine_skip": self.sam_decoder.fine_skip,
        }
        return {k: v for k, v in named.items() if v is not None}
