"""What a person watches during training: TensorBoard scalars/images and console logging.

Only rank 0 writes; other ranks get a ``RunLogger`` whose methods do nothing, so the
training loop never branches on rank for logging.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

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

    def preview_panels(
        self,
        model: torch.nn.Module,
        preview: dict[str, torch.Tensor],
        stage: str,
        epoch: int,
        class_table: ClassTable,
    ) -> None:
        """The model on the fixed val preview pairs: an image panel, and in stage lstg the
        reconstructions next to their sources."""
        if self.writer is None:
            return
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in preview.items()}
        model.eval()
        with torch.no_grad():
            out = model(batch["rgb"], batch["thermal"], reconstruct=stage == "lstg")
        out_d = {
            "fused": out.fused,
            "mask_logits": out.mask_logits,
            "class_logits": out.class_logits,
        }
        self.image_panel(f"{stage}/val_preview", batch, out_d, class_table, epoch)
        if stage == "lstg":
            for k, rec in (("rgb", out.recon_rgb), ("thermal", out.recon_thermal)):
                if rec is not None:
                    src = batch[k].float().cpu()
                    self.writer.add_images(
                        f"lstg/reconstruction_{k}",
                        torch.cat([src, rec.float().cpu()], dim=3),
                        epoch,
                    )

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def epoch_line(entry: dict[str, Any]) -> str:
    """One console line per epoch: loss, val mIoU, codebook perplexity, speed."""
    parts = [
        f"{entry['stage']} epoch {entry['epoch']}",
        f"loss {entry.get('loss', float('nan')):.4f}",
    ]
    if "val_miou" in entry and entry["val_miou"] is not None:
        parts.append(f"val mIoU {100 * entry['val_miou']:.2f}")
    for k in ("perplexity_rgb", "perplexity_thermal"):
        if k in entry:
            parts.append(f"{k} {entry[k]:.1f}")
    parts.append(f"{entry['images_per_s']:.1f} img/s, {entry['seconds']:.0f} s")
    return ", ".join(parts)


def print_report(rep: dict[str, Any]) -> None:
    """The end-of-run summary the CLI prints."""
    print("\n=== training report ===")
    print(
        f"run: {rep['out_dir']}  stages: {'+'.join(rep['stages'])}  processes: {rep['processes']}"
    )
    print(f"perceptual loss: {rep['perceptual_loss']}")
    for stage, s in rep["stage_seconds"].items():
        print(f"stage {stage}: {s / 60:.1f} min")
    if rep["best_val_miou"] is not None:
        print(
            f"best val mIoU ({rep['select_split']} split): {100 * rep['best_val_miou']:.2f} at seg epoch {rep['best_epoch']}"
        )
    print(f"checkpoints: {rep['checkpoints']}")
    print(f"report: {Path(rep['out_dir']) / 'report.json'}")


def _resize(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return torch.nn.functional.interpolate(x[None], size=tuple(size), mode="bilinear")[0]


def _colorize(ids: np.ndarray, class_table: ClassTable) -> torch.Tensor:
    ids = ids.astype(np.int64)
    lut = class_table.palette_array()
    ids = np.where(ids == IGNORE, 255, ids).astype(np.uint8)  # ignored pixels show white
    return torch.from_numpy(lut[ids]).permute(2, 0, 1).float() / 255.0
