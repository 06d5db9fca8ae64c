"""Run state of a training run: where it stands, its RNG states, and reading it back.

Stored in ``last.pt``'s metadata so ``--resume`` continues exactly, and read with the
safe loader (``torch.load(..., weights_only=True)``): everything is a tensor, a number,
a string or a list/dict of those. The numpy RNG state (whose key array would need
unsafe unpickling) is stored as an int64 tensor, python's ``random`` state as nested
lists. (``fusionsam_model.runtime.checkpoint`` is the checkpoint *format*; this module
is only the trainer's resume state inside it.)
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionsam_model.runtime.checkpoint import CheckpointError, read_payload


@dataclass
class RunState:
    """Where a run stands; stored in last.pt so ``--resume`` continues exactly."""

    stage: str = "lstg"  # stage in progress (or finished last)
    epoch: int = 0  # epochs completed in ``stage``
    step: int = 0  # optimizer steps in ``stage``
    best_miou: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, st: dict[str, Any]) -> RunState:
        return cls(
            stage=st["stage"],
            epoch=int(st["epoch"]),
            step=int(st["step"]),
            best_miou=float(st["best_miou"]),
            best_epoch=int(st["best_epoch"]),
            history=list(st["history"]),
            stage_seconds=dict(st["stage_seconds"]),
        )


def read_resume_state(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model state_dict, train_state) of a run's last.pt, loaded safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint at {path}")
    payload = read_payload(path)
    st = payload.get("metadata", {}).get("train_state") if isinstance(payload, dict) else None
    if st is None:
        raise CheckpointError(
            f"--resume: {path} has no training state (best.pt and bundled models hold weights "
            "only); resume from the run's last.pt"
        )
    return payload["state_dict"], st


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy, torch CPU and every CUDA device."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(py_version), list(py_state), py_gauss],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng``."""
    version, py_state, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in py_state), gauss))
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            int(n["pos"]),
            int(n["has_gauss"]),
            float(n["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Same start on every run (and every rank: DDP broadcasts rank 0's weights anyway)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
