"""Reading ``.pt`` weight files safely, and the error every weight loader raises.

Below both weight loaders: ``modeling.sam_weights`` (official SAM / SAM2 files into the
model) and ``runtime.checkpoint`` (the project's own checkpoints) read through
``read_payload`` and raise ``CheckpointError``. Everything loads with
``torch.load(weights_only=True)``: a weight file can never run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, of the wrong kind, or does not fit the model."""


def read_payload(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The raw stored object of a .pt file, read safely (weights_only=True), with errors that
    say what went wrong: for the checkpoint and SAM loaders, and callers that need more than
    the model, e.g. the trainer's resume state or its LSTG initialisation."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint not found: {path}. Train one with `python -m training.train` "
            "(see docs/training.md), pass the path of an existing .pt file, or use "
            "Segmenter.from_preset(...) for an untrained model."
        )
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory, expected a .pt file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():
            raise CheckpointError(
                f"{path} holds Python objects that safe loading (weights_only=True) refuses; "
                "it is not a FusionSAM checkpoint or was saved with pickled classes. "
                "Re-save it with fusionsam_model.runtime.checkpoint.save_checkpoint."
            ) from e
        raise _corrupt(path, e) from e
    except Exception as e:  # the unpickler raises many kinds on damaged bytes
        raise _corrupt(path, e) from e


def _corrupt(path: Path, e: Exception) -> CheckpointError:
    first = str(e).splitlines()[0] if str(e) else ""
    return CheckpointError(
        f"checkpoint {path} ({path.stat().st_size} bytes) is truncated or corrupt and cannot "
        f"be read ({type(e).__name__}: {first}). Download or copy it again, or re-train it."
    )
