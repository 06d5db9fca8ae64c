"""Inference API: any H x W in, same H x W out; batching; checkpoints; backends; bench CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionsam_model import BUNDLED_CHECKPOINT, CheckpointError, Prediction, Segmenter
from fusionsam_model.runtime.backends import Backend, BackendOutput, make_backend
from fusionsam_model.runtime.bench import main as bench_main
from fusionsam_model.runtime.checkpoint import save_checkpoint
from fusionsam_model.runtime.segmenter import STAGES


def _pair(h: int, w: int, seed: int = 0, thermal_dtype=np.uint8):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if thermal_dtype == np.uint16:
        th = rng.integers(20000, 30000, (h, w), dtype=np.uint16)
    elif thermal_dtype == np.float32:
        th = rng.uniform(270.0, 320.0, (h, w)).astype(np.float32)
    else:
        th = rng.integers(0, 256, (h, w), dtype=np.uint8)
    return rgb, th


@pytest.fixture(scope="module")
def tiny():
    """The real tiny preset (default S), random weights."""
    return Segmenter.from_preset("tiny", class_table="mfnet")


@pytest.mark.parametrize(
    ("hw", "dtype"), [((480, 640), np.uint8), ((600, 800), np.uint16), ((333, 517), np.float32)]
)
def test_predictions_come_back_at_the_input_size(tiny, hw, dtype):
    rgb, th = _pair(*hw, thermal_dtype=dtype)
    pred = tiny.predict(rgb, th, return_probs=True)
    assert isinstance(pred, Prediction)
    assert pred.labels.shape == hw and pred.labels.dtype == np.uint8
    assert pred.fused.shape == (*hw, 3) and pred.fused.dtype == np.uint8
    assert pred.probs.shape == (9, *hw) and pred.probs.dtype == np.float32
    assert np.allclose(pred.probs.sum(0), 1.0, atol=1e-4)
    assert np.mean(pred.probs.argmax(0) != pred.labels) < 1e-3  # ties after exp() aside
    assert pred.labels.max() < tiny.class_table.num_classes
    assert set(STAGES) <= set(pred.timings) and all(v >= 0 for v in pred.timings.values())
    assert tiny.predict(rgb, th).probs is None


def test_batch_equals_one_by_one(tiny):
    pairs = [_pair(480, 640, 1), _pair(600, 800, 2)]
    batch = tiny.predict_batch([p[0] for p in pairs], [p[1] for p in pairs], return_probs=True)
    for (rgb, th), b in zip(pairs, batch, strict=True):
        one = tiny.predict(rgb, th, return_probs=True)
        # float32 kernels take other paths for another batch size; the decoder's fine skip
        # carries FMP's S/4 features straight into the class logits, so rounding reaches
        # ~1e-4 in probabilities here (1e-5 without the skip): rounding, not a batching bug.
        # The fused image's detail choice is a comparison: where the two cameras' detail
        # activity is equal to the last bit, rounding flips a 2 x 2 block of the S x S image
        # (measured: 0.011 % of the labels).
        np.testing.assert_allclose(one.probs, b.probs, atol=5e-4)
        assert np.array_equal(one.labels, b.labels) or np.mean(one.labels != b.labels) < 5e-4
        assert np.abs(one.fused.astype(int) - b.fused.astype(int)).max() <= 1


def test_thermal_range_changes_the_input(tiny):
    """A fixed range and auto gain give different normalised thermal, hence outputs."""
    rgb, th = _pair(240, 320, 4, thermal_dtype=np.uint16)
    fixed = Segmenter(tiny.backend, tiny.class_table, thermal_range=(0, 65535))
    a = tiny.predict(rgb, th, return_probs=True).probs
    b = fixed.predict(rgb, th, return_probs=True).probs
    assert not np.allclose(a, b)


def test_bad_inputs_are_named(tiny):
    rgb, th = _pair(480, 640)
    with pytest.raises(ValueError, match="same H x W"):
        tiny.predict(rgb, th[:240])
    with pytest.raises(ValueError, match="rgb image must be"):
        tiny.predict(rgb[..., 0], th)
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("nope", None)
    with pytest.raises(ValueError, match="unknown precision"):
        Segmenter.from_preset("tiny", input_size=64, precision="fp8")


def test_from_checkpoint_reproduces_the_saved_model(tmp_path):
    seg = Segmenter.from_preset("tiny", class_table="fmb", input_size=128, seed=3)
    path = save_checkpoint(tmp_path / "fmb_tiny.pt", seg.backend.model, seg.class_table)
    loaded = Segmenter.from_checkpoint(path, thermal_range=(0, 255))
    assert loaded.class_table.name == "fmb" and loaded.backend_name == "torch"
    assert loaded.input_size == 128 and loaded.thermal_range == (0, 255)
    rgb, th = _pair(600, 800, 5)
    seg.thermal_range = (0, 255)
    np.testing.assert_allclose(
        loaded.predict(rgb, th, return_probs=True).probs,
        seg.predict(rgb, th, return_probs=True).probs,
        atol=1e-5,
    )
    with pytest.raises(CheckpointError, match="not found"):
        Segmenter.from_checkpoint(tmp_path / "missing.pt")


def test_bundled_checkpoint_path_is_in_the_package():
    assert BUNDLED_CHECKPOINT.name == "fusionsam_tiny_synth.pt"
    assert BUNDLED_CHECKPOINT.parent.name == "weights"


def test_torch_backend_follows_the_protocol(tiny):
    backend = tiny.backend
    assert isinstance(backend, Backend) and backend.name == "torch"
    s = backend.input_size
    out = backend.infer(torch.rand(2, 3, s, s), torch.rand(2, 1, s, s))
    assert isinstance(out, BackendOutput)
    assert out.class_logits.shape == (2, 9, s // 4, s // 4) and out.presence.shape == (2, 9)
    assert out.fused.shape == (2, 3, s, s) and out.mask_logits.shape == (2, 1, s // 4, s // 4)
    assert {"lstg", "fmp", "image_encoder", "decoder"} <= set(out.timings)


@pytest.mark.parametrize("precision", ["bf16"])
def test_reduced_precision_runs(precision):
    seg = Segmenter.from_preset("tiny", input_size=64, precision=precision)
    pred = seg.predict(*_pair(48, 64))
    assert pred.labels.shape == (48, 64)


def test_bench_prints_the_table(capsys):
    assert (
        bench_main(
            ["--preset", "tiny", "--size", "64", "--iters", "2", "--warmup", "1", "--threads", "2"]
        )
        == 0
    )
    out = capsys.readouterr().out
    for stage in (*STAGES, "total", "pairs/s", "image_encoder", "peak memory", "trainable"):
        assert stage in out
