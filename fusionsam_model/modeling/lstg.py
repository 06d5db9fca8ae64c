"""LSTG (Latent Space Token Generation): one VQ autoencoder per modality.

The encoder maps an S x S image to an S/4 x S/4 grid of D-dim latents, the quantizer
snaps them to codebook entries (the "latent tokens" the fusion stage works on), and
the decoder maps them back to S x S so that stage-1 training can ask for faithful
reconstructions. ``ConvStem`` is ablation A: the same encoder shape without
quantization or decoder.

Both downsamplings come first so that the residual blocks run at S/4, which keeps the
encoder cheap enough for the CPU preset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionsam_model.modeling.quantizer import QuantizerOutput, VectorQuantizer


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``channels`` (batch-size independent)."""
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(silu(norm(conv(silu(norm(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            group_norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """S -> S/4 with two stride-2 convs, residual blocks at S/4, 1x1 to ``latent_dim``."""

    def __init__(
        self, in_channels: int, latent_dim: int, base_channels: int, num_res_blocks: int
    ) -> None:
        super().__init__()
        width = 2 * base_channels
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, base_channels, 3, stride=2, padding=1),
            group_norm(base_channels),
            nn.SiLU(),
            nn.Conv2d(base_channels, width, 3, stride=2, padding=1),
            *[ResBlock(width) for _ in range(num_res_blocks)],
            group_norm(width),
            nn.SiLU(),
            nn.Conv2d(width, latent_dim, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """S/4 -> S: residual blocks at S/4, two nearest-neighbour x2 upsamplings, sigmoid."""

    def __init__(
        self, out_channels: int, latent_dim: int, base_channels: int, num_res_blocks: int
    ) -> None:
        super().__init__()
        width = 2 * base_channels
        self.trunk = nn.Sequential(
            nn.Conv2d(latent_dim, width, 3, padding=1),
            *[ResBlock(width) for _ in range(num_res_blocks)],
            group_norm(width),
            nn.SiLU(),
        )
        self.up1 = nn.Sequential(
            nn.Conv2d(width, base_channels, 3, padding=1), group_norm(base_channels), nn.SiLU()
        )
        self.up2 = nn.Sequential(
            nn.Conv2d(base_channels, base_channels, 3, padding=1),
            group_norm(base_channels),
            nn.SiLU(),
        )
        self.out_conv = nn.Conv2d(base_channels, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.trunk(z)
        x = self.up1(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = self.up2(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return torch.sigmoid(self.out_conv(x))


def _check_input(x: Tensor, in_channels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{who}: expected images (B, {in_channels}, S, S), got {tuple(x.shape)}")
    if x.shape[-2] % 4 or x.shape[-1] % 4:
        raise ValueError(f"{who}: image size {tuple(x.shape[-2:])} must be divisible by 4")


class LSTGAutoencoder(nn.Module):
    """VQ autoencoder of one modality: ``encode`` for the fusion stage, ``forward`` for stage 1."""

    def __init__(
        self,
        in_channels: int,
        latent_dim: int,
        num_codes: int,
        base_channels: int = 32,
        num_res_blocks: int = 1,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        dead_code_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.latent_dim = latent_dim
        self.encoder = Encoder(in_channels, latent_dim, base_channels, num_res_blocks)
        self.quantizer = VectorQuantizer(
            num_codes, latent_dim, beta, ema, decay, dead_code_threshold
        )
        self.decoder = Decoder(in_channels, latent_dim, base_channels, num_res_blocks)

    def encode(self, x: Tensor) -> QuantizerOutput:
        """x (B, in_channels, S, S) in [0, 1] -> quantized latents (B, D, S/4, S/4)."""
        _check_input(x, self.in_channels, "LSTGAutoencoder.encode")
        return self.quantizer(self.encoder(x))

    def encode_inference(self, x: Tensor) -> Tensor:
        """``encode(x).z_q`` without the quantizer's training terms (loss, perplexity)."""
        _check_input(x, self.in_channels, "LSTGAutoencoder.encode")
        return self.quantizer.quantize(self.encoder(x))

    def decode(self, z_q: Tensor) -> Tensor:
        """(B, D, S/4, S/4) -> reconstruction (B, in_channels, S, S) in [0, 1]."""
        return self.decoder(z_q)

    def forward(self, x: Tensor) -> tuple[Tensor, QuantizerOutput]:
        quantized = self.encode(x)
        return self.decode(quantized.z_q), quantized

    @property
    def last_decoder_layer(self) -> nn.Parameter:
        """Weight of the decoder's last conv: where VQGAN measures the adaptive GAN weight."""
        return self.decoder.out_conv.weight


class ConvStem(nn.Module):
    """Ablation A (no LSTG): the LSTG encoder without quantizer or decoder."""

    def __init__(self, in_channels: int, latent_dim: int, base_channels: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.latent_dim = latent_dim
        self.encoder = Encoder(in_channels, latent_dim, base_channels, num_res_blocks=1)

    def encode(self, x: Tensor) -> QuantizerOutput:
        """Same interface as ``LSTGAutoencoder.encode``: loss 0, indices 0, perplexity 0."""
        _check_input(x, self.in_channels, "ConvStem.encode")
        z = self.encoder(x)
        zero = z.new_zeros(())
        indices = torch.zeros(
            z.shape[0], z.shape[2], z.shape[3], dtype=torch.int64, device=z.device
        )
        return QuantizerOutput(z_q=z, loss=zero, indices=indices, perplexity=zero)

    def encode_inference(self, x: Tensor) -> Tensor:
        """Same interface as ``LSTGAutoencoder.encode_inference``."""
        _check_input(x, self.in_channels, "ConvStem.encode")
        return self.encoder(x)

    def forward(self, x: Tensor) -> QuantizerOutput:
        return self.encode(x)
