"""The export format: what an export directory holds, shared by its writer and its readers.

``fusionsam_model.deploy.export`` writes a directory; the onnxruntime and TensorRT
backends and the engine cache read one. Both sides import this module and never each
other, so a reader cannot depend on how graphs are produced.

A directory holds three static-shape ONNX graphs (``GRAPH_NAMES``, in run order, with the
input/output names of ``GRAPH_IO``) and ``manifest.json``: format, input size S, batch,
number of classes, precision, opset, class table, model config, the source checkpoint's
sha256 and, per graph, its files, sha256 and I/O shapes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import onnx

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "fusionsam-onnx/3"  # 2: front emits "fine"; 3: and "fusion_maps"
CACHE_ENV = "FUSIONSAM_CACHE_DIR"

# graph -> (input names, output names); the keys in run order are also the stage names
# the exported backends report timings under (see runtime.segmenter.STAGES).
GRAPH_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "front": (("rgb", "thermal"), ("fused", "fusion_maps", "mask_logits", "fine")),
    "image_encoder": (("fused",), ("image_embedding",)),
    "decoder": (("image_embedding", "mask_logits", "fine"), ("class_logits", "presence")),
}
GRAPH_NAMES: tuple[str, ...] = tuple(GRAPH_IO)


class ExportError(RuntimeError):
    """An export directory is missing, incomplete or does not fit what was asked."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def external_data_files(onnx_path: Path) -> list[Path]:
    """Files holding a graph's weights outside the .onnx (graphs over 2 GB, e.g. ViT-H)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    locations: set[str] = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    return [Path(onnx_path).parent / loc for loc in sorted(locations)]


def graph_sha256(onnx_path: Path) -> str:
    """sha256 over the .onnx and its external-data files, so new weights change the hash."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX graph not found: {onnx_path}")
    parts = [onnx_path, *external_data_files(onnx_path)]
    if len(parts) == 1:
        return sha256_file(onnx_path)
    h = hashlib.sha256()
    for part in parts:
        if not part.is_file():
            raise ExportError(f"{onnx_path} refers to missing external data file {part}")
        h.update(part.name.encode())
        h.update(sha256_file(part).encode())
    return h.hexdigest()


def is_export_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


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
    """Where on-the-fly exports are kept: ``$FUSIONSAM_CACHE_DIR/onnx`` or ``~/.cache/fusionsam/onnx``."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fusionsam"
    return Path(base) / "onnx"
