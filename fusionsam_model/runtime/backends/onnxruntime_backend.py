"""The onnxruntime backend: the three exported graphs chained with I/O bound to torch tensors.

Binding torch tensors as the sessions' inputs and outputs keeps the fused image and the
image embedding on the device between graphs (no host round trip on a GPU), and uses
the same code path on CPU, which is what the tests here exercise.

Execution providers: on ``device="cpu"`` the CPU provider; on ``cuda[:N]`` TensorRT, then
CUDA, then CPU, whichever this onnxruntime build has. The choice is logged, and so is
what each session really got (onnxruntime silently falls back when a provider cannot load).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from fusionsam_model.deploy.export_format import GRAPH_NAMES
from fusionsam_model.runtime.backends.exported import ExportedGraphsBackend
from fusionsam_model.runtime.threads import ort_session_options

LOG = logging.getLogger("fusionsam.backends.onnxruntime")

ORT_TYPES: dict[str, tuple[torch.dtype, type]] = {
    "tensor(float)": (torch.float32, np.float32),
    "tensor(float16)": (torch.float16, np.float16),
}


def select_providers(
    device: torch.device, available: list[str], export_dir: Path, fp16: bool
) -> list[Any]:
    """Providers in preference order for ``device``, limited to those this build has."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise ValueError(f"onnxruntime backend: device must be cpu or cuda[:N], got {device}")
    index = device.index or 0
    wanted: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        cache = str(export_dir / "ort_trt_cache")
        wanted.append(
            (
                "TensorrtExecutionProvider",
                {
                    "device_id": index,
                    "trt_fp16_enable": fp16,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": cache,
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": cache,
                },
            )
        )
    if "CUDAExecutionProvider" in available:
        wanted.append(("CUDAExecutionProvider", {"device_id": index}))
    if not wanted:
        raise RuntimeError(
            f"onnxruntime backend on {device}: this onnxruntime build has no GPU provider "
            f"(available: {available}); install onnxruntime-gpu or use device 'cpu'"
        )
    return [*wanted, "CPUExecutionProvider"]


class OnnxRuntimeBackend(ExportedGraphsBackend):
    """Runs an export directory (see ``fusionsam_model.deploy.export_format``) with onnxruntime."""

    name = "onnxruntime"

    def __init__(
        self,
        export_dir: str | Path,
        device: str | torch.device = "cpu",
        precision: str | None = None,
        threads: int | None = None,
        input_size: int | None = None,
    ) -> None:
        super().__init__(export_dir, input_size)
        self.precision = self.graph_precision
        if precision is not None and precision != self.precision:
            raise ValueError(
                f"{self.export_dir} holds {self.precision} graphs but precision={precision!r} "
                f"was asked; export with{'' if precision == 'fp16' else 'out'} --fp16"
            )
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available here")
        available = ort.get_available_providers()
        providers = select_providers(
            self.device, available, self.export_dir, self.precision == "fp16"
        )
        self._providers_asked = providers
        self.threads = threads
        self._sessions_by_threads: dict[int | None, dict[str, ort.InferenceSession]] = {}
        self.sessions = self._make_sessions(threads)
        got = self.sessions["image_encoder"].get_providers()
        LOG.info(
            "onnxruntime %s on %s: providers %s (asked %s, this build has %s)",
            ort.__version__,
            self.device,
            got,
            [p if isinstance(p, str) else p[0] for p in providers],
            available,
        )
        self.providers = got
        self._io = {g: self._describe(s) for g, s in self.sessions.items()}

    def _make_sessions(self, threads: int | None) -> dict[str, ort.InferenceSession]:
        """The three graphs' sessions with ``threads`` intra-op threads (kept for reuse)."""
        if threads not in self._sessions_by_threads:
            # no spin-waiting: it starves torch, OpenCV and other processes on shared cores
            options = ort_session_options(threads)
            self._sessions_by_threads[threads] = {
                graph: ort.InferenceSession(
                    str(self.export_dir / self.manifest["graphs"][graph]["file"]),
                    options,
                    providers=self._providers_asked,
                )
                for graph in GRAPH_NAMES
            }
        return self._sessions_by_threads[threads]

    def set_threads(self, threads: int) -> None:
        """CPU intra-op threads: onnxruntime fixes them per session, so each count gets its
        own sessions, made on first use and kept (one more copy of the weights each)."""
        self._sessions_by_threads.pop(None, None)  # the build-time default is not a candidate
        self.sessions = self._make_sessions(threads)
        self.threads = threads

    @staticmethod
    def _describe(session: ort.InferenceSession) -> dict[str, dict[str, tuple]]:
        """name -> (shape, torch dtype, numpy dtype) for inputs and outputs."""
        io: dict[str, dict[str, tuple]] = {"inputs": {}, "outputs": {}}
        for kind, values in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
            for v in values:
                if v.type not in ORT_TYPES:
                    raise RuntimeError(f"unsupported ONNX tensor type {v.type} for {v.name}")
                io[kind][v.name] = (tuple(int(d) for d in v.shape), *ORT_TYPES[v.type])
        return io

    def run_graph(self, graph: str, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One graph; inputs the graph does not declare (e.g. pruned ones) are skipped."""
        session, io = self.sessions[graph], self._io[graph]
        binding = session.io_binding()
        dev_type, dev_id = self.device.type, self.device.index or 0
        keep = []  # the converted inputs must stay alive until the run is over
        for name, (shape, tdtype, ndtype) in io["inputs"].items():
            t = feeds[name].to(self.device, tdtype).contiguous()
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"{graph}.onnx input {name}: expected {shape}, got {tuple(t.shape)}"
                )
            keep.append(t)
            binding.bind_input(name, dev_type, dev_id, ndtype, list(shape), t.data_ptr())
        outputs = {}
        for name, (shape, tdtype, ndtype) in io["outputs"].items():
            out = torch.empty(shape, dtype=tdtype, device=self.device)
            binding.bind_output(name, dev_type, dev_id, ndtype, list(shape), out.data_ptr())
            outputs[name] = out
        if dev_type == "cuda":
            torch.cuda.synchronize(self.device)  # inputs written by torch's stream are ready
        session.run_with_iobinding(binding)
        return outputs


def make_onnxruntime_backend(
    export_dir: str | Path,
    device: str = "cpu",
    precision: str = "fp32",
    input_size: int | None = None,
    threads: int | None = None,
    **_: Any,
) -> OnnxRuntimeBackend:
    """From an export directory (``make_backend`` exports a checkpoint or model first)."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"onnxruntime backend supports precision fp32 or fp16, got {precision!r}")
    return OnnxRuntimeBackend(export_dir, device, precision, threads, input_size)
