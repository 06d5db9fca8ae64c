"""The fast inference paths (issue 11) give the same answers as the plain ones: quantizer
codes, batched hypernetwork and cached decoder constants, exact label resize, thermal
normalised after the resize; plus the thread policy and the benchmark's interleaving."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fusionsam_model.modeling.quantizer import VectorQuantizer
from fusionsam_model.runtime.bench import interleave, peer_model
from fusionsam_model.runtime.preprocess import (
    _percentiles,
    _resize_pad,
    letterbox_for,
    normalize_thermal,
    resize_thermal,
    resized_argmax,
    unletterbox_logits,
)
from fusionsam_model.runtime.segmenter import Segmenter


@pytest.fixture(scope="module")
def bundled() -> Segmenter:
    return Segmenter.from_checkpoint()


def _pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from fusionsam_model.runtime.bench import synthetic_pair

    return synthetic_pair(h, w, seed)


# ---- quantizer ------------------------------------------------------------------------
def test_quantize_picks_the_codes_forward_picks_and_the_full_distance_formula() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(64, 8).eval()
    q.codebook.copy_(torch.randn(64, 8))
    z = torch.randn(2, 8, 12, 12)
    out = q(z)
    codes = q.codebook[out.indices].permute(0, 3, 1, 2)  # forward's z_q before straight-through
    assert torch.equal(q.quantize(z), codes)
    torch.testing.assert_close(out.z_q, codes)  # z + (z_q - z) rounds in the last bit
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    c = q.codebook
    full = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ c.t() + c.pow(2).sum(1)[None]
    assert torch.equal(out.indices.flatten(), full.argmin(1))
    with pytest.raises(ValueError, match=r"\(B, 8, h, w\)"):
        q.quantize(torch.randn(2, 7, 4, 4))


def test_inference_latents_equal_training_path_latents(bundled: Segmenter) -> None:
    model = bundled.backend.model
    rgb, thermal = torch.rand(1, 3, 256, 256), torch.rand(1, 1, 256, 256)
    with torch.inference_mode():
        plain = model.encode_latents(rgb, thermal)
        fast = model.encode_latents(rgb, thermal, inference=True)
    # same codes; the training path's straight-through sum z + (z_q - z) rounds in the last bit
    torch.testing.assert_close(fast.z_rgb, plain.z_rgb, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast.z_thermal, plain.z_thermal, rtol=0, atol=1e-6)
    assert fast.perplexity == {}  # the training terms are not computed


# ---- decoder ----------------------------------------------------------------------------
def test_batched_hypernetwork_matches_the_per_class_mlps(bundled: Segmenter) -> None:
    from fusionsam_model.modeling.sam_decoder import batched_hypernetwork

    dec = bundled.backend.model.sam_decoder
    mlps = dec.mask_decoder.output_hypernetworks_mlps
    tokens = torch.randn(2, len(mlps), dec.prompt_encoder.embed_dim)
    with torch.inference_mode():
        loop = torch.stack([m(tokens[:, i]) for i, m in enumerate(mlps)], dim=1)
        batched = batched_hypernetwork(
            tokens, dec.constants(bundled.backend.model.config.grid_size)["hyper_layers"]
        )
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-5)


def test_cached_constants_follow_weight_changes(bundled: Segmenter) -> None:
    model = bundled.backend.model
    cfg = model.config
    torch.manual_seed(1)
    g, m = cfg.grid_size, cfg.mask_size
    args = (
        torch.randn(1, cfg.prompt_embed_dim, g, g),
        torch.randn(1, 1, m, m),
        torch.randn(1, cfg.fmp_decoder_channels, m, m),
    )
    dec = model.sam_decoder
    ref = model.decode(*args)[0].detach()  # grad enabled: constants built in the graph
    with torch.inference_mode():
        cached = model.decode(*args)[0]
        again = model.decode(*args)[0]
    torch.testing.assert_close(cached, ref)
    assert torch.equal(cached, again)
    layer = dec.mask_decoder.output_hypernetworks_mlps[3].layers[2]
    saved = layer.bias.detach().clone()
    try:
        with torch.no_grad():
            layer.bias.add_(1.0)  # in place: same tensor, new version -> rebuilt
        with torch.inference_mode():
            changed = model.decode(*args)[0]
        assert not torch.allclose(changed[:, 3], cached[:, 3])
        torch.testing.assert_close(changed[:, 4], cached[:, 4])
    finally:
        with torch.no_grad():
            layer.bias.copy_(saved)


# ---- post-processing ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hw", "smooth"), [((480, 640), True), ((1080, 1920), True), ((37, 91), False)]
)
def test_resized_argmax_equals_argmax_of_resized_logits(hw, smooth) -> None:
    rng = np.random.default_rng(hw[0])
    logits = rng.normal(size=(9, 64, 64)).astype(np.float32)
    if smooth:  # class regions like a real prediction
        import cv2

        logits = cv2.GaussianBlur(logits.transpose(1, 2, 0), (0, 0), 3).transpose(2, 0, 1)
        logits = np.ascontiguousarray(logits * 20)
    box = letterbox_for(hw, 256)
    ref = unletterbox_logits(logits, box).argmax(-1)
    got = resized_argmax(logits, box)
    assert got.shape == hw and got.dtype == np.uint8
    assert (got != ref).mean() < 1e-5  # float ties only


def test_predict_without_fused_image_keeps_the_labels(bundled: Segmenter) -> None:
    rgb, thermal = _pair(120, 160)
    full = bundled.predict(rgb, thermal)
    lean = bundled.predict(rgb, thermal, return_fused=False)
    assert lean.fused is None and full.fused.shape == (120, 160, 3)
    assert np.array_equal(lean.labels, full.labels)


# ---- thermal --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("thermal_range", [None, (20.0, 200.0)])
def test_thermal_normalised_after_resize_equals_before(dtype, thermal_range) -> None:
    rng = np.random.default_rng(3)
    t = (rng.random((300, 500)) * 250).astype(dtype)
    if dtype == np.float32:
        t[5, 7] = np.nan
        t[100, 200] = np.inf
    box = letterbox_for(t.shape, 128)
    before = _resize_pad(normalize_thermal(t, thermal_range), box)
    after = resize_thermal(t, box, thermal_range)
    np.testing.assert_allclose(after, before, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_histogram_percentiles_equal_numpy(dtype) -> None:
    values = np.random.default_rng(4).integers(0, 4000 if dtype == np.uint16 else 256, 9999)
    values = values.astype(dtype)
    ref = np.percentile(values.astype(np.float64), (1.0, 99.0))
    np.testing.assert_allclose(_percentiles(values, (1.0, 99.0)), ref, rtol=0, atol=1e-9)


# ---- threads and benchmark ------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")], ids=["default", "user"]
)
def test_entry_points_set_passive_wait_policy_before_torch(preset, expected) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        "import sys, fusionsam_model.runtime.bench as b, fusionsam_model.runtime.threads as t, os;"
        "print(os.environ['OMP_WAIT_POLICY'], t.passive_wait_policy())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [expected, str(expected == "PASSIVE")]


def test_onnxruntime_sessions_do_not_spin() -> None:
    from fusionsam_model.runtime.threads import ort_session_options

    options = ort_session_options(2)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


def test_interleave_rotates_the_order_and_times_every_call() -> None:
    order: list[str] = []
    calls = {n: (lambda n=n: order.append(n)) for n in "abc"}
    samples = interleave(calls, rounds=3, warmup=1)
    assert order == list("abc" + "abc" + "bca" + "cab")
    assert all(len(s["total"]) == 3 for s in samples.values())


def test_peer_model_takes_four_channels() -> None:
    model = peer_model("lraspp_mobilenet_v3_large", 9)
    with torch.inference_mode():
        out = model(torch.rand(1, 4, 64, 64))["out"]
    assert out.shape == (1, 9, 64, 64)


def test_peers_prints_a_ratio_for_every_model(capsys) -> None:
    from fusionsam_model.runtime.bench import PEERS, parse_args, peers

    args = parse_args(["--preset", "tiny", "--size", "64", "--iters", "1", "--warmup", "0"])
    ratios = peers(args)
    assert set(ratios) == {"fusionsam", *PEERS} and ratios["fusionsam"] == 1.0
    assert all(r > 0 for r in ratios.values())
    assert "lraspp_mobilenet_v3_large" in capsys.readouterr().out


def test_auto_backend_uses_onnxruntime_only_for_an_existing_export(tmp_path, monkeypatch) -> None:
    from fusionsam_model.runtime.segmenter import auto_backend

    monkeypatch.setenv("FUSIONSAM_CACHE_DIR", str(tmp_path))  # an empty export cache
    seg = Segmenter.from_checkpoint(backend="auto", threads=1)
    assert seg.backend_name == "torch"  # nothing exported: no export is started either
    assert not any(tmp_path.rglob("manifest.json"))
    model = seg.backend.model
    assert auto_backend(model, "cpu", "fp32", tmp_path / "exp") == ("onnxruntime", tmp_path / "exp")
    assert auto_backend(model, "cuda", "fp32", tmp_path / "exp") == ("torch", None)


def test_node_palette_lookup_equals_indexing() -> None:
    pytest.importorskip("rclpy", reason="the node module needs rclpy")
    from fusionsam_ros.node.node import colorize, palette_lut

    palette = np.random.default_rng(5).integers(0, 256, (9, 3)).astype(np.uint8)
    labels = np.random.default_rng(6).integers(0, 9, (37, 53)).astype(np.uint8)
    assert np.array_equal(colorize(labels, palette_lut(palette)), palette[labels])
