"""Project checkpoints and official SAM weight loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.build_sam import _build_sam

from fusionsam_model.data.classes import FMB, MFNET
from fusionsam_model.modeling.config import build_config
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.modeling.sam_weights import load_sam_weights
from fusionsam_model.runtime.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    compact_checkpoint,
    load_checkpoint,
    save_checkpoint,
    weights_digest,
)

S = 128


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = FusionSAM(build_config("tiny", input_size=S)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, MFNET, extra={"epoch": 3, "val_miou": 0.5})
    return model, path


def test_round_trip_rebuilds_the_same_network(saved):
    model, path = saved
    loaded, table, meta = load_checkpoint(path)
    assert table == MFNET and meta == {"epoch": 3, "val_miou": 0.5}
    assert loaded.config == model.config and not loaded.training
    rgb, th = torch.rand(1, 3, S, S), torch.rand(1, 1, S, S)
    with torch.no_grad():
        torch.testing.assert_close(loaded(rgb, th).class_logits, model(rgb, th).class_logits)


def test_float16_copy_is_half_the_size_and_loads_as_float32(saved, tmp_path):
    model, path = saved
    half = compact_checkpoint(path, tmp_path / "half.pt")
    assert half.stat().st_size < 0.6 * path.stat().st_size
    stored = torch.load(half, weights_only=True)
    assert stored["weights_dtype"] == "float16"
    assert stored["state_dict"]["image_encoder.patch_embed.proj.weight"].dtype == torch.float16
    loaded, table, meta = load_checkpoint(half)
    assert table == MFNET and meta == {"epoch": 3, "val_miou": 0.5}
    assert all(
        v.dtype == torch.float32 for v in loaded.state_dict().values() if v.is_floating_point()
    )
    rgb, th = torch.rand(1, 3, S, S), torch.rand(1, 1, S, S)
    with torch.no_grad():
        a, b = loaded(rgb, th).class_logits, model(rgb, th).class_logits
    assert (a - b).abs().max() < 0.05 * b.abs().max()  # float16 rounding only


def test_class_table_must_fit_the_model(saved, tmp_path):
    with pytest.raises(ValueError, match="15 classes"):
        save_checkpoint(tmp_path / "x.pt", saved[0], FMB)


def test_missing_file_says_so_and_how_to_get_one(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="not found") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "train" in str(e.value)


def test_truncated_file_is_reported(saved, tmp_path):
    data = saved[1].read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        load_checkpoint(bad)
    assert "re-train" in str(e.value) and str(bad) in str(e.value)


def test_corrupt_bytes_are_reported(saved, tmp_path):
    data = bytearray(saved[1].read_bytes())
    data[100:4000] = bytes(3900)  # zero a block inside the archive
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(bad)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(garbage)


def test_wrong_format_and_version(saved, tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a FusionSAM checkpoint"):
        load_checkpoint(other)
    sam_like = tmp_path / "sam_like.pt"
    torch.save({"image_encoder.pos_embed": torch.zeros(1)}, sam_like)
    with pytest.raises(CheckpointError, match="load_sam_weights"):
        load_checkpoint(sam_like)
    payload = torch.load(saved[1], weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    future = tmp_path / "future.pt"
    torch.save(payload, future)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(future)


def test_mismatched_shapes_list_the_keys(saved, tmp_path):
    payload = torch.load(saved[1], weights_only=True)
    key = "sam_decoder.presence_head.0.weight"
    payload["state_dict"][key] = torch.zeros(3, 3)
    gone = next(k for k in payload["state_dict"] if k.startswith("fmp."))
    del payload["state_dict"][gone]
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    payload["weights_sha256"] = weights_digest(payload["state_dict"])  # other code wrote it
    bad = tmp_path / "mismatch.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="shape mismatch") as e:
        load_checkpoint(bad)
    msg = str(e.value)
    assert key in msg and "(3, 3)" in msg
    assert "unexpected (1): extra.weight" in msg and f"missing (1): {gone}" in msg


def _small_sam_config(**kw):
    """Our config with the dims of ``_build_sam(64, 2, 2, [1])`` at S != 1024."""
    return build_config(
        "vit_b",
        input_size=256,
        encoder_embed_dim=64,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
        **kw,
    )


def test_official_layout_loads_with_adaptation_report(tmp_path):
    """A SAM built by segment_anything's own builder, saved like the official files."""
    torch.manual_seed(0)
    sam = _build_sam(
        encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1]
    )
    path = tmp_path / "sam_small.pth"
    official = sam.state_dict()
    torch.save(official, path)
    model = FusionSAM(_small_sam_config())
    report = load_sam_weights(model, path)
    text = str(report)
    assert "adapted: image_encoder.pos_embed: (1, 64, 64, 64) -> (1, 16, 16, 64)" in text
    assert any(k.startswith("image_encoder.blocks.1.attn.rel_pos_h") for k in report.adapted)
    assert any("mask_tokens.weight: (4, 256) -> (9, 256)" in k for k in report.adapted)
    assert any("output_hypernetworks_mlps.8." in k and "mlps.0." in k for k in report.adapted)
    assert any(k.startswith("mask_decoder.iou_prediction_head.") for k in report.dropped)
    assert report.random == [] and len(report.loaded) > 50
    own = model.state_dict()
    torch.testing.assert_close(
        own["image_encoder.blocks.0.attn.qkv.weight"],
        official["image_encoder.blocks.0.attn.qkv.weight"],
    )
    expected_pos = F.interpolate(
        official["image_encoder.pos_embed"].permute(0, 3, 1, 2), size=(16, 16), mode="bicubic"
    ).permute(0, 2, 3, 1)
    torch.testing.assert_close(own["image_encoder.pos_embed"], expected_pos)
    tokens = own["sam_decoder.mask_decoder.mask_tokens.weight"]
    torch.testing.assert_close(tokens[5], official["mask_decoder.mask_tokens.weight"][1])
    torch.testing.assert_close(
        own["sam_decoder.mask_decoder.output_hypernetworks_mlps.6.layers.0.weight"],
        official["mask_decoder.output_hypernetworks_mlps.2.layers.0.weight"],
    )
    with torch.no_grad():  # the adapted model runs
        out = model.eval()(torch.rand(1, 3, 256, 256), torch.rand(1, 1, 256, 256))
    assert torch.isfinite(out.class_logits).all()


def test_sam_weights_of_other_dimensions_are_refused(tmp_path):
    sam = _build_sam(
        encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1]
    )
    model = FusionSAM(build_config("tiny", input_size=S))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_sam_weights(model, sam.state_dict())
    not_sam = tmp_path / "not_sam.pth"
    torch.save({"foo": torch.zeros(1)}, not_sam)
    with pytest.raises(CheckpointError, match="not an official SAM checkpoint"):
        load_sam_weights(model, not_sam)


@pytest.mark.slow
def test_full_vit_b_registry_checkpoint_loads(tmp_path):
    """Same path as the fast test above at the real vit_b size (slow: 375 MB file)."""
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), path)
    model = FusionSAM(build_config("vit_b", input_size=512))
    report = load_sam_weights(model, path)
    assert report.random == [] and any("pos_embed" in k for k in report.adapted)


def test_weights_carry_a_checksum_and_damaged_bytes_are_refused(saved, tmp_path):
    import numpy as np

    from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT

    for source in (saved[1], BUNDLED_CHECKPOINT):  # a fresh save and the shipped model
        assert len(torch.load(source, weights_only=True)["weights_sha256"]) == 64
        data = bytearray(open(source, "rb").read())
        mid = len(data) // 2
        data[mid : mid + 64] = np.random.default_rng(7).integers(0, 256, 64, np.uint8).tobytes()
        bad = tmp_path / "damaged.pt"
        bad.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="corrupt") as e:
            load_checkpoint(bad)
        assert str(bad) in str(e.value)


def test_non_finite_weights_are_refused(saved, tmp_path):
    model = saved[0]
    broken = FusionSAM(model.config)
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.image_encoder.patch_embed.proj.weight[0, 0, 0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pt", broken, MFNET)  # checksum of the NaN weights
    with pytest.raises(CheckpointError, match=r"non-finite .* image_encoder.patch_embed"):
        load_checkpoint(path)
