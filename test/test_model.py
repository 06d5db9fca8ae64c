"""FusionSAM assembly: shapes per preset and ablation, batching, gradients, prompts."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from fusionsam_model.modeling.config import PRESETS, ModelConfig, build_config
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.modeling.prompts import prompts_from_mask

SMALL = 128  # S for the fast CPU tests


def _inputs(b: int, s: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, s, s, generator=g), torch.rand(b, 1, s, s, generator=g)


# SAM2's Hiera calls Tensor.item() while it is built, which the meta device cannot do:
# test_sam2_encoder.py builds those presets' encoders at a small size on the CPU.
SAM_PRESETS = sorted(p for p in PRESETS if not p.startswith("sam2"))


@pytest.mark.parametrize("preset", SAM_PRESETS)
def test_every_sam_preset_shapes_on_meta(preset):
    """Full-size presets (vit_h included) are built on the meta device: shapes, no memory."""
    cfg = build_config(preset)
    s, c = cfg.input_size, cfg.num_classes
    with torch.device("meta"):
        model = FusionSAM(cfg).eval()
        out = model(torch.empty(2, 3, s, s), torch.empty(2, 1, s, s))
    assert out.class_logits.shape == (2, c, s // 4, s // 4)
    assert out.presence.shape == (2, c)
    assert out.fused.shape == (2, 3, s, s)
    assert out.mask_logits.shape == (2, 1, s // 4, s // 4)
    assert model.image_encoder.pos_embed.shape[1] == s // 16


def test_vit_presets_use_sam_dimensions_and_any_size():
    vit_h = build_config("vit_h", input_size=512)
    assert (vit_h.encoder_embed_dim, vit_h.encoder_depth, vit_h.prompt_embed_dim) == (1280, 32, 256)
    assert vit_h.freeze_image_encoder and not build_config("tiny").freeze_image_encoder
    with torch.device("meta"):
        model = FusionSAM(vit_h)
        emb = model.encode_image(torch.empty(1, 3, 512, 512))
    assert emb.shape == (1, 256, 32, 32)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_config("vit_b", input_size=1000)
    with pytest.raises(ValueError, match="unknown option"):
        build_config("tiny", not_a_field=1)


ABLATIONS = {
    "full": {},
    "concat": {"fusion": "concat"},
    "rgb_only": {"modalities": "rgb"},
    "thermal_only": {"modalities": "thermal"},
    "no_lstg": {"lstg": False},
    "sam_baseline": {"sam_baseline": True},
    "points_only": {"use_box": False},
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_shapes(name):
    cfg = build_config("tiny", input_size=SMALL, **ABLATIONS[name])
    model = FusionSAM(cfg).eval()
    rgb, th = _inputs(2, SMALL)
    with torch.no_grad():
        out = model(rgb, th)
    assert out.class_logits.shape == (2, 9, SMALL // 4, SMALL // 4)
    assert out.presence.shape == (2, 9)
    assert out.fused.shape == (2, 3, SMALL, SMALL)
    assert torch.isfinite(out.class_logits).all()
    assert (model.lstg_rgb is None) == (name in ("thermal_only", "sam_baseline"))
    assert (model.lstg_thermal is None) == (name in ("rgb_only", "sam_baseline"))
    if name == "sam_baseline":
        assert model.fmp is None and torch.equal(out.fused, rgb)


def test_config_round_trip():
    cfg = build_config("vit_l", input_size=512, modalities="rgb", thermal_range=(0, 255))
    back = ModelConfig.from_dict(cfg.to_dict())
    assert back == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_batch_equals_one_by_one():
    torch.manual_seed(0)
    model = FusionSAM(build_config("tiny", input_size=SMALL)).eval()
    rgb, th = _inputs(2, SMALL, seed=1)
    with torch.no_grad():
        batch = model(rgb, th)
        for i in range(2):
            one = model(rgb[i : i + 1], th[i : i + 1])
            torch.testing.assert_close(
                one.class_logits[0], batch.class_logits[i], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(one.presence[0], batch.presence[i], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(one.fused[0], batch.fused[i], atol=1e-5, rtol=1e-5)
    # the images differ, so identical outputs would mean the batch was mixed up
    assert not torch.allclose(batch.class_logits[0], batch.class_logits[1])


def _training_loss(out) -> torch.Tensor:
    target = torch.randint(0, 9, out.class_logits.shape[:1] + out.class_logits.shape[2:])
    loss = F.cross_entropy(out.class_logits, target)
    loss = loss + F.binary_cross_entropy_with_logits(out.presence, torch.ones_like(out.presence))
    loss = loss + out.fused.mean() + out.mask_logits.sigmoid().mean() + out.vq_loss
    for recon in (out.recon_rgb, out.recon_thermal):
        if recon is not None:
            loss = loss + recon.mean()
    return loss


@pytest.mark.parametrize("freeze", [False, True])
def test_gradients_reach_every_trainable_part(freeze):
    torch.manual_seed(0)
    model = FusionSAM(build_config("tiny", input_size=SMALL, freeze_image_encoder=freeze)).train()
    rgb, th = _inputs(2, SMALL)
    out = model(rgb, th)
    assert out.recon_rgb is not None and out.recon_rgb.shape == rgb.shape
    _training_loss(out).backward()
    for name, part in model.parts().items():
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        if name == "image_encoder" and freeze:
            assert not any(p.requires_grad for p in part.parameters())
            assert grads == [], "a frozen image encoder must receive no gradient"
            continue
        assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reached {name}"


def test_decode_takes_no_labels():
    params = list(inspect.signature(FusionSAM.decode).parameters)
    assert params == ["self", "image_embedding", "mask_logits", "fine"]
    assert list(inspect.signature(prompts_from_mask).parameters)[0] == "mask_logits"


def _blob(m: int, cy: int, cx: int, r: int = 4) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2).float()
    return (6.0 * torch.exp(-d2 / (2 * r * r)) - 3.0)[None, None]


def test_prompts_follow_the_mask():
    s, m = 256, 64
    a = prompts_from_mask(_blob(m, 10, 12), s, num_points=10)
    b = prompts_from_mask(_blob(m, 40, 50), s, num_points=10)
    assert a.points.shape == (1, 10, 2) and a.labels.shape == (1, 10) and a.boxes.shape == (1, 4)
    # the strongest peak is the blob centre, in S-pixel coordinates (stride 4)
    assert torch.allclose(a.points[0, 0], torch.tensor([12 * 4 + 1.5, 10 * 4 + 1.5]))
    assert torch.allclose(b.points[0, 0], torch.tensor([50 * 4 + 1.5, 40 * 4 + 1.5]))
    assert a.labels[0, 0] == 1 and (a.labels[0, 1:] == -1).all()  # one positive peak only
    # the box surrounds sigmoid > 0.5 and moves with the blob
    x0, y0, x1, y1 = a.boxes[0].tolist()
    assert x0 < 12 * 4 < x1 and y0 < 10 * 4 < y1 and x1 - x0 < 64
    assert torch.allclose(b.boxes[0] - a.boxes[0], torch.tensor([38.0, 30.0, 38.0, 30.0]) * 4)


def test_empty_mask_gives_whole_image_box_and_no_positive_points():
    p = prompts_from_mask(torch.full((2, 1, 32, 32), -4.0), 128, num_points=10)
    assert torch.equal(p.boxes, torch.tensor([[0.0, 0.0, 127.0, 127.0]] * 2))
    assert (p.labels == -1).all()


def test_decoder_output_depends_on_the_fusion_mask():
    torch.manual_seed(0)
    model = FusionSAM(build_config("tiny", input_size=SMALL)).eval()
    emb = torch.randn(1, model.config.prompt_embed_dim, SMALL // 16, SMALL // 16)
    m = SMALL // 4
    fine = torch.randn(1, model.config.fmp_decoder_channels, m, m)
    with torch.no_grad():
        la, _ = model.decode(emb, _blob(m, 5, 5), fine)
        lb, _ = model.decode(emb, _blob(m, 25, 25), fine)
    assert not torch.allclose(la, lb)


def test_fine_skip_reaches_every_class_map_cell():
    """The FMP's S/4 features change the class logits locally (HQ-style skip), so detail
    finer than the g x g embedding grid can reach the class maps."""
    torch.manual_seed(0)
    model = FusionSAM(build_config("tiny", input_size=SMALL)).eval()
    emb = torch.randn(1, model.config.prompt_embed_dim, SMALL // 16, SMALL // 16)
    m = SMALL // 4
    fine = torch.randn(1, model.config.fmp_decoder_channels, m, m)
    bumped = fine.clone()
    bumped[..., 7, 9] += 5.0  # one S/4 cell
    mask = _blob(m, 5, 5)
    with torch.no_grad():
        la, _ = model.decode(emb, mask, fine)
        lb, _ = model.decode(emb, mask, bumped)
    change = (la - lb).abs().amax(dim=1)[0]
    assert (change[6:9, 8:11] > 1e-3).all()  # the cell and its 3x3-conv neighbours
    far = torch.cat([change[:4].flatten(), change[:, :5].flatten()])
    # elsewhere only GroupNorm's shared statistics move a little
    assert far.max() < 0.1 * change[7, 9]


def test_frozen_encoder_can_still_pass_gradients_to_the_fused_image():
    cfg = build_config("tiny", input_size=SMALL, freeze_image_encoder=True, encoder_backprop=True)
    model = FusionSAM(cfg).train()
    rgb, th = _inputs(1, SMALL)
    front = model.forward_front(rgb, th)
    fused = front.fused.detach().requires_grad_(True)
    logits, _ = model.decode(
        model.encode_image(fused), front.mask_logits.detach(), front.fine.detach()
    )
    logits.sum().backward()
    assert fused.grad is not None and fused.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.image_encoder.parameters())
