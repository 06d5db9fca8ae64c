"""Project checkpoints (one self-describing file) and official SAM weight loading.

A project checkpoint is ``{format_version, config, class_table, state_dict, metadata,
weights_sha256}`` so a file rebuilds its own network and knows its classes. Everything
loads with ``torch.load(weights_only=True)``: a checkpoint can never run code. torch does
not verify its zip container on read, so bytes damaged inside a tensor would load
silently: the SHA-256 of the stored weights is checked at load, and non-finite weights
are refused (files written before the checksum existed get the non-finite check only).

Official SAM checkpoints (``sam_vit_b_01ec64.pth`` ...) only cover the SAM parts; they
were trained at S = 1024 with 4 mask tokens and an IoU head, so some tensors are
resized or tiled to our S and C classes. ``load_sam_weights`` says which.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.modeling.config import ModelConfig
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.modeling.sam_decoder import resize_pos_embed, resize_rel_pos

# 2: the fused image is composed from the cameras by decision maps (fmp.heads.fusion_maps);
# version 1 files decoded it (fmp.heads.image_mid / image_out) and cannot run here
FORMAT_VERSION = 2
FORMAT_NAME = "fusionsam-checkpoint"


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, of the wrong kind, or does not fit the model."""


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


def _read(path: Path, map_location: str | torch.device) -> Any:
    """torch.load with weights_only=True and errors that say what went wrong."""
    if not path.exists():
        raise CheckpointError(
            f"checkpoint not found: {path}. Train one with `python -m training.train` "
            "(see README), pass the path of an existing .pt file, or use "
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


def read_payload(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The raw stored dict of a .pt file, read safely (weights_only=True): for callers that
    need more than the model, e.g. the trainer's resume state or its LSTG initialisation."""
    return _read(Path(path), map_location)


def _corrupt(path: Path, e: Exception) -> CheckpointError:
    first = str(e).splitlines()[0] if str(e) else ""
    return CheckpointError(
        f"checkpoint {path} ({path.stat().st_size} bytes) is truncated or corrupt and cannot "
        f"be read ({type(e).__name__}: {first}). Download or copy it again, or re-train it."
    )


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[FusionSAM, ClassTable, dict[str, Any]]:
    """Rebuild the model a project checkpoint describes -> (model in eval mode, class table, metadata)."""
    path = Path(path)
    payload = _read(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        hint = ""
        if isinstance(payload, dict) and any(k.startswith("image_encoder.") for k in payload):
            hint = " It looks like an official SAM checkpoint: load it with load_sam_weights()."
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


# ---- official SAM checkpoints --------------------------------------------------------
SAM_PREFIXES = {
    "image_encoder.": "image_encoder.",
    "prompt_encoder.": "sam_decoder.prompt_encoder.",
    "mask_decoder.": "sam_decoder.mask_decoder.",
}


@dataclass
class LoadReport:
    """What happened to every tensor of an official SAM checkpoint."""

    loaded: list[str] = field(default_factory=list)  # copied as is
    adapted: list[str] = field(default_factory=list)  # resized / tiled to our shapes
    dropped: list[str] = field(default_factory=list)  # in the file, no place in our model
    random: list[str] = field(default_factory=list)  # SAM-part tensors left at init

    def __str__(self) -> str:
        lines = [
            f"SAM weights: {len(self.loaded)} tensors loaded, {len(self.adapted)} adapted, "
            f"{len(self.dropped)} dropped, {len(self.random)} left random "
            "(LSTG, FMP and the presence head are not in SAM files: trained by this project)"
        ]
        for title, items in (
            ("adapted", self.adapted),
            ("dropped", self.dropped),
            ("random", self.random),
        ):
            shown: list[str] = []
            for k in items:
                short = _HYPERNET_TENSOR.sub(r"\1.*", k)
                short = re.sub(r": \(\d+(, \d+)*,?\) -> \(\d+(, \d+)*,?\)(?= <-)", "", short)
                if short not in shown:
                    shown.append(short)
            lines += [f"  {title}: {k}" for k in shown]
        return "\n".join(lines)


_HYPERNET_TENSOR = re.compile(r"(output_hypernetworks_mlps\.\d+)\.layers\.\d+\.(?:weight|bias)")


def _tile_rows(src: torch.Tensor, rows: int) -> torch.Tensor:
    """(n, ...) -> (rows, ...) by repeating the rows cyclically (mask tokens, hypernets)."""
    idx = torch.arange(rows) % src.shape[0]
    return src[idx].clone()


def _adapt(key: str, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor | None:
    """Fit an official tensor to our shape, or None if no sensible mapping exists."""
    if key.endswith("pos_embed") and src.ndim == 4 and src.shape[-1] == dst.shape[-1]:
        return resize_pos_embed(src, dst.shape[1])
    if (".rel_pos_h" in key or ".rel_pos_w" in key) and src.shape[1:] == dst.shape[1:]:
        return resize_rel_pos(src, dst.shape[0])
    if key.endswith("mask_decoder.mask_tokens.weight") and src.shape[1:] == dst.shape[1:]:
        return _tile_rows(src, dst.shape[0])
    return None


def _hypernet_source(key: str, n_official: int) -> str | None:
    """Our ``output_hypernetworks_mlps.{i}.*`` -> the official MLP i mod 4 it starts from."""
    marker = "mask_decoder.output_hypernetworks_mlps."
    if marker not in key:
        return None
    head, rest = key.split(marker)
    i, tail = rest.split(".", 1)
    return f"{head}{marker}{int(i) % n_official}.{tail}"


def load_sam_weights(model: FusionSAM, source: str | Path | dict[str, torch.Tensor]) -> LoadReport:
    """Load an official SAM state dict into the SAM parts of ``model``.

    Copies what fits; interpolates ``pos_embed`` and the global-attention rel-pos tables
    when S != 1024; tiles the 4 official mask tokens / hypernetwork MLPs over C classes
    (class i starts from official token i mod 4); drops the IoU head; leaves the presence
    head and anything else without a source at its initialisation.
    """
    if isinstance(source, dict):
        official, name = source, "<state dict>"
    else:
        name = str(source)
        official = _read(Path(source), "cpu")
        if not isinstance(official, dict) or not any(
            k.startswith("image_encoder.") for k in official
        ):
            raise CheckpointError(
                f"{name} is not an official SAM checkpoint (no image_encoder.* keys); "
                "expected sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth"
            )
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    official_name: dict[str, str] = {}
    for k, v in official.items():
        prefix = next((p for p in SAM_PREFIXES if k.startswith(p)), None)
        if prefix is not None:
            ours = SAM_PREFIXES[prefix] + k[len(prefix) :]
            mapped[ours] = v
            official_name[ours] = k
    n_official_tokens = mapped.get(
        "sam_decoder.mask_decoder.mask_tokens.weight", torch.empty(4)
    ).shape[0]
    report = LoadReport()
    new_state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    sam_keys = [k for k in own if k.startswith(tuple(SAM_PREFIXES.values()))]
    for k in sam_keys:
        dst = own[k]
        src_key = k if k in mapped else _hypernet_source(k, n_official_tokens)
        src = mapped.get(src_key) if src_key else None
        if src is None:
            report.random.append(k)
            continue
        used.add(src_key)
        if src.shape == dst.shape and src_key == k:
            new_state[k] = src
            report.loaded.append(k)
            continue
        fitted = src if src.shape == dst.shape else _adapt(k, src, dst)
        if fitted is not None and fitted.shape == dst.shape:
            new_state[k] = fitted
            origin = "" if src_key == k else f" <- {src_key}"
            report.adapted.append(f"{k}: {tuple(src.shape)} -> {tuple(dst.shape)}{origin}")
        else:
            report.random.append(f"{k} (file has {tuple(src.shape)}, model {tuple(dst.shape)})")
    report.dropped = sorted(official_name[k] for k in mapped if k not in used)
    dims = [k for k in report.random if "(file has" in k]
    if len(dims) > len(sam_keys) // 2:
        raise CheckpointError(
            f"{name} does not fit this model's SAM dimensions ({len(dims)} tensors differ, e.g. "
            f"{dims[0]}). Use the preset that matches the file (vit_b / vit_l / vit_h)."
        )
    with torch.no_grad():
        for k, v in new_state.items():
            own[k].copy_(v.to(own[k].dtype))
    return report


if __name__ == "__main__":  # python -m fusionsam_model.runtime.checkpoint SRC DST
    import sys

    if len(sys.argv) != 3:
        raise SystemExit(
            "usage: python -m fusionsam_model.runtime.checkpoint SRC.pt DST.pt (float16 copy)"
        )
    out = compact_checkpoint(sys.argv[1], sys.argv[2])
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, float16 weights)")
