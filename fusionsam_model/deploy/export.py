"""ONNX export of FusionSAM as three static-shape graphs plus a manifest (the writer).

The graphs are the model's three export-friendly parts, so every runtime runs the same
stages the torch backend times:

* ``front.onnx``          rgb (B,3,S,S), thermal (B,1,S,S) -> fused (B,3,S,S), fusion_maps (B,2,S/4,S/4),
                          mask_logits (B,1,S/4,S/4), fine (B,F,S/4,S/4)
* ``image_encoder.onnx``  fused -> image_embedding (B,E,g,g)
* ``decoder.onnx``        image_embedding, mask_logits, fine -> class_logits (B,C,S/4,S/4), presence (B,C)
  (the sparse prompts are derived from mask_logits inside this graph)

The directory layout and ``manifest.json`` are defined in ``export_format`` (which the
readers import); the command line is ``export_cli`` (``fusionsam-export``).

We use the dynamo exporter (``torch.onnx.export(..., dynamo=True)``): the legacy
TorchScript exporter fails on segment_anything's boolean index assignment.

On-the-fly exports (a backend given a checkpoint or a model instead of an export
directory) go to ``$FUSIONSAM_CACHE_DIR/onnx/<key>`` (default ``~/.cache/fusionsam/onnx``),
where key = sha256 of the checkpoint file (or of the model's config + weights when only
a model object is at hand), the input size, precision and opset; a second start reuses it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.deploy.export_format import (
    GRAPH_IO,
    GRAPH_NAMES,
    MANIFEST,
    MANIFEST_FORMAT,
    ExportError,
    export_cache_root,
    external_data_files,
    graph_sha256,
    read_manifest,
    sha256_file,
)
from fusionsam_model.modeling.model import FusionSAM

LOG = logging.getLogger("fusionsam.export")

DEFAULT_OPSET = 18
EXTERNAL_DATA_BYTES = 1_500_000_000  # protobuf caps a file at 2 GB: ViT-H weights go beside it


# ----------------------------------------------------------------------------- graph wrappers


class FrontGraph(nn.Module):
    def __init__(self, model: FusionSAM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, rgb: torch.Tensor, thermal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model.forward_front(rgb, thermal)
        return out.fused, out.fusion_maps, out.mask_logits, out.fine


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
        files = [path.name] + [p.name for p in external_data_files(path)]
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


def _io_shapes(path: Path, kind: str) -> dict[str, list[int]]:
    graph = onnx.load(str(path), load_external_data=False).graph
    values = graph.input if kind == "input" else graph.output
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


# ----------------------------------------------------------------------------- export cache


def cached_export_dir(
    key: str, size: int, precision: str, opset: int = DEFAULT_OPSET, cache_root: Path | None = None
) -> Path:
    """Where ``cached_export`` keeps the export of ``key`` at S = ``size``."""
    root = Path(cache_root) if cache_root else export_cache_root()
    return root / f"{key[:16]}-s{size}-{precision}-op{opset}"


def find_cached_export(
    model: FusionSAM, precision: str = "fp32", cache_root: Path | None = None
) -> Path | None:
    """The valid cached export of this model (same weights and S), or None; never exports."""
    target = cached_export_dir(
        model_fingerprint(model), model.config.input_size, precision, cache_root=cache_root
    )
    try:
        read_manifest(target)
    except ExportError:
        return None
    return target


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
    target = cached_export_dir(key, size, precision, opset, root)
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
