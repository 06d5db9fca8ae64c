"""Inference API: camera images in, class-id image and fused image out, at the input size.

``Segmenter`` owns the shared pre/post-processing and a backend (torch now; the export
work adds onnxruntime / tensorrt); the ROS node, the evaluators and the benchmark all
go through it so they measure and publish the same thing.
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (process policy: threads, freed memory)

# isort: split
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionsam_model.data.classes import ClassTable, get_class_table
from fusionsam_model.modeling.composition import compose_numpy
from fusionsam_model.runtime.backends import Backend, make_backend
from fusionsam_model.runtime.preprocess import (
    Letterbox,
    ThermalRange,
    frame_levels,
    maps_over_image,
    normalize_thermal,
    preprocess_batch,
    rgb_to_uint8,
    unletterbox_labels,
)
from fusionsam_model.runtime.registration import Registration
from fusionsam_model.runtime.thread_tuner import ThreadTuner

BUNDLED_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "fusionsam_tiny_synth.pt"

# Stage names of Prediction.timings. "front" is LSTG + FMP: one graph in an export (the
# onnxruntime / TensorRT backends report only it), the sum of its two parts in torch.
# "compose" makes the camera-size fused image (only when it is asked for).
STAGES = (
    "preprocess",
    "lstg",
    "fmp",
    "front",
    "image_encoder",
    "decoder",
    "postprocess",
    "compose",
)
EXPORTED_STAGES = ("preprocess", "front", "image_encoder", "decoder", "postprocess", "compose")


@dataclass
class Prediction:
    labels: np.ndarray  # (H, W) uint8 class ids at the input size
    fused: np.ndarray | None  # (H, W, 3) uint8 fused RGB-thermal image; None when not asked for
    probs: np.ndarray | None  # (C, H, W) float32 when asked for
    timings: dict[str, float]  # ms per stage (see STAGES) and "total"


def auto_backend(
    model: Any, device: str, precision: str, export_dir: str | Path | None
) -> tuple[str, str | Path | None]:
    """``backend="auto"``: onnxruntime on a CPU when this model is already exported (given
    ``export_dir`` or a valid cached export of the same weights), since it measured 1.43x
    faster than torch there (docs/results.md, Speed); torch otherwise (no export is made here: the
    first export takes minutes)."""
    if str(device) != "cpu" or precision != "fp32":
        return "torch", None
    if export_dir:
        return "onnxruntime", export_dir
    from fusionsam_model.deploy.export import find_cached_export

    cached = find_cached_export(model)
    return ("onnxruntime", cached) if cached is not None else ("torch", None)


class Segmenter:
    """A ready-to-run model: ``predict(rgb, thermal)`` for any H x W."""

    def __init__(
        self,
        backend: Backend,
        class_table: ClassTable,
        thermal_range: ThermalRange | None = None,
        thermal_percentiles: tuple[float, float] = (1.0, 99.0),
        metadata: dict[str, Any] | None = None,
        thermal_homography: Any = None,
    ) -> None:
        if backend.num_classes != class_table.num_classes:
            raise ValueError(
                f"backend predicts {backend.num_classes} classes but class table "
                f"{class_table.name!r} has {class_table.num_classes}"
            )
        self.backend = backend
        self.class_table = class_table
        self.thermal_range = thermal_range
        self.thermal_percentiles = thermal_percentiles
        self.metadata = metadata or {}
        # thermal -> RGB homography (9 numbers, runtime/registration.py); None = registered
        self.thermal_homography = thermal_homography
        self.thread_tuner: ThreadTuner | None = None
        self._threads_fixed = ""

    def set_cpu_threads(self, threads: int) -> None:
        """CPU intra-op threads of the backend: ``threads`` > 0 fixed, 0 chosen by
        measurement while running (``ThreadTuner``) unless OMP_NUM_THREADS is set. A GPU
        backend, or one without ``set_threads``, keeps what it has."""
        self.thread_tuner = None
        apply = getattr(self.backend, "set_threads", None)
        if apply is None or str(getattr(self.backend, "device", "cpu")) != "cpu":
            self._threads_fixed = f"not used ({self.backend.name} on {self.backend.device})"
        elif threads > 0:
            apply(threads)
            self._threads_fixed = f"{threads} (fixed)"
        elif os.environ.get("OMP_NUM_THREADS"):  # the user's (or launcher's) choice is kept
            self._threads_fixed = f"{torch.get_num_threads()} (OMP_NUM_THREADS)"
            if self.backend.name != "torch":
                apply(torch.get_num_threads())
        else:
            self.thread_tuner = ThreadTuner(apply=apply)

    def threads_info(self) -> str:
        """What chooses the CPU threads now, for the ready line and diagnostics."""
        if self.thread_tuner is not None:
            return self.thread_tuner.summary()
        if self._threads_fixed:
            return self._threads_fixed
        threads = getattr(self.backend, "threads", None)
        if self.backend.name != "torch":
            return (
                f"{threads or 'one per core'} (set when the {self.backend.name} backend was built)"
            )
        return f"{torch.get_num_threads()} (torch default)"

    @property
    def thermal_homography(self) -> list[float] | None:
        return None if self.registration is None else self.registration.as_list()

    @thermal_homography.setter
    def thermal_homography(self, values: Any) -> None:
        """Warp thermal frames into the RGB frame before the model (HomographyError if bad)."""
        self.registration = Registration.from_values(values)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def input_size(self) -> int:
        return self.backend.input_size

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path = BUNDLED_CHECKPOINT,
        device: str = "cpu",
        precision: str = "fp32",
        backend: str = "torch",
        thermal_range: ThermalRange | None = None,
        thermal_homography: Any = None,
        **kw: Any,
    ) -> Segmenter:
        """Load a project checkpoint. ``thermal_range=None`` uses the checkpoint's own
        default (fixed range or per-frame auto gain). A non-torch backend gets the loaded
        model (it exports and caches the graphs) or ``export_dir=`` with graphs exported
        before; other ``kw`` go to the backend factory. ``backend="auto"``: see
        ``auto_backend``."""
        from fusionsam_model.runtime.checkpoint import load_checkpoint

        model, table, meta = load_checkpoint(path, map_location="cpu")
        cfg = model.config
        export_dir = kw.pop("export_dir", None)
        if backend == "auto":
            backend, export_dir = auto_backend(model, device, precision, export_dir)
            if backend == "torch":
                kw.pop("threads", None)  # torch's threads are process-wide, set by the caller
        source: Any = export_dir if backend != "torch" and export_dir else model
        engine = make_backend(backend, source, device=device, precision=precision, **kw)
        return cls(
            engine,
            table,
            thermal_range=thermal_range if thermal_range is not None else cfg.thermal_range,
            thermal_percentiles=cfg.thermal_percentiles,
            metadata=meta,
            thermal_homography=thermal_homography,
        )

    @classmethod
    def from_preset(
        cls,
        preset: str = "tiny",
        class_table: str | ClassTable = "mfnet",
        input_size: int | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        thermal_range: ThermalRange | None = None,
        seed: int | None = 0,
        backend: str = "torch",
        **overrides: Any,
    ) -> Segmenter:
        """An untrained model (random weights) of a preset: for benchmarks, tests, plumbing.
        ``overrides`` are ModelConfig fields (e.g. ``fusion="concat"``)."""
        from fusionsam_model.modeling.config import build_config
        from fusionsam_model.modeling.model import FusionSAM

        table = get_class_table(class_table) if isinstance(class_table, str) else class_table
        cfg = build_config(
            preset, input_size=input_size, num_classes=table.num_classes, **overrides
        )
        if seed is not None:
            torch.manual_seed(seed)
        model = FusionSAM(cfg)
        engine = make_backend(backend, model, device=device, precision=precision)
        return cls(
            engine, table, thermal_range=thermal_range, thermal_percentiles=cfg.thermal_percentiles
        )

    def predict(
        self,
        rgb: np.ndarray,
        thermal: np.ndarray,
        return_probs: bool = False,
        return_fused: bool = True,
    ) -> Prediction:
        """rgb (H, W, 3) uint8 RGB order; thermal (H, W) uint8 / uint16 / float.
        ``return_fused=False`` skips composing the fused image at H x W ("compose" stage)
        when nobody uses it."""
        return self.predict_batch([rgb], [thermal], return_probs, return_fused)[0]

    def predict_batch(
        self,
        rgbs: Sequence[np.ndarray],
        thermals: Sequence[np.ndarray],
        return_probs: bool = False,
        return_fused: bool = True,
    ) -> list[Prediction]:
        """Several pairs (sizes may differ) in one network call; timings are per batch.
        With a ``thermal_homography`` each thermal frame is first warped into its RGB
        frame (counted in "preprocess")."""
        t0 = time.perf_counter()
        unseen: list[np.ndarray | None] = [None] * len(rgbs)
        if self.registration is not None:
            hws = [np.shape(r)[:2] for r in rgbs]
            unseen = [
                self.registration.layout(np.shape(t)[:2], hw).uncovered
                for t, hw in zip(thermals, hws, strict=True)
            ]
            thermals = [self.registration.warp(t, hw) for t, hw in zip(thermals, hws, strict=True)]
        levels = [frame_levels(t, self.thermal_range, self.thermal_percentiles) for t in thermals]
        rgb, thermal, boxes = preprocess_batch(
            rgbs, thermals, self.input_size, self.thermal_range, self.thermal_percentiles, levels
        )
        if self.thread_tuner is not None:
            self.thread_tuner.before_call()
        t1 = time.perf_counter()
        out = self.backend.infer(rgb, thermal)
        t2 = time.perf_counter()
        if self.thread_tuner is not None:
            self.thread_tuner.record((t2 - t1) * 1e3)
        results = [
            unletterbox_labels(out.class_logits[i], box, return_probs)
            for i, box in enumerate(boxes)
        ]
        t3 = time.perf_counter()
        fused: list[np.ndarray | None] = [None] * len(boxes)
        if return_fused:
            fused = [
                self.compose_fused(r, t, out.fusion_maps[i], box, lv, u)
                for i, (r, t, box, lv, u) in enumerate(
                    zip(rgbs, thermals, boxes, levels, unseen, strict=True)
                )
            ]
        t4 = time.perf_counter()
        timings = {
            "preprocess": (t1 - t0) * 1e3,
            **out.timings,
            "postprocess": (t3 - t2) * 1e3,
            "compose": (t4 - t3) * 1e3,
        }
        timings["total"] = (t4 - t0) * 1e3
        return [
            Prediction(labels, image, probs, dict(timings))
            for (labels, probs), image in zip(results, fused, strict=True)
        ]

    def compose_fused(
        self,
        rgb: np.ndarray,
        thermal: np.ndarray,
        maps: torch.Tensor,
        box: Letterbox,
        levels: ThermalRange | None = None,
        unseen: np.ndarray | None = None,
    ) -> np.ndarray:
        """The published fused image: composed at the camera's resolution from its own
        pixels by the network's decision maps (``modeling.composition``), the same for
        every backend. The maps cover the letterboxed S x S input at S/4: only the cells
        over the image are used. The thermal image enters with the levels the model read
        (``levels`` from ``frame_levels``; measured again when not given). Where the
        thermal camera sees nothing (``unseen``, from the registration) the fused image is
        the visible image: the warped thermal pixels there only continue its edge."""
        crop = maps_over_image(maps, box)
        th = normalize_thermal(thermal, levels or self.thermal_range, self.thermal_percentiles)
        visible = rgb_to_uint8(rgb)
        fused = compose_numpy(visible, th, crop)
        if unseen is not None:
            np.copyto(fused, visible, where=unseen[:, :, None])
        return fused
