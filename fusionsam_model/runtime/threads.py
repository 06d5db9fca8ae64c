"""CPU thread policy that holds on shared cores; import this module before torch.

OpenMP threads that spin while they wait for work take the cores that other processes
(other ROS nodes, the camera driver) need; with two threads on two busy cores the
model then ran 5-10x slower than with one. ``OMP_WAIT_POLICY=PASSIVE`` makes them
sleep instead. libgomp reads it once, when torch loads it, so the variable is set at
import time of this module, which the node, the benchmark and the evaluation tools
import first. A value the user set is kept.

onnxruntime has its own thread pool with the same habit; ``ort_session_options``
switches its spinning off.

Memory, for the same reason (a per-frame loop on a shared CPU): glibc hands every freed block
above its mmap threshold (128 KB at start) back to the kernel, so each 640 x 480 float plane
of the post-processing is page-faulted in again on the next frame. In a process that has run
the model this cost 4-5 ms of the fused image's 8 ms composition per pair (and 8 ms of 52 ms
end to end, `fusionsam-bench`, 2026-12-06). ``keep_freed_memory`` raises glibc's mmap and
trim thresholds at import, so freed blocks are reused; a ``MALLOC_*`` variable the user set
is kept.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

_TORCH_LOADED_BEFORE = "torch" in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed value on 64-bit (a 1080p plane is 8 MB)


def keep_freed_memory() -> bool:
    """Raise glibc's mmap / trim thresholds (see the module docstring); False where it does
    not apply (not glibc, or the user tuned malloc with MALLOC_* variables)."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mmap_ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_ok = libc.mallopt(M_TRIM_THRESHOLD, 4 * MMAP_THRESHOLD_BYTES) == 1
    return mmap_ok and trim_ok


FREED_MEMORY_KEPT = keep_freed_memory()


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
