"""Starting weights of a run from a project checkpoint: the whole model, or only its LSTG.

``model.init_from`` fine-tunes a trained model; ``model.init_lstg_from`` lets ablations
share one stage 1 (and a SAM baseline on the fused image take the FMP too). Both read
checkpoints with the safe loader (weights_only=True).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.modeling.sam_weights import fit_tensor
from fusionsam_model.runtime.checkpoint import CheckpointError, load_checkpoint, read_payload

log = logging.getLogger("training.train")


def init_model(model: FusionSAM, path: Path) -> None:
    """All weights from a project checkpoint (same preset and switches): fine-tuning. A
    model trained at another input size S fits too: its position embeddings and relative
    position tables are interpolated to this run's token grid (as for SAM's weights)."""
    if not path.is_file():
        raise CheckpointError(f"model.init_from: no checkpoint at {path}")
    source, _, _ = load_checkpoint(path, map_location="cpu")
    state = {k: v.float() if v.is_floating_point() else v for k, v in source.state_dict().items()}
    own = model.state_dict()
    resized = []
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            fitted = fit_tensor(key, value, own[key])
            if fitted is not None:
                state[key] = fitted
                resized.append(key)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"model.init_from: {path} does not match this run's model config: {exc}"
        ) from None
    if resized:
        sizes = (source.config.input_size, model.config.input_size)
        log.info(
            "model.init_from: %d position tables interpolated from S=%d to S=%d",
            len(resized),
            *sizes,
        )
    log.info("model initialised from %s", path)


def init_lstg(model: FusionSAM, path: Path, with_fmp: bool) -> None:
    """Copy the LSTG autoencoders (lstg_rgb.*, lstg_thermal.*) from a project checkpoint;
    ``with_fmp``: also the FMP (a SAM baseline on the fused image, Table 4, whose front stays frozen)."""
    if not path.is_file():
        raise CheckpointError(f"model.init_lstg_from: no checkpoint at {path}")
    payload = read_payload(path)
    state = payload.get("state_dict", {}) if isinstance(payload, dict) else {}
    own = model.state_dict()
    prefixes = ("lstg_rgb.", "lstg_thermal.") + (("fmp.",) if with_fmp else ())
    keys = [k for k in own if k.startswith(prefixes)]
    missing = [k for k in keys if k not in state or state[k].shape != own[k].shape]
    if not keys or missing:
        raise CheckpointError(
            f"model.init_lstg_from: {path} lacks matching LSTG weights for this model "
            f"(e.g. {missing[:3]}); it must come from a run with the same preset and LSTG"
        )
    model.load_state_dict({k: state[k] for k in keys}, strict=False)
    log.info("LSTG autoencoders (%d tensors) initialised from %s", len(keys), path)
