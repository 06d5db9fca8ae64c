"""FusionSAM model package: pure PyTorch + segment_anything, no ROS import.

Heavy modules load lazily so that ``import fusionsam_model`` stays cheap for tools
that only need class tables, datasets or metrics.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from fusionsam_model.data.classes import CLASS_TABLES, FMB, MFNET, ClassTable, get_class_table

_LAZY = {
    "Segmenter": "runtime.segmenter",
    "Prediction": "runtime.segmenter",
    "BUNDLED_CHECKPOINT": "runtime.segmenter",
    "CheckpointError": "runtime.checkpoint",
    "ModelConfig": "modeling.config",
    "FusionSAM": "modeling.model",
}

__all__ = ["CLASS_TABLES", "FMB", "MFNET", "ClassTable", "get_class_table", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
