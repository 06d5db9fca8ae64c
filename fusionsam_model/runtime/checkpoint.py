"""Project checkpoints: one self-describing file.

A project checkpoint is ``{format_version, config, class_table, state_dict, metadata,
weights_sha256}`` so a file rebuilds its own network and knows its classes. Everything
loads with ``torch.load(weights_only=True)`` (``modeling.weights_file.read_payload``): a
checkpoint can never run code. torch does not verify its zip container on read, so bytes
damaged inside a tensor would load silently: the SHA-256 of the stored weights is checked
at load, and non-finite weights are refused (files written before the checksum existed
get the non-finite check only).

Official SAM / SAM2 checkpoints only cover the SAM parts: they load into a model with
``modeling.sam_weights.load_sam_weights`` / ``modeling.sam2_encoder.load_sam2_weights``
(the model layer, which does not import this module).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.modeling.config import ModelConfig
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.modeling.weights_file import CheckpointError, read_payload

# 2: the fused image is composed from the cameras by decision maps (fmp.heads.fusion_maps);
# version 1 files decoded it (fmp.heads.image_mid / image_out) and cannot run here
FORMAT_VERSION = 2
FORMAT_NAME = "fusionsam-checkpoint"


FP16_SAFE_MAX = 60000.0  # float16 tops out at 65504: larger tensors stay float32


def _compact(state: dict[str, torch.Tensor], weights_dtype: str) -> dict[str, torch.Tensor]:
    """Cast floating tensors to float16 for storage (halves the file); tensors whose values
    float16 cannot hold (e.g. large EMA statistics) keep float32."""
    if weights_dtype == "float32":
        return state
    if weights_dtype != "float16":
        raise ValueError(f"weights_dtype must be 'float32' or 'float16', got {weights_dtype!r}")
    out = {}
    for k, v in state.items():
        fits = v.is_floating_point() and (v.numel() == 0 or v.abs().max() < FP16_SAFE_MAX)
        out[k] = v.half() if fits else v
    return out


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_weights(state: dict[str, torch.Tensor], stored_digest: str | None, source: str) -> None:
    """Raise CheckpointError when the weights differ from the checksum saved with them
    or hold NaN/inf values."""
    if stored_digest is not None:
        digest = weights_digest(state)
        if digest != stored_digest:
            raise CheckpointError(
                f"checkpoint {source} is corrupt: the SHA-256 of its weights is "
                f"{digest[:16]}..., the file says {stored_digest[:16]}... "
                "Copy or download it again, or re-train."
            )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (f" ... (+{len(bad) - 5})" if len(bad) > 5 else "")
        raise CheckpointError(
            f"checkpoint {source} has non-finite (NaN/inf) weights in {len(bad)} tensor(s): "
            f"{shown}. The file is corrupt or training diverged; use another checkpoint."
        )


def save_checkpoint(
    path: str | Path,
    model: FusionSAM,
    class_table: ClassTable,
    extra: dict[str, Any] | None = None,
    weights_dtype: str = "float32",
) -> Path:
    """Write config + class table + weights (+ metadata such as epoch, mIoU) to one file.

    ``weights_dtype="float16"`` stores floating weights in half precision (the bundled
    model: a few MB instead of ~10); loading always casts them back to float32."""
    if class_table.num_classes != model.config.num_classes:
        raise ValueError(
            f"class table {class_table.name!r} has {class_table.num_classes} classes but the "
            f"model was built for {model.config.num_classes}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _compact({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights_dtype)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "class_table": class_table.to_dict(),
        "weights_dtype": weights_dtype,
        "state_dict": state,
        "weights_sha256": weights_digest(state),
        "metadata": dict(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[FusionSAM, ClassTable, dict[str, Any]]:
    """Rebuild the model a project checkpoint describes -> (model in eval mode, class table, metadata)."""
    path = Path(path)
    payload = read_payload(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        hint = ""
        if isinstance(payload, dict) and any(k.startswith("image_encoder.") for k in payload):
            hint = (
                " It looks like an official SAM checkpoint: load it into a model with "
                "fusionsam_model.modeling.sam_weights.load_sam_weights()."
            )
        raise CheckpointError(
            f"{path} is not a FusionSAM checkpoint (no '{FORMAT_NAME}' header).{hint}"
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this code reads version "
            f"{FORMAT_VERSION}. Use the matching fusionsam version or re-train"
            + (
                " (version 1 decoded the fused image; version 2 composes it from the cameras)."
                if version == 1
                else "."
            )
        )
    try:
        config = ModelConfig.from_dict(payload["config"])
        class_table = ClassTable.from_dict(payload["class_table"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an invalid header: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has an invalid header: state_dict is not a tensor dict")
    check_weights(state, payload.get("weights_sha256"), str(path))
    model = FusionSAM(config)
    check_state_dict(model, state, str(path))
    own = model.state_dict()  # float16-stored weights come back as the model's float32
    state = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state)
    model.eval()
    return model, class_table, dict(payload.get("metadata", {}))


def compact_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Re-save a project checkpoint with float16 weights and no training state (what ships)."""
    model, table, meta = load_checkpoint(src)
    meta.pop("train_state", None)
    return save_checkpoint(dst, model, table, meta, weights_dtype="float16")


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected and shape-mismatched keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        lines = [f"checkpoint {source} does not match the model its config describes:"]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", shapes),
        ):
            if items:
                shown = ", ".join(items[:10]) + (
                    f" ... (+{len(items) - 10})" if len(items) > 10 else ""
                )
                lines.append(f"  {title} ({len(items)}): {shown}")
        lines.append("It was written by different code or edited; re-train or re-export it.")
        raise CheckpointError("\n".join(lines))


if __name__ == "__main__":  # python -m fusionsam_model.runtime.checkpoint SRC DST
    import sys

    if len(sys.argv) != 3:
        raise SystemExit(
            "usage: python -m fusionsam_model.runtime.checkpoint SRC.pt DST.pt (float16 copy)"
        )
    out = compact_checkpoint(sys.argv[1], sys.argv[2])
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, float16 weights)")
