"""The TensorRT backend: cached engines of the three exported graphs, torch CUDA tensors as buffers.

Engines come from ``engine_cache.ensure_engines`` (built once per ONNX hash, TensorRT
version and GPU; loaded on later starts). Each graph gets one execution context whose
output buffers are allocated once as torch tensors; inputs are bound by pointer, so the
fused image and embedding never leave the GPU. All work goes on torch's current stream.

TensorRT is imported lazily: without it, or without a GPU, building this backend raises
``EngineCacheError`` with a message saying what is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from fusionsam_model.deploy.engine_cache import EngineCacheError, ensure_engines, import_tensorrt
from fusionsam_model.deploy.export_format import GRAPH_NAMES
from fusionsam_model.runtime.backends import BackendOutput
from fusionsam_model.runtime.backends.exported import ExportedGraphsBackend

LOG = logging.getLogger("fusionsam.backends.tensorrt")


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int64: torch.int64,
        trt.bool: torch.bool,
    }
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dtype not in table:
        raise EngineCacheError(f"unsupported TensorRT tensor dtype {dtype}")
    return table[dtype]


class _EngineRunner:
    """One deserialized engine + execution context with preallocated output tensors."""

    def __init__(self, trt: Any, runtime: Any, path: Path, device: torch.device) -> None:
        self.path = path
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EngineCacheError(f"TensorRT could not deserialize {path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.inputs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
            dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs[name] = (shape, dtype)
            else:
                self.outputs[name] = torch.empty(shape, dtype=dtype, device=device)
                self.context.set_tensor_address(name, self.outputs[name].data_ptr())
        self.device = device

    def __call__(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keep = []
        for name, (shape, dtype) in self.inputs.items():
            t = feeds[name].to(self.device, dtype).contiguous()
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"{self.path.name} input {name}: expected {shape}, got {tuple(t.shape)}"
                )
            keep.append(t)
            self.context.set_tensor_address(name, t.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of {self.path.name} failed")
        # Outputs are reused by the next call: hand out copies (ordered on the same stream).
        return {name: t.clone() for name, t in self.outputs.items()}


class TensorRTBackend(ExportedGraphsBackend):
    """Runs an export directory with TensorRT engines (built or loaded from the cache)."""

    name = "tensorrt"

    def __init__(
        self,
        export_dir: str | Path,
        device: str | torch.device = "cuda",
        precision: str = "fp16",
        workspace_gb: float = 4.0,
        cache_dir: str | Path | None = None,
        input_size: int | None = None,
    ) -> None:
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"tensorrt backend supports precision fp32 or fp16, got {precision!r}")
        trt = import_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda" or not torch.cuda.is_available():
            raise EngineCacheError(
                f"the tensorrt backend needs a CUDA device, got {device!r}"
                f" (CUDA available: {torch.cuda.is_available()})"
            )
        if self.device.index is not None:
            torch.cuda.set_device(self.device)
        super().__init__(export_dir, input_size)
        if self.graph_precision != "fp32":
            LOG.warning(
                "%s holds fp16 graphs; TensorRT builds best from fp32 ONNX", self.export_dir
            )
        self.precision = precision
        engines = ensure_engines(self.export_dir, cache_dir, precision == "fp16", workspace_gb)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.runners = {
            g: _EngineRunner(trt, self.runtime, engines[g], self.device) for g in GRAPH_NAMES
        }
        LOG.info(
            "TensorRT %s engines loaded: %s",
            trt.__version__,
            {g: str(p) for g, p in engines.items()},
        )

    def run_graph(self, graph: str, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.runners[graph](feeds)

    def timed_run(
        self, timings: dict[str, float], graph: str, feeds: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """GPU time of the graph from CUDA events (wall time would include the queue)."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = self.run_graph(graph, feeds)
        end.record()
        end.synchronize()
        timings[graph] = timings.get(graph, 0.0) + start.elapsed_time(end)
        return out

    @torch.inference_mode()
    def infer(self, rgb: torch.Tensor, thermal: torch.Tensor) -> BackendOutput:
        rgb = rgb.to(self.device, non_blocking=True)
        thermal = thermal.to(self.device, non_blocking=True)
        return super().infer(rgb, thermal)


def preflight(device: str = "cuda", **_: Any) -> None:
    """Fail before any export work when TensorRT or a CUDA device is missing."""
    import_tensorrt()
    if str(device) == "cpu":
        raise EngineCacheError("the tensorrt backend needs device 'cuda' (got 'cpu')")


def make_tensorrt_backend(
    export_dir: str | Path,
    device: str = "cuda",
    precision: str = "fp16",
    input_size: int | None = None,
    workspace_gb: float = 4.0,
    engine_cache_dir: str | Path | None = None,
    **_: Any,
) -> TensorRTBackend:
    """From an export directory of fp32 graphs (``make_backend`` exports a checkpoint first)."""
    return TensorRTBackend(
        export_dir, device, precision, workspace_gb, engine_cache_dir, input_size
    )
