"""TensorRT engines for the exported ONNX graphs, cached so a restart loads instead of rebuilding.

An engine is only valid for the exact ONNX graph, TensorRT version and GPU it was built
with, so each ``<graph>.<precision>.engine`` has a sidecar ``.engine.json`` holding that
key (plus the engine's own size and sha256 to catch a truncated file). The cache decision
(``decide``) is a pure function of the sidecar and the expected key, testable without
TensorRT; only ``build_engine`` and ``runtime_identity`` touch TensorRT and the GPU.

CLI: ``fusionsam-build-engine --onnx DIR [--fp16] [--workspace GB] [--cache-dir D]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fusionsam_model.deploy.export_format import (
    GRAPH_NAMES,
    ExportError,
    graph_sha256,
    sha256_file,
)

LOG = logging.getLogger("fusionsam.engine_cache")

SIDECAR_FORMAT = "fusionsam-trt-engine/1"


class EngineCacheError(RuntimeError):
    """TensorRT or a GPU is missing, or an engine could not be built or read."""


@dataclass(frozen=True)
class EngineKey:
    """What an engine depends on: a change in any field makes a cached engine unusable."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str  # "fp32" or "fp16"


@dataclass(frozen=True)
class CacheDecision:
    action: str  # "load" or "build"
    reason: str


# ----------------------------------------------------------------------------- cache logic


def engine_path(cache_dir: Path, graph: str, precision: str) -> Path:
    return Path(cache_dir) / f"{graph}.{precision}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def timing_cache_path(cache_dir: Path, key: EngineKey) -> Path:
    """One timing cache per TensorRT version and GPU: timings from another pair are useless."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{key.tensorrt_version}-{key.gpu_name}").strip("-")
    return Path(cache_dir) / f"timing-{slug}.cache"


def make_sidecar(
    key: EngineKey, engine_size: int, engine_sha256: str, build_seconds: float
) -> dict:
    return {
        "format": SIDECAR_FORMAT,
        "key": asdict(key),
        "engine_size": engine_size,
        "engine_sha256": engine_sha256,
        "build_seconds": round(build_seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


_FIELD_WORDS = {
    "onnx_sha256": "ONNX graph changed",
    "tensorrt_version": "TensorRT version differs",
    "gpu_name": "built on another GPU",
    "compute_capability": "built for another compute capability",
    "precision": "precision differs",
}


def decide(
    sidecar: dict | None,
    expected: EngineKey,
    engine_size: int | None,
    engine_sha256: str | None = None,
) -> CacheDecision:
    """Load the cached engine only when its sidecar matches ``expected`` field for field.

    ``engine_size`` is None when the engine file is missing; ``engine_sha256`` is checked
    when given (it costs a read of the engine, done once at start-up).
    """
    if engine_size is None:
        return CacheDecision("build", "no cached engine")
    if sidecar is None:
        return CacheDecision("build", "engine has no readable sidecar (interrupted build?)")
    if sidecar.get("format") != SIDECAR_FORMAT or not isinstance(sidecar.get("key"), dict):
        return CacheDecision(
            "build", f"sidecar format {sidecar.get('format')!r} is not {SIDECAR_FORMAT}"
        )
    cached = sidecar["key"]
    for field, words in _FIELD_WORDS.items():
        want = getattr(expected, field)
        have = cached.get(field)
        if have != want:
            return CacheDecision("build", f"stale engine: {words} (cached {have!r}, now {want!r})")
    if sidecar.get("engine_size") != engine_size:
        return CacheDecision(
            "build",
            f"engine file is {engine_size} bytes, sidecar says {sidecar.get('engine_size')}",
        )
    if engine_sha256 is not None and sidecar.get("engine_sha256") != engine_sha256:
        return CacheDecision("build", "engine file content does not match its sidecar sha256")
    return CacheDecision("load", "cache hit")


def read_sidecar(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_cached_engine(engine: Path, expected: EngineKey) -> CacheDecision:
    """File-system wrapper around ``decide`` for one engine path."""
    engine = Path(engine)
    size = engine.stat().st_size if engine.is_file() else None
    sidecar = read_sidecar(sidecar_path(engine)) if size is not None else None
    digest = None
    if size is not None and sidecar is not None and sidecar.get("engine_size") == size:
        digest = sha256_file(engine)
    return decide(sidecar, expected, size, digest)


def write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, so a crash never leaves a half engine under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_engine(engine: Path, data: bytes, key: EngineKey, build_seconds: float) -> None:
    """Engine first, sidecar last: an engine without sidecar is treated as stale."""
    sidecar_path(engine).unlink(missing_ok=True)
    write_atomic(engine, data)
    sidecar = make_sidecar(key, len(data), hashlib.sha256(data).hexdigest(), build_seconds)
    write_atomic(sidecar_path(engine), (json.dumps(sidecar, indent=2) + "\n").encode())


# ----------------------------------------------------------------------------- TensorRT side


def import_tensorrt():
    """Import TensorRT or raise one clear error saying what is missing and how to get it."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as exc:
        raise EngineCacheError(
            "TensorRT is not installed (import tensorrt failed: "
            f"{exc}). Install the TensorRT Python wheel matching your CUDA "
            "(pip install tensorrt) on a machine with an NVIDIA GPU, or use "
            "backend 'onnxruntime' or 'torch'."
        ) from exc
    return trt


def runtime_identity() -> tuple[str, str, str]:
    """(TensorRT version, GPU name, compute capability) of this machine."""
    trt = import_tensorrt()
    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        raise EngineCacheError(
            "no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT engines "
            "can only be built and run on an NVIDIA GPU"
        )
    major, minor = torch.cuda.get_device_capability(0)
    return trt.__version__, torch.cuda.get_device_name(0), f"{major}.{minor}"


def expected_key(onnx_path: Path, precision: str, identity: tuple[str, str, str]) -> EngineKey:
    trt_version, gpu, cc = identity
    return EngineKey(graph_sha256(onnx_path), trt_version, gpu, cc, precision)


def build_engine(onnx_path: Path, fp16: bool, workspace_gb: float, timing_cache: Path) -> bytes:
    """Parse the ONNX graph and build a serialized engine, reusing and updating the timing cache."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineCacheError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        LOG.warning("timing cache %s rejected; starting an empty one", timing_cache)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineCacheError(
            f"TensorRT failed to build an engine from {onnx_path} (see log above)"
        )
    write_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def ensure_engine(
    onnx_path: Path,
    cache_dir: Path,
    fp16: bool = True,
    workspace_gb: float = 4.0,
    identity: tuple[str, str, str] | None = None,
) -> Path:
    """Return a usable engine for ``onnx_path``: the cached one on a hit, else a fresh build."""
    onnx_path = Path(onnx_path)
    precision = "fp16" if fp16 else "fp32"
    identity = identity or runtime_identity()
    key = expected_key(onnx_path, precision, identity)
    engine = engine_path(cache_dir, onnx_path.stem, precision)
    decision = check_cached_engine(engine, key)
    if decision.action == "load":
        LOG.info("engine %s: %s", engine, decision.reason)
        return engine
    LOG.warning("building engine %s: %s", engine, decision.reason)
    start = time.perf_counter()
    data = build_engine(onnx_path, fp16, workspace_gb, timing_cache_path(cache_dir, key))
    seconds = time.perf_counter() - start
    store_engine(engine, data, key, seconds)
    LOG.info("built %s in %.1f s (%.1f MB)", engine, seconds, len(data) / 1e6)
    return engine


def default_cache_dir(onnx_dir: Path) -> Path:
    return Path(onnx_dir) / "engines"


def ensure_engines(
    onnx_dir: Path, cache_dir: Path | None = None, fp16: bool = True, workspace_gb: float = 4.0
) -> dict[str, Path]:
    """Engines for the three graphs of an export directory, keyed by graph name."""
    onnx_dir = Path(onnx_dir)
    missing = [g for g in GRAPH_NAMES if not (onnx_dir / f"{g}.onnx").is_file()]
    if missing:
        raise EngineCacheError(
            f"{onnx_dir} lacks {', '.join(g + '.onnx' for g in missing)}; "
            "create it with fusionsam-export --checkpoint C --out DIR"
        )
    identity = runtime_identity()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(onnx_dir)
    LOG.info("TensorRT %s on %s (sm %s), cache %s", *identity, cache_dir)
    return {
        g: ensure_engine(onnx_dir / f"{g}.onnx", cache_dir, fp16, workspace_gb, identity)
        for g in GRAPH_NAMES
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fusionsam-build-engine",
        description="Build (or load from cache) TensorRT engines for a fusionsam-export directory.",
    )
    parser.add_argument(
        "--onnx", required=True, type=Path, help="directory written by fusionsam-export"
    )
    parser.add_argument("--fp16", action="store_true", help="allow FP16 kernels (recommended)")
    parser.add_argument("--workspace", type=float, default=4.0, help="builder workspace in GB")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: ONNX_DIR/engines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.workspace <= 0:
        parser.error(f"--workspace must be positive, got {args.workspace}")
    try:
        engines = ensure_engines(args.onnx, args.cache_dir, args.fp16, args.workspace)
    except (EngineCacheError, ExportError) as exc:
        print(f"fusionsam-build-engine: error: {exc}", file=sys.stderr)
        return 2
    for graph, path in engines.items():
        print(f"{graph}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
