"""CPU thread policy that holds on shared cores; import this module before torch.

OpenMP threads that spin while they wait for work take the cores that other processes
(other ROS nodes, the camera driver) need; with two threads on two busy cores the
model then ran 5-10x slower than with one. ``OMP_WAIT_POLICY=PASSIVE`` makes them
sleep instead. libgomp reads it once, when torch loads it, so the variable is set at
import time of this module, which the node, the benchmark and the evaluation tools
import first. A value the user set is kept.

onnxruntime has its own thread pool with the same habit; ``ort_session_options``
switches its spinning off.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_TORCH_LOADED_BEFORE = "torch" in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def passive_wait_policy() -> bool:
    """True when the passive policy is in force for torch's OpenMP threads (torch was not
    imported before this module, and nobody asked for another policy)."""
    return os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE" and not _TORCH_LOADED_BEFORE


def set_torch_threads(threads: int | None) -> int:
    """``torch.set_num_threads(threads)`` when > 0, and the same count for OpenCV (the
    pre-processing and the fused image's composition run in OpenCV, whose own thread pool
    otherwise takes every core); returns the count torch now uses."""
    import cv2
    import torch

    if threads:
        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))
    return torch.get_num_threads()


def ort_session_options(threads: int | None = None) -> Any:
    """onnxruntime SessionOptions: full graph optimisation, no spin-waiting, ``threads``
    intra-op threads (0/None: one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = int(threads)
    return options
