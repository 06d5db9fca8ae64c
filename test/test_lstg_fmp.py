"""LSTG autoencoder, conv-stem ablation, PatchGAN losses and the FMP fusion module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusionsam_model.modeling.composition import NUM_MAPS
from fusionsam_model.modeling.discriminator import (
    PatchDiscriminator,
    adaptive_adversarial_weight,
    hinge_d_loss,
    hinge_g_loss,
)
from fusionsam_model.modeling.fmp import MODES, FusionMaskPrompting
from fusionsam_model.modeling.lstg import ConvStem, LSTGAutoencoder

LATENT, EMBED = 8, 32


def _fmp_inputs(mode: str, b: int, size: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    z = torch.randn(b, LATENT, size // 4, size // 4)
    z_rgb = z if mode != "thermal" else None
    z_th = torch.randn_like(z) if mode != "rgb" else None
    return z_rgb, z_th


def _assert_every_parameter_has_gradient(module: nn.Module) -> None:
    missing = [
        name for name, p in module.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert not missing, f"no gradient reached: {missing}"


@pytest.mark.parametrize("in_channels", [3, 1])
def test_lstg_shapes(in_channels: int) -> None:
    ae = LSTGAutoencoder(in_channels, LATENT, num_codes=32, base_channels=8)
    x = torch.rand(2, in_channels, 48, 48)
    rec, q = ae(x)
    assert rec.shape == x.shape
    assert q.z_q.shape == (2, LATENT, 12, 12)
    assert q.indices.shape == (2, 12, 12) and q.indices.dtype == torch.int64
    assert q.loss.dim() == 0 and q.perplexity.dim() == 0
    assert 0.0 <= rec.min() and rec.max() <= 1.0
    assert ae.decode(q.z_q).shape == x.shape
    assert ae.last_decoder_layer is ae.decoder.out_conv.weight


def test_lstg_rejects_wrong_channels_and_sizes() -> None:
    ae = LSTGAutoencoder(1, LATENT, num_codes=8, base_channels=8)
    with pytest.raises(ValueError, match=r"\(B, 1, S, S\)"):
        ae.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="divisible by 4"):
        ae.encode(torch.rand(1, 1, 30, 32))


def test_conv_stem_has_the_encode_interface_without_quantization() -> None:
    stem = ConvStem(3, LATENT, base_channels=8)
    out = stem.encode(torch.rand(2, 3, 64, 64))
    assert out.z_q.shape == (2, LATENT, 16, 16)
    assert out.indices.shape == (2, 16, 16) and not out.indices.any()
    assert out.loss.item() == 0.0 and out.perplexity.item() == 0.0
    assert not hasattr(stem, "decoder") and not hasattr(stem, "quantizer")
    out.z_q.sum().backward()
    _assert_every_parameter_has_gradient(stem)


@pytest.mark.parametrize("ema", [True, False])
def test_gradients_reach_every_lstg_parameter(ema: bool) -> None:
    torch.manual_seed(0)
    ae = LSTGAutoencoder(3, LATENT, num_codes=16, base_channels=8, ema=ema).train()
    x = torch.rand(2, 3, 32, 32)
    rec, q = ae(x)
    (F.l1_loss(rec, x) + q.loss).backward()
    _assert_every_parameter_has_gradient(ae)
    assert ("quantizer.codebook" in dict(ae.named_parameters())) == (not ema)


def test_autoencoder_reconstruction_improves_with_adam() -> None:
    torch.manual_seed(0)
    ae = LSTGAutoencoder(3, LATENT, num_codes=32, base_channels=8).train()
    # Smooth images with structure, so reconstruction has something to learn.
    x = F.interpolate(torch.rand(4, 3, 8, 8), size=32, mode="bilinear", align_corners=False)
    optimizer = torch.optim.Adam(ae.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        rec, q = ae(x)
        loss = F.l1_loss(rec, x)
        optimizer.zero_grad()
        (loss + q.loss).backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert q.perplexity.item() > 1.0


def test_patch_discriminator_and_hinge_losses() -> None:
    disc = PatchDiscriminator(3, base_channels=8, num_layers=3)
    assert disc(torch.rand(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.5])
    # relu(1 - real) = [0, 0.5, 2] -> 5/6; relu(1 + fake) = [0, 1, 2.5] -> 7/6
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 7 / 6))
    assert hinge_g_loss(fake).item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)


def test_adaptive_adversarial_weight_is_the_gradient_norm_ratio() -> None:
    torch.manual_seed(0)
    ae = LSTGAutoencoder(3, LATENT, num_codes=16, base_channels=8)
    disc = PatchDiscriminator(3, base_channels=8)
    x = torch.rand(2, 3, 64, 64)
    rec, _ = ae(x)
    rec_loss = F.l1_loss(rec, x)
    g_loss = hinge_g_loss(disc(rec))
    weight = adaptive_adversarial_weight(rec_loss, g_loss, ae.last_decoder_layer)
    assert torch.isfinite(weight) and weight.item() > 0 and not weight.requires_grad
    last = ae.last_decoder_layer
    rec_grad = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
    assert weight.item() == pytest.approx((rec_grad.norm() / (g_grad.norm() + 1e-4)).item())
    capped = adaptive_adversarial_weight(rec_loss, g_loss * 1e-12, last, max_weight=5.0)
    assert capped.item() == 5.0
    (rec_loss + weight * g_loss).backward()  # graphs are still usable afterwards


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [64, 96])
def test_fmp_output_shapes(mode: str, size: int) -> None:
    fmp = FusionMaskPrompting(LATENT, EMBED, size, num_heads=4, mode=mode, decoder_channels=8)
    out = fmp(*_fmp_inputs(mode, 2, size))
    assert out.features.shape == (2, EMBED, size // 16, size // 16)
    assert out.mask_logits.shape == (2, 1, size // 4, size // 4)
    assert out.fusion_maps.shape == (2, NUM_MAPS, size // 4, size // 4)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_reach_every_fmp_parameter(mode: str) -> None:
    torch.manual_seed(0)
    fmp = FusionMaskPrompting(
        LATENT, EMBED, 64, num_heads=4, depth=2, mode=mode, decoder_channels=8
    )
    z_rgb, z_th = _fmp_inputs(mode, 2, 64)
    out = fmp(z_rgb, z_th)
    loss = (
        F.binary_cross_entropy_with_logits(out.mask_logits, torch.rand_like(out.mask_logits))
        + F.l1_loss(out.fusion_maps, torch.rand_like(out.fusion_maps))
        + out.features.pow(2).mean()
    )
    loss.backward()
    _assert_every_parameter_has_gradient(fmp)


def test_fmp_end_to_end_from_lstg_latents_reaches_both_encoders() -> None:
    torch.manual_seed(0)
    ae_rgb = LSTGAutoencoder(3, LATENT, num_codes=16, base_channels=8)
    ae_th = LSTGAutoencoder(1, LATENT, num_codes=16, base_channels=8)
    fmp = FusionMaskPrompting(LATENT, EMBED, 64, decoder_channels=8)
    out = fmp(
        ae_rgb.encode(torch.rand(1, 3, 64, 64)).z_q, ae_th.encode(torch.rand(1, 1, 64, 64)).z_q
    )
    out.mask_logits.mean().backward()
    for ae in (ae_rgb, ae_th):
        assert ae.encoder.layers[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["fmp", "concat"])
def test_fmp_batch_equals_images_one_by_one(mode: str) -> None:
    torch.manual_seed(0)
    fmp = FusionMaskPrompting(LATENT, EMBED, 64, mode=mode, decoder_channels=8).eval()
    z_rgb, z_th = _fmp_inputs(mode, 3, 64)
    with torch.no_grad():
        batched = fmp(z_rgb, z_th)
        for i in range(3):
            single = fmp(z_rgb[i : i + 1], z_th[i : i + 1])
            for field in ("features", "mask_logits", "fusion_maps"):
                assert torch.allclose(
                    getattr(single, field), getattr(batched, field)[i : i + 1], atol=1e-5
                ), field


def test_fmp_uses_both_modalities() -> None:
    torch.manual_seed(0)
    fmp = FusionMaskPrompting(LATENT, EMBED, 64, decoder_channels=8).eval()
    z_rgb, z_th = _fmp_inputs("fmp", 1, 64)
    with torch.no_grad():
        base = fmp(z_rgb, z_th).features
        assert not torch.allclose(base, fmp(z_rgb, torch.randn_like(z_th)).features)
        assert not torch.allclose(base, fmp(torch.randn_like(z_rgb), z_th).features)


def test_fmp_rejects_missing_or_misshaped_latents() -> None:
    fmp = FusionMaskPrompting(LATENT, EMBED, 64)
    z = torch.randn(1, LATENT, 16, 16)
    with pytest.raises(ValueError, match="z_th is required"):
        fmp(z, None)
    with pytest.raises(ValueError, match=r"z_rgb must be \(B, 8, 16, 16\)"):
        fmp(torch.randn(1, LATENT, 24, 24), z)
    with pytest.raises(ValueError, match="mode must be one of"):
        FusionMaskPrompting(LATENT, EMBED, 64, mode="late")
    with pytest.raises(ValueError, match="divisible by 16"):
        FusionMaskPrompting(LATENT, EMBED, 72)
    with pytest.raises(ValueError, match="num_heads"):
        FusionMaskPrompting(LATENT, 30, 64, num_heads=4)


def test_fusion_front_exports_to_onnx_and_matches(tmp_path) -> None:
    """LSTG encoders + FMP in eval mode trace to ONNX with static shapes, as the
    deployment's fusion-front graph needs."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)

    class Front(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rgb = LSTGAutoencoder(3, LATENT, num_codes=16, base_channels=8)
            self.th = LSTGAutoencoder(1, LATENT, num_codes=16, base_channels=8)
            self.fmp = FusionMaskPrompting(LATENT, EMBED, 64, decoder_channels=8)

        def forward(self, rgb: torch.Tensor, th: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.fmp(self.rgb.encode(rgb).z_q, self.th.encode(th).z_q)
            return out.features, out.mask_logits, out.fusion_maps

    front = Front().eval()
    rgb, th = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    path = tmp_path / "front.onnx"
    torch.onnx.export(front, (rgb, th), str(path), dynamo=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {names[0]: rgb.numpy(), names[1]: th.numpy()})
    with torch.no_grad():
        expected = front(rgb, th)
    for g, e in zip(got, expected, strict=True):
        assert abs(g - e.numpy()).max() < 1e-4
