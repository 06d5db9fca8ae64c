"""What every backend that runs an export directory shares: the manifest and the graph chain.

onnxruntime and TensorRT differ only in how one graph runs (``run_graph``) and how it is
timed; reading and checking the manifest, the static batch and the chaining of
front -> image_encoder -> decoder live here once. Timings are keyed by graph name,
which are the stage names of ``fusionsam_model.runtime.segmenter.STAGES``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from fusionsam_model.deploy.export_format import ExportError, read_manifest
from fusionsam_model.runtime.backends import BackendOutput


class ExportedGraphsBackend:
    """Base of the backends that read ``fusionsam_model.deploy.export_format`` directories."""

    name = "exported"

    def __init__(self, export_dir: str | Path, input_size: int | None = None) -> None:
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        self.input_size = int(self.manifest["input_size"])
        if input_size is not None and int(input_size) != self.input_size:
            raise ExportError(
                f"{self.export_dir} was exported at S={self.input_size}, but S={input_size} was "
                "asked; re-export with fusionsam-export --size"
            )
        self.num_classes = int(self.manifest["num_classes"])
        self.batch_size = int(self.manifest["batch_size"])
        self.graph_precision = self.manifest["precision"]

    def run_graph(self, graph: str, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def timed_run(
        self, timings: dict[str, float], graph: str, feeds: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Run one graph and add its wall time (ms) under the graph's name."""
        t0 = time.perf_counter()
        out = self.run_graph(graph, feeds)
        timings[graph] = timings.get(graph, 0.0) + (time.perf_counter() - t0) * 1e3
        return out

    def infer(self, rgb: torch.Tensor, thermal: torch.Tensor) -> BackendOutput:
        """Any batch: cut into the graphs' static batch, the last chunk padded by repetition."""
        n, size = rgb.shape[0], self.batch_size
        timings: dict[str, float] = {}
        parts: list[dict[str, torch.Tensor]] = []
        for start in range(0, n, size):
            idx = torch.arange(start, start + size, device=rgb.device).clamp(max=n - 1)
            front = self.timed_run(timings, "front", {"rgb": rgb[idx], "thermal": thermal[idx]})
            enc = self.timed_run(timings, "image_encoder", {"fused": front["fused"]})
            feeds = {
                "image_embedding": enc["image_embedding"],
                "mask_logits": front["mask_logits"],
                "fine": front["fine"],
            }
            dec = self.timed_run(timings, "decoder", feeds)
            keep = min(size, n - start)
            parts.append({k: v[:keep] for k, v in {**front, **dec}.items()})

        def cat(key: str) -> torch.Tensor:
            return torch.cat([p[key] for p in parts]).float()

        return BackendOutput(
            class_logits=cat("class_logits"),
            presence=cat("presence"),
            fused=cat("fused"),
            fusion_maps=cat("fusion_maps"),
            mask_logits=cat("mask_logits"),
            timings=timings,
        )
