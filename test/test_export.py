"""ONNX export + onnxruntime backend: graphs, manifest, parity with PyTorch, Segmenter and node.

One export of the conftest tiny checkpoint (S=64) is made through the on-the-fly export
cache and shared by every test here: the Segmenter and the node must then find it in
the cache instead of exporting again.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time

import numpy as np
import onnx
import pytest
import torch
from ros_helpers import make_image, start_fusionsam_node, wait_until

from fusionsam_model.data.classes import MFNET
from fusionsam_model.deploy import export as ex
from fusionsam_model.deploy import export_cli
from fusionsam_model.deploy import export_format as fmt
from fusionsam_model.deploy.export_format import graph_sha256
from fusionsam_model.modeling.composition import NUM_MAPS
from fusionsam_model.runtime.backends import make_backend
from fusionsam_model.runtime.backends.onnxruntime_backend import (
    OnnxRuntimeBackend,
    select_providers,
)
from fusionsam_model.runtime.checkpoint import load_checkpoint
from fusionsam_model.runtime.segmenter import Segmenter

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def cache_base(tmp_path_factory):
    return tmp_path_factory.mktemp("fusionsam_cache")


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    model, table, _ = load_checkpoint(tiny_checkpoint)
    return model, table


@pytest.fixture(scope="module")
def export_dir(tiny_model, cache_base):
    model, table = tiny_model
    start = time.perf_counter()
    path = ex.resolve_export_dir(model, class_table=table, cache_root=cache_base / "onnx")
    print(f"\ntiny S=64 export: {time.perf_counter() - start:.1f} s")
    return path


def cached_exports(cache_base):
    return sorted(p.name for p in (cache_base / "onnx").iterdir() if not p.name.startswith("."))


def test_export_writes_checked_graphs_and_manifest(export_dir, tiny_model):
    model, table = tiny_model
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert manifest["format"] == fmt.MANIFEST_FORMAT
    assert manifest["input_size"] == 64 and manifest["batch_size"] == 1
    assert manifest["precision"] == "fp32" and manifest["opset"] == ex.DEFAULT_OPSET
    assert manifest["class_table"] == MFNET.to_dict() == table.to_dict()
    assert manifest["model_config"] == model.config.to_dict()
    assert manifest["source"]["model_sha256"] == ex.model_fingerprint(model)
    fine_ch = model.config.fmp_decoder_channels
    expected_io = {
        "front": (
            {"rgb": [1, 3, 64, 64], "thermal": [1, 1, 64, 64]},
            {
                "fused": [1, 3, 64, 64],
                "fusion_maps": [1, NUM_MAPS, 16, 16],
                "mask_logits": [1, 1, 16, 16],
                "fine": [1, fine_ch, 16, 16],
            },
        ),
        "image_encoder": (
            {"fused": [1, 3, 64, 64]},
            {"image_embedding": [1, model.config.prompt_embed_dim, 4, 4]},
        ),
        "decoder": (
            {
                "image_embedding": [1, model.config.prompt_embed_dim, 4, 4],
                "mask_logits": [1, 1, 16, 16],
                "fine": [1, fine_ch, 16, 16],
            },
            {"class_logits": [1, 9, 16, 16], "presence": [1, 9]},
        ),
    }
    for name, (inputs, outputs) in expected_io.items():
        entry = manifest["graphs"][name]
        path = export_dir / entry["file"]
        onnx.checker.check_model(str(path))
        assert entry["sha256"] == graph_sha256(path)
        assert entry["inputs"] == inputs and entry["outputs"] == outputs
        opsets = {o.domain: o.version for o in onnx.load(str(path)).opset_import}
        assert opsets[""] == ex.DEFAULT_OPSET
    fmt.read_manifest(export_dir, verify_hashes=True)


def test_onnxruntime_matches_torch_on_fresh_inputs(export_dir, tiny_model):
    model, _ = tiny_model
    backend = OnnxRuntimeBackend(export_dir, device="cpu")
    assert backend.providers == ["CPUExecutionProvider"]
    gen = torch.Generator().manual_seed(int(time.time_ns() % 2**31))
    rgb = torch.rand(3, 3, 64, 64, generator=gen)  # batch 3 > graph batch 1: chunked
    thermal = torch.rand(3, 1, 64, 64, generator=gen)
    out = backend.infer(rgb, thermal)
    with torch.inference_mode():
        front = model.forward_front(rgb, thermal)
        embedding = model.encode_image(front.fused)
        logits, presence = model.decode(embedding, front.mask_logits, front.fine)
    assert out.class_logits.shape == logits.shape == (3, 9, 16, 16)
    assert (out.fused - front.fused).abs().max().item() < 1e-3
    assert (out.mask_logits - front.mask_logits).abs().max().item() < 1e-3
    assert (out.class_logits - logits).abs().max().item() < 1e-3
    assert (out.presence - presence).abs().max().item() < 1e-3
    agree = (out.class_logits.argmax(1) == logits.argmax(1)).float().mean().item()
    assert agree >= 0.999
    assert set(out.timings) == {"front", "image_encoder", "decoder"}
    assert all(v > 0 for v in out.timings.values())


def test_segmenter_from_checkpoint_uses_cached_export(
    export_dir, tiny_checkpoint, cache_base, monkeypatch
):
    monkeypatch.setenv(fmt.CACHE_ENV, str(cache_base))
    before = cached_exports(cache_base)
    seg = Segmenter.from_checkpoint(tiny_checkpoint, backend="onnxruntime")
    assert cached_exports(cache_base) == before == [export_dir.name]  # reused, not re-exported
    assert seg.backend_name == "onnxruntime" and seg.class_table == MFNET
    ref = Segmenter.from_checkpoint(tiny_checkpoint, backend="torch")
    rng = np.random.default_rng(int(time.time_ns() % 2**31))
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    thermal = rng.integers(20000, 40000, (480, 640), dtype=np.uint16)
    pred = seg.predict(rgb, thermal, return_probs=True)
    want = ref.predict(rgb, thermal, return_probs=True)
    assert pred.labels.shape == (480, 640) and pred.labels.dtype == np.uint8
    assert pred.fused.shape == (480, 640, 3) and pred.fused.dtype == np.uint8
    assert (pred.labels == want.labels).mean() >= 0.999
    assert np.abs(pred.probs - want.probs).max() < 1e-3
    assert np.abs(pred.fused.astype(int) - want.fused.astype(int)).max() <= 1
    assert pred.timings["image_encoder"] > 0 and pred.timings["total"] > 0
    given = Segmenter.from_checkpoint(tiny_checkpoint, backend="onnxruntime", export_dir=export_dir)
    assert given.backend.export_dir == export_dir
    assert (given.predict(rgb, thermal, return_probs=True).labels == pred.labels).all()  # same path


def test_export_cli_cache_is_what_backend_auto_finds(
    export_dir, tiny_checkpoint, cache_base, monkeypatch, capsys
):
    monkeypatch.setenv(fmt.CACHE_ENV, str(cache_base))
    assert export_cli.main(["--checkpoint", str(tiny_checkpoint), "--cache"]) == 0
    assert f"to {export_dir}" in capsys.readouterr().out  # the same key as the backends use
    assert cached_exports(cache_base) == [export_dir.name]
    seg = Segmenter.from_checkpoint(tiny_checkpoint, backend="auto")
    assert seg.backend_name == "onnxruntime" and seg.backend.export_dir == export_dir
    assert seg.threads_info() == "one per core (set when the onnxruntime backend was built)"
    seg.set_cpu_threads(0)  # measured while running, as the node's cpu_threads=0
    rgb, thermal = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    want = seg.predict(rgb, thermal).labels
    tuner = seg.thread_tuner
    for _ in range(len(tuner.candidates) * tuner.probe_calls + 2):
        assert (seg.predict(rgb, thermal).labels == want).all()  # any thread count, same labels
    assert set(tuner.medians()) == set(tuner.candidates)
    assert sorted(seg.backend._sessions_by_threads) == tuner.candidates  # one session set each
    assert export_cli.main(["--checkpoint", str(tiny_checkpoint), "--cache", "--batch", "2"]) == 2


def test_backend_factory_accepts_export_dir_and_checks_size(export_dir):
    backend = make_backend("onnxruntime", export_dir, device="cpu", precision="fp32")
    assert backend.input_size == 64 and backend.num_classes == 9
    with pytest.raises(fmt.ExportError, match="S=64.*S=128"):
        make_backend("onnxruntime", export_dir, input_size=128)
    with pytest.raises(ValueError, match="fp32 graphs but precision='fp16'"):
        OnnxRuntimeBackend(export_dir, precision="fp16")
    with pytest.raises(ValueError, match="fp32 or fp16"):
        make_backend("onnxruntime", export_dir, precision="bf16")


def test_provider_choice():
    assert select_providers(torch.device("cpu"), ["CPUExecutionProvider"], ex.Path("."), False) == [
        "CPUExecutionProvider"
    ]
    gpu = select_providers(
        torch.device("cuda:1"),
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        ex.Path("/x"),
        False,
    )
    assert [p if isinstance(p, str) else p[0] for p in gpu] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert gpu[1][1]["device_id"] == 1
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        select_providers(torch.device("cuda"), ["CPUExecutionProvider"], ex.Path("."), False)


def test_read_manifest_errors(export_dir, tmp_path):
    with pytest.raises(fmt.ExportError, match="no manifest.json"):
        fmt.read_manifest(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    (broken / "decoder.onnx").unlink()
    with pytest.raises(fmt.ExportError, match="decoder.onnx is missing"):
        fmt.read_manifest(broken)
    shutil.copy(export_dir / "front.onnx", broken / "decoder.onnx")
    fmt.read_manifest(broken)  # complete again; only the hash check sees the swap
    with pytest.raises(fmt.ExportError, match="does not match its sha256"):
        fmt.read_manifest(broken, verify_hashes=True)


def test_export_cli_rejects_bad_input(tmp_path, capsys):
    assert (
        export_cli.main(
            ["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "missing.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_cli.main(
            ["--checkpoint", "preset:tiny", "--out", str(tmp_path / "o"), "--size", "70"]
        )
    assert export_cli.main(["--checkpoint", "preset:nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_torch_backend_rejects_unknown_compile_mode(tiny_model):
    from fusionsam_model.runtime.backends.torch_backend import TorchBackend

    with pytest.raises(ValueError, match="reduce-overhead"):
        TorchBackend(tiny_model[0], compile="fastest")


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_tensorrt_backend_without_tensorrt_says_so(export_dir):
    with pytest.raises(RuntimeError, match="TensorRT is not installed"):
        make_backend("tensorrt", export_dir, device="cuda")


@pytest.mark.slow
def test_export_cli_tiny_default_size_with_verify(tmp_path, capsys):
    """The preset's own S (320): covered at S=64 by the tests above, so kept out of CI."""
    assert export_cli.main(["--checkpoint", "preset:tiny", "--out", str(tmp_path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "exported S=320 fp32" in out and "class_id_agreement 1" in out
    assert fmt.read_manifest(tmp_path, verify_hashes=True)["input_size"] == 320


# ----------------------------------------------------------------------------- the node


def test_node_default_backend_runs_the_cached_export_with_onnxruntime(
    export_dir, cache_base, tiny_checkpoint, ros_env, ros_client, tmp_path
):
    from diagnostic_msgs.msg import DiagnosticArray

    from fusionsam_ros.node.diagnostics import diagnostics_values
    from fusionsam_ros.node.image_conversion import image_to_array
    from fusionsam_ros.node.node import DIAGNOSTIC_NAME

    env = dict(ros_env, **{fmt.CACHE_ENV: str(cache_base)})
    node = start_fusionsam_node(env, tmp_path, checkpoint=tiny_checkpoint)  # backend: auto
    try:
        assert node.returncode is None, node.output()
        assert "(onnxruntime," in node.output()
        assert cached_exports(cache_base) == [export_dir.name]  # the node reused the export
        ros_client.publisher("rgb/image")
        ros_client.publisher("thermal/image")
        received = ros_client.subscribe("fusionsam/semantic")
        ros_client.subscribe("/diagnostics", DiagnosticArray)
        assert ros_client.wait_for_peers(), node.output()

        rng = np.random.default_rng(7)
        rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        thermal = rng.integers(0, 256, (480, 640), dtype=np.uint8)
        stamp = time.time_ns()
        ros_client.publisher("rgb/image").publish(make_image(rgb, "rgb8", stamp))
        ros_client.publisher("thermal/image").publish(make_image(thermal, "mono8", stamp))
        assert wait_until(lambda: len(received) > 0, 30.0), node.output()[-3000:]

        labels = image_to_array(received[-1])
        want = Segmenter.from_checkpoint(tiny_checkpoint, backend="torch").predict(rgb, thermal)
        assert labels.shape == (480, 640)
        assert (labels == want.labels).mean() >= 0.999

        def backend_reported() -> bool:
            for msg in ros_client.received("/diagnostics"):
                values = diagnostics_values(msg, DIAGNOSTIC_NAME)
                if values and values.get("backend") == "onnxruntime":
                    return True
            return False

        assert wait_until(backend_reported, 10.0)
    finally:
        assert node.stop() == 0, node.output()[-3000:]
