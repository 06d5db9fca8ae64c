"""Engine-cache logic (hashing, staleness, restart) without TensorRT, plus the CLI's refusal."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fusionsam_model.deploy import engine_cache as ec
from fusionsam_model.deploy import export_format as fmt

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
IDENTITY = ("10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0")


def write_graph(path: Path, weight: np.ndarray, external: bool = False) -> Path:
    """A one-node ONNX graph (Y = X + W) whose hash depends on W."""
    w = numpy_helper.from_array(weight.astype(np.float32), name="W")
    node = helper.make_node("Add", ["X", "W"], ["Y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(weight.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(weight.shape))],
        [w],
    )
    model = helper.make_model(graph)
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            location=path.name + ".data",
            size_threshold=0,
        )
    else:
        onnx.save_model(model, str(path))
    return path


def key(**changes) -> ec.EngineKey:
    base = ec.EngineKey("a" * 64, *IDENTITY, "fp16")
    return dataclasses.replace(base, **changes)


def test_sha256_file_matches_hashlib(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # spans several read chunks
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert fmt.sha256_file(p, chunk=1 << 20) == hashlib.sha256(data).hexdigest()


def test_graph_hash_follows_weights(tmp_path):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 4))
    a = fmt.graph_sha256(write_graph(tmp_path / "a.onnx", w))
    b = fmt.graph_sha256(write_graph(tmp_path / "b.onnx", w))
    w2 = w.copy()
    w2[0, 0] += 1.0
    c = fmt.graph_sha256(write_graph(tmp_path / "c.onnx", w2))
    assert a == b
    assert a != c


def test_graph_hash_covers_external_data(tmp_path):
    w = np.random.default_rng(2).normal(size=(8, 8))
    path = write_graph(tmp_path / "ext.onnx", w, external=True)
    data_file = tmp_path / "ext.onnx.data"
    assert fmt.external_data_files(path) == [data_file]
    before = fmt.graph_sha256(path)
    raw = bytearray(data_file.read_bytes())
    raw[0] ^= 0xFF
    data_file.write_bytes(bytes(raw))
    assert fmt.graph_sha256(path) != before  # the .onnx itself did not change
    data_file.unlink()
    with pytest.raises(fmt.ExportError, match="missing external data"):
        fmt.graph_sha256(path)


def test_graph_hash_missing_file_names_it(tmp_path):
    with pytest.raises(fmt.ExportError, match="nope.onnx"):
        fmt.graph_sha256(tmp_path / "nope.onnx")


def test_decide_hit_and_misses():
    good = ec.make_sidecar(key(), engine_size=100, engine_sha256="e" * 64, build_seconds=1.0)
    assert ec.decide(good, key(), 100, "e" * 64).action == "load"
    assert ec.decide(good, key(), None).reason == "no cached engine"
    assert ec.decide(None, key(), 100).action == "build"
    assert ec.decide({"format": "other"}, key(), 100).action == "build"
    assert "100" in ec.decide(good, key(), 99).reason
    assert ec.decide(good, key(), 100, "f" * 64).action == "build"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("onnx_sha256", "b" * 64, "ONNX graph changed"),
        ("tensorrt_version", "10.11.0", "TensorRT version differs"),
        ("gpu_name", "NVIDIA H200", "another GPU"),
        ("compute_capability", "8.9", "compute capability"),
        ("precision", "fp32", "precision differs"),
    ],
)
def test_decide_detects_each_stale_field(field, value, words):
    sidecar = ec.make_sidecar(key(), 100, "e" * 64, 1.0)
    decision = ec.decide(sidecar, key(**{field: value}), 100, "e" * 64)
    assert decision.action == "build"
    assert words in decision.reason
    assert repr(value) in decision.reason


def test_timing_cache_is_per_trt_and_gpu(tmp_path):
    a = ec.timing_cache_path(tmp_path, key())
    b = ec.timing_cache_path(tmp_path, key(gpu_name="NVIDIA H200"))
    c = ec.timing_cache_path(tmp_path, key(tensorrt_version="10.11.0"))
    assert len({a, b, c}) == 3
    assert ec.timing_cache_path(tmp_path, key(onnx_sha256="c" * 64)) == a  # shared across graphs
    assert " " not in a.name


def test_store_then_check_round_trip(tmp_path):
    engine = ec.engine_path(tmp_path, "front", "fp16")
    ec.store_engine(engine, b"\x01" * 64, key(), 2.5)
    assert ec.check_cached_engine(engine, key()).action == "load"
    sidecar = json.loads(ec.sidecar_path(engine).read_text())
    assert sidecar["engine_sha256"] == hashlib.sha256(b"\x01" * 64).hexdigest()
    # same size, different bytes: caught by the content hash
    engine.write_bytes(b"\x02" * 64)
    assert "sha256" in ec.check_cached_engine(engine, key()).reason
    # truncated file: caught by the size
    engine.write_bytes(b"\x01" * 10)
    assert ec.check_cached_engine(engine, key()).action == "build"
    # missing sidecar (build interrupted after the engine was written)
    ec.store_engine(engine, b"\x01" * 64, key(), 2.5)
    ec.sidecar_path(engine).unlink()
    assert "sidecar" in ec.check_cached_engine(engine, key()).reason
    # corrupt sidecar
    ec.sidecar_path(engine).write_text("{not json")
    assert ec.check_cached_engine(engine, key()).action == "build"


def test_ensure_engine_restart_loads_and_foreign_rebuilds(tmp_path, monkeypatch, caplog):
    """TensorRT is absent here, so the builder is replaced by a recorder of build calls."""
    onnx_path = write_graph(tmp_path / "front.onnx", np.ones((2, 2)))
    builds: list[Path] = []

    def fake_build(path, fp16, workspace_gb, timing_cache):
        builds.append(timing_cache)
        return f"engine of {path.name} fp16={fp16}".encode()

    monkeypatch.setattr(ec, "build_engine", fake_build)
    cache = tmp_path / "engines"
    caplog.set_level(logging.INFO, logger="fusionsam.engine_cache")

    first = ec.ensure_engine(onnx_path, cache, fp16=True, identity=IDENTITY)
    assert len(builds) == 1 and first.read_bytes().startswith(b"engine of front.onnx")
    # a restart with the same graph, TensorRT and GPU loads from the cache
    assert ec.ensure_engine(onnx_path, cache, fp16=True, identity=IDENTITY) == first
    assert len(builds) == 1
    # a foreign GPU (the cache dir copied to another machine) rebuilds, with a log line
    caplog.clear()
    ec.ensure_engine(onnx_path, cache, fp16=True, identity=(IDENTITY[0], "NVIDIA H200", "9.0"))
    assert len(builds) == 2
    assert any("another GPU" in r.getMessage() for r in caplog.records)
    assert builds[0] != builds[1]  # separate timing caches
    # a new TensorRT version rebuilds too
    ec.ensure_engine(onnx_path, cache, fp16=True, identity=("10.11.0", "NVIDIA H200", "9.0"))
    assert len(builds) == 3
    # re-exported graph (new weights) rebuilds
    write_graph(onnx_path, np.zeros((2, 2)))
    ec.ensure_engine(onnx_path, cache, fp16=True, identity=("10.11.0", "NVIDIA H200", "9.0"))
    assert len(builds) == 4
    # fp32 is a separate engine file next to the fp16 one
    fp32 = ec.ensure_engine(
        onnx_path, cache, fp16=False, identity=("10.11.0", "NVIDIA H200", "9.0")
    )
    assert fp32.name == "front.fp32.engine" and len(builds) == 5


def test_ensure_engines_names_missing_graphs(tmp_path):
    write_graph(tmp_path / "front.onnx", np.ones((2, 2)))
    with pytest.raises(ec.EngineCacheError, match=r"image_encoder\.onnx, decoder\.onnx"):
        ec.ensure_engines(tmp_path)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_build_engine_cli_without_tensorrt_exits_nonzero(tmp_path):
    for graph in ec.GRAPH_NAMES:
        write_graph(tmp_path / f"{graph}.onnx", np.ones((2, 2)))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusionsam_model.deploy.engine_cache",
            "--onnx",
            str(tmp_path),
            "--fp16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "TensorRT is not installed" in proc.stderr
    assert not (tmp_path / "engines").exists()


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_tensorrt_import_error_is_clear():
    with pytest.raises(ec.EngineCacheError, match="pip install tensorrt"):
        ec.import_tensorrt()
