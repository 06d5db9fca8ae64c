"""Runtimes behind one interface: S x S tensors in, S/4 class logits and fused image out.

Pre- and post-processing (``fusionsam_model.runtime.preprocess``) stay outside the backends, so
torch, onnxruntime and tensorrt run the same three graphs on the same inputs and their
outputs can be compared directly. A backend is registered by name in ``BACKENDS`` with
a factory ``(model_or_path, **kw) -> Backend``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class BackendOutput:
    class_logits: torch.Tensor  # (B, C, S/4, S/4)
    presence: torch.Tensor  # (B, C) logits
    fused: torch.Tensor  # (B, 3, S, S) in [0, 1]: what SAM's image encoder saw
    fusion_maps: torch.Tensor  # (B, NUM_MAPS, S/4, S/4): composes the camera-size fused image
    mask_logits: torch.Tensor  # (B, 1, S/4, S/4)
    timings: dict[str, float] = field(default_factory=dict)  # ms: lstg, fmp, image_encoder, decoder


@runtime_checkable
class Backend(Protocol):
    name: str
    input_size: int  # S
    num_classes: int  # C

    def infer(self, rgb: torch.Tensor, thermal: torch.Tensor) -> BackendOutput:
        """rgb (B, 3, S, S) and thermal (B, 1, S, S) float32 in [0, 1], on the CPU."""
        ...


# name -> "module:factory"
BACKENDS: dict[str, str] = {
    "torch": "fusionsam_model.runtime.backends.torch_backend:make_torch_backend",
    "onnxruntime": "fusionsam_model.runtime.backends.onnxruntime_backend:make_onnxruntime_backend",
    "tensorrt": "fusionsam_model.runtime.backends.tensorrt_backend:make_tensorrt_backend",
}


def register_backend(name: str, target: str | Callable[..., Backend]) -> None:
    """Add a backend factory (``"module:function"`` or a callable) under ``name``."""
    BACKENDS[name] = target


# Exported backends run an export directory; asked for a checkpoint or a model they get
# one exported on first use (cached). ONNX precision per backend: TensorRT builds its
# fp16 engines from fp32 graphs.
EXPORTED_BACKENDS = {"onnxruntime": "as_asked", "tensorrt": "fp32"}


def make_backend(name: str, model_or_path: Any, **kw: Any) -> Backend:
    """Build the backend ``name`` from a FusionSAM model (torch) or exported graphs."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}")
    target = BACKENDS[name]
    if isinstance(target, str):
        module, func = target.split(":")
        try:
            backend_module = import_module(module)
        except ImportError as e:
            raise RuntimeError(f"backend {name!r} is not available here: {e}") from e
        factory = getattr(backend_module, func)
        preflight = getattr(backend_module, "preflight", None)
        if preflight is not None:  # e.g. TensorRT missing: say so before exporting anything
            preflight(**kw)
    else:
        factory = target
    if name in EXPORTED_BACKENDS:
        model_or_path = export_dir_for(name, model_or_path, **kw)
    return factory(model_or_path, **kw)


def export_dir_for(name: str, model_or_path: Any, **kw: Any) -> Path:
    """The export directory an exported backend reads: given, or written once by the exporter."""
    from fusionsam_model.deploy.export_format import is_export_dir  # noqa: PLC0415

    if not isinstance(model_or_path, torch.nn.Module) and is_export_dir(Path(model_or_path)):
        return Path(model_or_path)
    from fusionsam_model.deploy.export import resolve_export_dir  # noqa: PLC0415 (the writer)

    fp16 = EXPORTED_BACKENDS[name] == "as_asked" and kw.get("precision") == "fp16"
    cache = kw.get("cache_dir")
    return resolve_export_dir(
        model_or_path,
        input_size=kw.get("input_size"),
        fp16=fp16,
        cache_root=Path(cache) if cache else None,
    )
