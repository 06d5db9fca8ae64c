"""SAM2 image encoder option: shapes, training gradients, official-layout weights, ONNX export.

Random weights at small S on CPU. The official-layout test builds SAM2's own full model
(``sam2.build_sam.build_sam2`` from its packaged YAML, no checkpoint) and loads its
state dict the way an official ``sam2.1_hiera_tiny.pt`` would be loaded.
"""

from __future__ import annotations

import pytest
import torch

from fusionsam_model.modeling.config import build_config
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.modeling.sam2_encoder import SAM2_SPECS, load_sam2_weights, sam2_available

pytestmark = pytest.mark.skipif(
    not sam2_available(),
    reason="sam2 not installed (SAM2_BUILD_CUDA=0 pip install --no-build-isolation -r requirements-sam2.txt)",
)


@pytest.fixture(scope="module")
def tiny_sam2() -> FusionSAM:
    torch.manual_seed(0)
    return FusionSAM(build_config("tiny", input_size=64, image_encoder="sam2_hiera_t"))


def test_specs_match_packaged_configs() -> None:
    """Our Hiera dims are the ones in sam2's own SAM2.1 YAML files."""
    from pathlib import Path

    import sam2
    import yaml

    root = Path(sam2.__file__).parent / "configs" / "sam2.1"
    files = {"sam2_hiera_t": "t", "sam2_hiera_s": "s", "sam2_hiera_b+": "b+", "sam2_hiera_l": "l"}
    for name, tag in files.items():
        enc = yaml.safe_load((root / f"sam2.1_hiera_{tag}.yaml").read_text())["model"][
            "image_encoder"
        ]
        trunk, spec = enc["trunk"], SAM2_SPECS[name]
        assert trunk["embed_dim"] == spec.embed_dim and trunk["num_heads"] == spec.num_heads
        assert tuple(trunk.get("stages", (2, 3, 16, 3))) == spec.stages
        assert tuple(trunk.get("global_att_blocks", (12, 16, 20))) == spec.global_att_blocks
        assert tuple(trunk.get("window_spec", (8, 4, 14, 7))) == spec.window_spec
        assert enc["neck"]["backbone_channel_list"] == spec.channel_list


def test_forward_shapes_and_gradients(tiny_sam2: FusionSAM) -> None:
    m = tiny_sam2.train()
    rgb, th = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    out = m(rgb, th)
    assert out.class_logits.shape == (2, 9, 16, 16)
    assert m.encode_image(out.fused).shape == (2, 128, 4, 4)  # stride 16, d_model = prompt dim
    out.class_logits.logsumexp(1).mean().backward()
    assert m.image_encoder.trunk.patch_embed.proj.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.fmp.parameters())
    m.zero_grad(set_to_none=True)


def test_sam2_needs_input_size_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        build_config("tiny", input_size=80, image_encoder="sam2_hiera_t")


def test_official_layout_loads_and_matches_sam2() -> None:
    """A SAM2.1-tiny state dict (SAM2's own model, random init) loads: trunk, neck, no_mem_embed,
    prompt encoder and the shared decoder copied; tokens tiled to C; video parts dropped; our
    encoder then reproduces SAM2's own stride-16 features + no_mem_embed."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    official = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    sd = {"model": official.state_dict()}
    model = FusionSAM(build_config("sam2_hiera_t", input_size=128)).eval()
    report = load_sam2_weights(model, sd)
    loaded = set(report.loaded)
    assert "image_encoder.trunk.patch_embed.proj.weight" in loaded
    assert "image_encoder.neck.convs.0.conv.weight" in loaded
    assert "image_encoder.no_mem_embed" in loaded
    assert "sam_decoder.mask_decoder.transformer.layers.0.self_attn.q_proj.weight" in loaded
    assert any(a.startswith("sam_decoder.mask_decoder.mask_tokens.weight") for a in report.adapted)
    assert any(k.startswith("memory_attention.") for k in report.dropped)
    assert any("conv_s0" in k for k in report.dropped)
    assert not [k for k in report.random if k.startswith("image_encoder.")]
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        ref = official.image_encoder(x)["vision_features"] + official.no_mem_embed.view(1, -1, 1, 1)
        ours = model.image_encoder(x)
    torch.testing.assert_close(ours, ref)
    assert "loaded" in str(report) and "dropped" in str(report)


def test_sam_checkpoint_is_refused_for_a_sam_vit_model() -> None:
    from fusionsam_model.runtime.checkpoint import CheckpointError

    vit = FusionSAM(build_config("tiny", input_size=64))
    with pytest.raises(CheckpointError, match="image_encoder=sam2_hiera"):
        load_sam2_weights(vit, {"model": {}})


def test_onnx_export_parity(tiny_sam2: FusionSAM, tmp_path) -> None:
    """The three graphs export with the SAM2 encoder inside and onnxruntime agrees."""
    pytest.importorskip("onnxruntime")
    from fusionsam_model.deploy.export import export_model
    from fusionsam_model.deploy.export_cli import compare_with_torch

    model = tiny_sam2.eval()
    export_model(model, tmp_path / "onnx")
    diff = compare_with_torch(model, tmp_path / "onnx")
    assert diff["class_logits"] < 1e-3, diff
    assert diff["class_id_agreement"] > 0.99, diff
