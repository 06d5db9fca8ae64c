"""Official SAM weights (``sam_vit_b_01ec64.pth`` ...) into the SAM parts of a FusionSAM.

The official checkpoints only cover the SAM parts (image encoder, prompt encoder, mask
decoder); they were trained at S = 1024 with 4 mask tokens and an IoU head, so some
tensors are resized or tiled to our S and C classes. ``load_sam_weights`` copies what
fits and says which tensors it loaded, adapted, dropped or left random (``LoadReport``).
SAM2 files go through ``sam2_encoder.load_sam2_weights``, which renames their keys to
SAM's layout and calls ``load_sam_weights``. Project checkpoints (the whole model, its
config and classes) are ``runtime.checkpoint``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fusionsam_model.modeling.sam_decoder import resize_pos_embed, resize_rel_pos
from fusionsam_model.modeling.weights_file import CheckpointError, read_payload

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


def fit_tensor(key: str, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor | None:
    """Fit a tensor (official SAM, or ours at another input size) to our shape, or None if
    no sensible mapping exists."""
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


def load_sam_weights(model: nn.Module, source: str | Path | dict[str, torch.Tensor]) -> LoadReport:
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
        official = read_payload(source, "cpu")
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
        fitted = src if src.shape == dst.shape else fit_tensor(k, src, dst)
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
