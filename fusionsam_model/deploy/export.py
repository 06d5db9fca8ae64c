"""ONNX export of FusionSAM as three static-shape graphs plus a manifest (``fusionsam-export``).

The graphs are the model's three export-friendly parts, so every runtime runs the same
stages the torch backend times:

* ``front.onnx``          rgb (B,3,S,S), thermal (B,1,S,S) -> fused (B,3,S,S), mask_logits (B,1,S/4,S/4),
                          fine (B,F,S/4,S/4)
* ``image_encoder.onnx``  fused -> image_embedding (B,E,g,g)
* ``decoder.onnx``        image_embedding, mask_logits, fine -> class_logits (B,C,S/4,S/4), presence (B,C)
  (the sparse prompts are derived from mask_logits inside this graph)

``manifest.json`` records the input size, batch, class table, opset, model config,
precision and sha256 of the source checkpoint and of each graph; the backends read it.

We use the dynamo exporter (``torch.onnx.export(..., dynamo=True)``): the legacy
TorchScript exporter fails on segment_anything's boolean index assignment.

On-the-fly exports (a backend given a checkpoint or a model instead of an export
directory) go to ``$FUSIONSAM_CACHE_DIR/onnx/<key>`` (default ``~/.cache/fusionsam/onnx``),
where key = sha256 of the checkpoint file (or of the model's config + weights when only
a model object is at hand), the input size, precision and opset; a second start reuses it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.deploy.engine_cache import GRAPH_NAMES, graph_sha256, sha256_file
from fusionsam_model.modeling.model import FusionSAM

LOG = logging.getLogger("fusionsam.export")

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "fusionsam-onnx/2"  # 2: front emits "fine", decoder takes it
DEFAULT_OPSET = 18
CACHE_ENV = "FUSIONSAM_CACHE_DIR"
EXTERNAL_DATA_BYTES = 1_500_000_000  # protobuf caps a file at 2 GB: ViT-H weights go beside it

GRAPH_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "front": (("rgb", "thermal"), ("fused", "mask_logits", "fine")),
    "image_encoder": (("fused",), ("image_embedding",)),
    "decoder": (("image_embedding", "mask_logits", "fine"), ("class_logits", "presence")),
}


class ExportError(RuntimeError):
    """An export directory is missing, incomplete or does not fit what was asked."""


# ----------------------------------------------------------------------------- graph wrappers


class FrontGraph(nn.Module):
    def __init__(self, model: FusionSAM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, rgb: torch.Tensor, thermal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model.forward_front(rgb, thermal)
        return out.fused, out.mask_logits, out.fine


class ImageEncoderGraph(nn.Module):
    def __init__(self, model: FusionSAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(fused)


class DecoderGraph(nn.Module):
    def __init__(self, model: FusionSAM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, image_embedding: torch.Tensor, mask_logits: torch.Tensor, fine: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(image_embedding, mask_logits, fine)


GRAPH_MODULES = {"front": FrontGraph, "image_encoder": ImageEncoderGraph, "decoder": DecoderGraph}


# ----------------------------------------------------------------------------- model sources


def model_at_input_size(model: FusionSAM, size: int | None) -> FusionSAM:
    """The same weights at another S: positional tables are interpolated, nothing else may change."""
    from fusionsam_model.modeling.sam_decoder import resize_pos_embed, resize_rel_pos  # noqa: PLC0415
    from fusionsam_model.runtime.checkpoint import check_state_dict  # noqa: PLC0415

    if size is None or size == model.config.input_size:
        return model
    new = FusionSAM(replace(model.config, input_size=int(size))).eval()
    own = new.state_dict()
    state = {}
    for k, v in model.state_dict().items():
        if k in own and own[k].shape != v.shape:
            if k.endswith("pos_embed") and v.ndim == 4:
                v = resize_pos_embed(v, own[k].shape[1])
            elif k.endswith(("rel_pos_h", "rel_pos_w")):
                v = resize_rel_pos(v, own[k].shape[0])
        state[k] = v
    check_state_dict(new, state, f"model resized from S={model.config.input_size} to S={size}")
    new.load_state_dict(state)
    LOG.warning(
        "exporting at S=%d a model built for S=%d (positional tables interpolated)",
        size,
        model.config.input_size,
    )
    return new


def load_source(
    spec: str, input_size: int | None = None, seed: int = 0
) -> tuple[FusionSAM, ClassTable | None, dict[str, Any]]:
    """``preset:NAME`` (random weights built at ``input_size``) or a checkpoint path."""
    if spec.startswith("preset:"):
        from fusionsam_model.data.classes import MFNET  # noqa: PLC0415
        from fusionsam_model.modeling.config import build_config  # noqa: PLC0415

        preset = spec.split(":", 1)[1]
        torch.manual_seed(seed)
        cfg = build_config(preset, input_size=input_size, num_classes=MFNET.num_classes)
        return FusionSAM(cfg).eval(), MFNET, {"preset": preset, "seed": seed, "sha256": None}
    from fusionsam_model.runtime.checkpoint import load_checkpoint  # noqa: PLC0415

    path = Path(spec)
    model, table, meta = load_checkpoint(path, map_location="cpu")
    return (
        model,
        table,
        {"path": str(path.resolve()), "sha256": sha256_file(path), "metadata": meta},
    )


def model_fingerprint(model: FusionSAM) -> str:
    """sha256 of the config and every weight: the cache key when no checkpoint file is known."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------- export


def _export_graph(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, name: str, opset: int
) -> None:
    inputs, outputs = GRAPH_IO[name]
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    external = weight_bytes > EXTERNAL_DATA_BYTES
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=True,
        opset_version=opset,
        input_names=list(inputs),
        output_names=list(outputs),
        external_data=external,
        optimize=True,
        verbose=False,
    )
    # A path (not a loaded proto) lets the checker handle graphs with external data.
    onnx.checker.check_model(str(path))


def export_model(
    model: FusionSAM,
    out_dir: Path,
    class_table: ClassTable | None = None,
    input_size: int | None = None,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    batch_size: int = 1,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the three graphs and ``manifest.json`` to ``out_dir``; returns the manifest."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model_at_input_size(model, input_size).eval()
    cfg = model.config
    s, dtype = cfg.input_size, (torch.float16 if fp16 else torch.float32)
    if fp16:  # never turn the caller's model to half precision
        model = copy.deepcopy(model).to(dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch_size, 3, s, s, generator=gen).to(dtype)
    thermal = torch.rand(batch_size, 1, s, s, generator=gen).to(dtype)
    with torch.inference_mode():  # example inputs for the later graphs
        front = model.forward_front(rgb, thermal)
        fused, mask_logits, fine = (
            front.fused.clone(),
            front.mask_logits.clone(),
            front.fine.clone(),
        )
        embedding = model.encode_image(fused).clone()
    examples = {
        "front": (rgb, thermal),
        "image_encoder": (fused,),
        "decoder": (embedding, mask_logits, fine),
    }
    graphs: dict[str, Any] = {}
    for name in GRAPH_NAMES:
        path = out_dir / f"{name}.onnx"
        start = time.perf_counter()
        _export_graph(GRAPH_MODULES[name](model).eval(), examples[name], path, name, opset)
        seconds = time.perf_counter() - start
        files = [path.name] + [p.name for p in _external_files(path)]
        graphs[name] = {
            "file": path.name,
            "files": files,
            "sha256": graph_sha256(path),
            "bytes": sum((out_dir / f).stat().st_size for f in files),
            "inputs": _io_shapes(path, "input"),
            "outputs": _io_shapes(path, "output"),
            "export_seconds": round(seconds, 2),
        }
        LOG.info("%s: %.1f MB in %.1f s", path, graphs[name]["bytes"] / 1e6, seconds)
    manifest = {
        "format": MANIFEST_FORMAT,
        "input_size": s,
        "batch_size": batch_size,
        "num_classes": cfg.num_classes,
        "precision": "fp16" if fp16 else "fp32",
        "opset": opset,
        "class_table": class_table.to_dict() if class_table is not None else None,
        "model_config": cfg.to_dict(),
        "source": source or {},
        "graphs": graphs,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _external_files(path: Path) -> list[Path]:
    from fusionsam_model.deploy.engine_cache import external_data_files  # noqa: PLC0415

    return external_data_files(path)


def _io_shapes(path: Path, kind: str) -> dict[str, list[int]]:
    graph = onnx.load(str(path), load_external_data=False).graph
    values = graph.input if kind == "input" else graph.output
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


# ----------------------------------------------------------------------------- reading exports


def read_manifest(export_dir: Path, verify_hashes: bool = False) -> dict[str, Any]:
    """Manifest of an export directory, checked for completeness (and hashes when asked)."""
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    if not path.is_file():
        raise ExportError(
            f"{export_dir} is not a FusionSAM export directory (no {MANIFEST}); "
            "create one with fusionsam-export --checkpoint C --out DIR"
        )
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise ExportError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ExportError(
            f"{path} has format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}"
        )
    for name in GRAPH_NAMES:
        entry = manifest.get("graphs", {}).get(name)
        if entry is None:
            raise ExportError(f"{path} lists no {name!r} graph")
        for f in entry["files"]:
            if not (export_dir / f).is_file():
                raise ExportError(f"{export_dir / f} is missing (listed in {path}); re-export")
        if verify_hashes and graph_sha256(export_dir / entry["file"]) != entry["sha256"]:
            raise ExportError(f"{export_dir / entry['file']} does not match its sha256 in {path}")
    return manifest


def export_cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fusionsam"
    return Path(base) / "onnx"


def cached_export(
    model: FusionSAM,
    key: str,
    class_table: ClassTable | None = None,
    input_size: int | None = None,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    cache_root: Path | None = None,
    source: dict[str, Any] | None = None,
) -> Path:
    """Export once into ``cache_root/<key>-s<S>-<precision>-op<opset>``; later calls reuse it."""
    size = int(input_size or model.config.input_size)
    precision = "fp16" if fp16 else "fp32"
    root = Path(cache_root) if cache_root else export_cache_root()
    target = root / f"{key[:16]}-s{size}-{precision}-op{opset}"
    try:
        read_manifest(target)
        LOG.info("using cached ONNX export %s", target)
        return target
    except ExportError as exc:
        if target.exists():
            LOG.warning("re-exporting %s: %s", target, exc)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".export-"))
    try:
        LOG.info("exporting ONNX graphs to %s (first use of this model)", target)
        export_model(model, tmp, class_table, size, fp16, opset, source=source)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)  # atomic: a reader never sees a half-written export
        except OSError:
            read_manifest(target)  # another process finished the same export first: use it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_export_dir(
    model_or_path: Any,
    input_size: int | None = None,
    fp16: bool = False,
    class_table: ClassTable | None = None,
    cache_root: Path | None = None,
) -> Path:
    """An export directory for a backend: given as one, or exported (once) from a model/checkpoint."""
    if isinstance(model_or_path, FusionSAM):
        key = model_fingerprint(model_or_path)
        return cached_export(
            model_or_path,
            key,
            class_table,
            input_size,
            fp16,
            cache_root=cache_root,
            source={"model_sha256": key},
        )
    path = Path(model_or_path)
    if path.is_dir():
        manifest = read_manifest(path)
        if input_size is not None and manifest["input_size"] != int(input_size):
            raise ExportError(
                f"{path} was exported at S={manifest['input_size']}, but S={input_size} was asked; "
                "re-export with fusionsam-export --size"
            )
        return path
    model, table, source = load_source(str(path))
    return cached_export(
        model,
        source["sha256"],
        table or class_table,
        input_size,
        fp16,
        cache_root=cache_root,
        source=source,
    )


# ----------------------------------------------------------------------------- CLI


def compare_with_torch(model: FusionSAM, export_dir: Path, seed: int = 1) -> dict[str, float]:
    """Max abs differences between onnxruntime (CPU) and the torch model on fresh random inputs."""
    from fusionsam_model.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: PLC0415

    backend = OnnxRuntimeBackend(export_dir, device="cpu")
    s = backend.input_size
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.rand(backend.batch_size, 3, s, s, generator=gen)
    thermal = torch.rand(backend.batch_size, 1, s, s, generator=gen)
    ref_model = model_at_input_size(model, s).float().eval()
    with torch.inference_mode():
        front = ref_model.forward_front(rgb, thermal)
        embedding = ref_model.encode_image(front.fused)
        logits, presence = ref_model.decode(embedding, front.mask_logits, front.fine)
    out = backend.infer(rgb, thermal)
    return {
        "fused": (out.fused - front.fused).abs().max().item(),
        "mask_logits": (out.mask_logits - front.mask_logits).abs().max().item(),
        "class_logits": (out.class_logits - logits).abs().max().item(),
        "presence": (out.presence - presence).abs().max().item(),
        "class_id_agreement": (out.class_logits.argmax(1) == logits.argmax(1))
        .float()
        .mean()
        .item(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fusionsam-export",
        description="Export a FusionSAM checkpoint to three static-shape ONNX graphs + manifest.json.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="project checkpoint (.pt) or preset:NAME for random weights (e.g. preset:tiny)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--size", type=int, default=None, help="input size S (default: the model's)"
    )
    parser.add_argument("--fp16", action="store_true", help="export fp16 weights and I/O")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    parser.add_argument("--batch", type=int, default=1, help="static batch size of the graphs")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare onnxruntime (CPU) with PyTorch on random inputs (fp32 only)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript"):  # one INFO line per rewritten constant
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.size is not None and (args.size <= 0 or args.size % 16):
        parser.error(f"--size must be a positive multiple of 16, got {args.size}")
    from fusionsam_model.runtime.checkpoint import CheckpointError  # noqa: PLC0415

    try:
        model, table, source = load_source(args.checkpoint, args.size)
        start = time.perf_counter()
        manifest = export_model(
            model, args.out, table, args.size, args.fp16, args.opset, args.batch, source
        )
        total = time.perf_counter() - start
    except (CheckpointError, ExportError, ValueError) as exc:
        print(f"fusionsam-export: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"exported S={manifest['input_size']} {manifest['precision']} opset {args.opset} "
        f"to {args.out} in {total:.1f} s"
    )
    for g in manifest["graphs"].values():
        print(f"  {g['file']:<20} {g['bytes'] / 1e6:9.2f} MB  sha256 {g['sha256'][:16]}")
    if args.verify:
        if args.fp16:
            print("  --verify skipped: fp16 graphs need a GPU runtime to compare meaningfully")
        else:
            diffs = compare_with_torch(model, args.out)
            print("  onnxruntime vs torch: " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
