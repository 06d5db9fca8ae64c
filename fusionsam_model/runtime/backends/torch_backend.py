"""The PyTorch backend: runs a ``FusionSAM`` module stage by stage and times each stage."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.runtime.backends import BackendOutput

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

COMPILE_MODES = (None, "none", "default", "reduce-overhead", "max-autotune")

T = TypeVar("T")


def parse_precision(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision]


class TorchBackend:
    """Eager PyTorch on CPU or CUDA, in fp32 / fp16 / bf16."""

    name = "torch"

    def __init__(
        self,
        model: FusionSAM,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        compile: str | None = None,
        channels_last: bool | None = None,
    ):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available here")
        self.dtype = parse_precision(precision)
        self.precision = precision
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        # NHWC conv weights: oneDNN's convolutions on a CPU run 10 % faster end to end
        # (the fused-image head's 8->3 conv 1.6x), same labels; None = on a CPU only.
        # The module is converted in place: a trainer validating its model passes False.
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.input_size = model.config.input_size
        self.num_classes = model.config.num_classes
        # torch.compile of the two heavy stages; "reduce-overhead" also replays them as CUDA
        # graphs (worth it for the decoder's many small kernels). The first calls compile.
        if compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {compile!r}; choose one of {COMPILE_MODES}")
        self.compile = compile
        self._encode_image, self._decode = model.encode_image, model.decode
        if compile not in (None, "none"):
            self._encode_image = torch.compile(model.encode_image, mode=compile, dynamic=False)
            self._decode = torch.compile(model.decode, mode=compile, dynamic=False)

    @staticmethod
    def set_threads(threads: int) -> None:
        """CPU intra-op threads (process-wide in torch)."""
        torch.set_num_threads(threads)

    def _timed(self, timings: dict[str, float], stage: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` and add its wall time in ms; CUDA is synchronised so the time is real."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize(self.device)
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - t0) * 1e3
        return out

    @torch.inference_mode()
    def infer(self, rgb: torch.Tensor, thermal: torch.Tensor) -> BackendOutput:
        m = self.model
        timings: dict[str, float] = {}
        rgb = rgb.to(self.device, self.dtype, non_blocking=True)
        thermal = thermal.to(self.device, self.dtype, non_blocking=True)
        latents = self._timed(
            timings, "lstg", lambda: m.encode_latents(rgb, thermal, inference=True)
        )
        front = self._timed(timings, "fmp", lambda: m.fuse(latents, rgb, thermal))
        timings["front"] = timings["lstg"] + timings["fmp"]  # the exported graph's stage
        if self.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # outputs of the last call are done with
        embedding = self._timed(timings, "image_encoder", lambda: self._encode_image(front.fused))
        logits, presence = self._timed(
            timings, "decoder", lambda: self._decode(embedding, front.mask_logits, front.fine)
        )
        if self.compile == "reduce-overhead":  # graph outputs are overwritten by the next replay
            logits, presence = logits.clone(), presence.clone()
        return BackendOutput(
            class_logits=logits.float(),
            presence=presence.float(),
            fused=front.fused.float(),
            fusion_maps=front.fusion_maps.float(),
            mask_logits=front.mask_logits.float(),
            timings=timings,
        )


def make_torch_backend(model: FusionSAM, **kw: Any) -> TorchBackend:
    if not isinstance(model, FusionSAM):
        raise TypeError(f"the torch backend needs a FusionSAM model, got {type(model).__name__}")
    return TorchBackend(model, **kw)
