"""What a person watches during training: TensorBoard scalars/images and console logging.

Only rank 0 writes; other ranks get a ``RunLogger`` whose methods do nothing, so the
training loop never branches on rank for logging.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch

from fusionsam_model.data.classes import ClassTable
from training.losses import IGNORE


def setup_console_logging(rank: int) -> None:
    """INFO on rank 0, warnings only elsewhere, one line format."""
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


class RunLogger:
    """TensorBoard writer for rank 0 (``enabled=False`` elsewhere or when switched off)."""

    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if v is not None and np.isfinite(v):
                self.writer.add_scalar(f"{prefix}{k}", float(v), step)

    def image_panel(
        self,
        tag: str,
        batch: dict[str, torch.Tensor],
        out: dict[str, torch.Tensor] | None,
        class_table: ClassTable,
        step: int,
        max_images: int = 2,
    ) -> None:
        """RGB | thermal | fused | fusion mask | prediction | label, one row per image."""
        if self.writer is None:
            return
        rows = []
        n = min(max_images, batch["rgb"].shape[0])
        for i in range(n):
            rgb = batch["rgb"][i].float().cpu().clamp(0, 1)
            size = rgb.shape[-2:]
            tiles = [rgb, batch["thermal"][i].float().cpu().clamp(0, 1).expand(3, -1, -1)]
            if out is not None:
                tiles.append(out["fused"][i].detach().float().cpu().clamp(0, 1))
                mask = torch.sigmoid(out["mask_logits"][i].detach().float().cpu())
                tiles.append(_resize(mask, size).expand(3, -1, -1))
                logits = _resize(out["class_logits"][i].detach().float().cpu(), size)
                tiles.append(_colorize(logits.argmax(0).numpy(), class_table))
            tiles.append(_colorize(batch["label"][i].cpu().numpy(), class_table))
            rows.append(torch.cat(tiles, dim=2))
        self.writer.add_image(tag, torch.cat(rows, dim=1), step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _resize(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return torch.nn.functional.interpolate(x[None], size=tuple(size), mode="bilinear")[0]


def _colorize(ids: np.ndarray, class_table: ClassTable) -> torch.Tensor:
    ids = ids.astype(np.int64)
    lut = class_table.palette_array()
    ids = np.where(ids == IGNORE, 255, ids).astype(np.uint8)  # ignored pixels show white
    return torch.from_numpy(lut[ids]).permute(2, 0, 1).float() / 255.0
