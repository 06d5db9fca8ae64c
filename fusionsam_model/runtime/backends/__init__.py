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
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class BackendOutput:
    class_logits: torch.Tensor  # (B, C, S/4, S/4)
    presence: torch.Tensor  # (B, C) logits
    fused: torch.Tensor  # (B, 3, S, S) in [0, 1]
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


# name -> "module:factory"; the export work adds onnxruntime / tensorrt entries.
BACKENDS: dict[str, str] = {
    "torch": "fusionsam_model.runtime.backends.torch_backend:make_torch_backend",
    "onnxruntime": "fusionsam_model.runtime.backends.onnxruntime_backend:make_onnxruntime_backend",
    "tensorrt": "fusionsam_model.runtime.backends.tensorrt_backend:make_tensorrt_backend",
}


def register_backend(name: str, target: str | Callable[..., Backend]) -> None:
    """Add a backend factory (``"module:function"`` or a callable) under ``name``."""
    BACKENDS[name] = target


def make_backend(name: str, model_or_path: Any, **kw: Any) -> Backend:
    """Build the backend ``name`` from a FusionSAM model (torch) or exported graphs."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}")
    target = BACKENDS[name]
    if isinstance(target, str):
        module, func = target.split(":")
        try:
            factory = getattr(import_module(module), func)
        except ImportError as e:
            raise RuntimeError(f"backend {name!r} is not available here: {e}") from e
    else:
        factory = target
    return factory(model_or_path, **kw)


StageRunner = Callable[[dict[str, float], str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def run_exported_graphs(
    run_stage: StageRunner, rgb: torch.Tensor, thermal: torch.Tensor, batch_size: int
) -> BackendOutput:
    """Chain the three exported graphs (front -> image_encoder -> decoder) over any batch.

    Exported graphs have a static batch, so the input is cut into chunks of
    ``batch_size``, the last one padded by repeating its final pair. ``run_stage(timings,
    graph, feeds)`` runs one graph and adds its time to ``timings``; onnxruntime and
    TensorRT differ only there.
    """
    n = rgb.shape[0]
    timings: dict[str, float] = {}
    parts: list[dict[str, torch.Tensor]] = []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, start + batch_size, device=rgb.device).clamp(max=n - 1)
        front = run_stage(timings, "front", {"rgb": rgb[idx], "thermal": thermal[idx]})
        enc = run_stage(timings, "image_encoder", {"fused": front["fused"]})
        feeds = {"image_embedding": enc["image_embedding"], "mask_logits": front["mask_logits"]}
        dec = run_stage(timings, "decoder", {**feeds, "fine": front["fine"]})
        keep = min(batch_size, n - start)
        parts.append({k: v[:keep] for k, v in {**front, **dec}.items()})

    def cat(key: str) -> torch.Tensor:
        return torch.cat([p[key] for p in parts]).float()

    return BackendOutput(
        class_logits=cat("class_logits"),
        presence=cat("presence"),
        fused=cat("fused"),
        mask_logits=cat("mask_logits"),
        timings=timings,
    )
