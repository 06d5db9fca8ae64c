"""Train FusionSAM: ``python -m training.train --config training/configs/NAME.yaml [k=v ...]``.

Stage ``lstg`` pre-trains the per-modality VQ autoencoders, stage ``seg`` the
segmentation path (``training.stages`` holds both steps); ``both`` runs them in
sequence. The same script runs under ``torchrun`` (DDP). This module is the run: the
``Trainer`` builds model and data from the typed options (``training.options``), loops
over epochs, validates through the inference path (``evaluation.scoring``'s summary)
and saves checkpoints; optimisers live in ``training.optim``, the resume state in
``training.run_state``.

Every epoch writes ``last.pt`` (a project checkpoint whose metadata carries the full
resume state) and, after validation on the val split, ``best.pt`` when val mIoU
improves; ``Segmenter.from_checkpoint`` loads either directly.
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusionsam_model.data.classes import ClassTable, get_class_table
from fusionsam_model.modeling.config import build_config
from fusionsam_model.modeling.discriminator import PatchDiscriminator
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.modeling.sam_weights import load_sam_weights
from fusionsam_model.runtime.checkpoint import save_checkpoint
from training import losses as L
from training import stages
from training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
)
from training.init_weights import init_lstg, init_model
from training.logging_utils import RunLogger, epoch_line, print_report, setup_console_logging
from training.options import RunOptions
from training.run_config import ConfigError, load_config
from training.run_data import RunData
from training.run_state import (
    RunState,
    capture_rng,
    read_resume_state,
    restore_rng,
    seed_everything,
)

log = logging.getLogger("training.train")


class Trainer:
    """Owns model, data, optimizers and checkpoints of one run (one process of a DDP job).

    The stage functions take it as a ``stages.StageHost``."""

    # set by stages.setup_stage for the stage being trained
    scaler: torch.amp.GradScaler
    lstg: stages.LSTGPair
    gen: nn.Module
    disc: nn.ModuleDict | None
    net: nn.Module

    def __init__(self, cfg: dict[str, Any], info: DistInfo) -> None:
        self.cfg = cfg  # the serialised form (config.json, resume state)
        self.opts = opts = RunOptions.from_dict(cfg)
        self.info = info
        self.out_dir = Path(opts.train.out_dir)
        self.class_table: ClassTable = get_class_table(opts.model.class_table)
        overrides = dict(opts.model.overrides)
        overrides.setdefault("num_classes", self.class_table.num_classes)
        self.model_config = build_config(opts.model.preset, **overrides)
        if self.model_config.num_classes != self.class_table.num_classes:
            raise ConfigError(
                f"model.num_classes={self.model_config.num_classes} but class table "
                f"{self.class_table.name!r} has {self.class_table.num_classes} classes"
            )
        seed_everything(opts.train.seed)
        self.model = FusionSAM(self.model_config).to(info.device)
        if opts.model.sam_checkpoint:
            report = load_sam_weights(self.model, opts.model.sam_checkpoint)
            log.info("%s", str(report).splitlines()[0])
        if opts.model.init_from:
            init_model(self.model, Path(opts.model.init_from))
        if opts.model.init_lstg_from:
            init_lstg(self.model, Path(opts.model.init_lstg_from), with_fmp=self.frozen_front)
        self.discriminators = nn.ModuleDict(
            {
                k: PatchDiscriminator(3 if k == "rgb" else 1)
                for k, m in (("rgb", self.model.lstg_rgb), ("thermal", self.model.lstg_thermal))
                if m is not None and self.model_config.lstg
            }
        ).to(info.device)
        self.perceptual = L.build_perceptual_loss(opts.loss.perceptual_weights).to(info.device)
        self.precision = opts.train.precision
        if info.device.type != "cuda" and self.precision != "fp32":
            log.info(
                "train.precision=%s applies on CUDA only; running fp32 on %s",
                self.precision,
                info.device,
            )
            self.precision = "fp32"
        self.state = RunState(stage=opts.stages[0])
        self.logger = RunLogger(
            self.out_dir / "tensorboard", info.is_main and opts.train.tensorboard
        )
        self.data = RunData.build(opts, self.model_config, self.class_table, info)
        self.step_losses: list[dict[str, float]] = []  # every optimizer step (tests, report)
        # set by stages.setup_stage
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}

    @property
    def train_loader(self) -> torch.utils.data.DataLoader:
        return self.data.train_loader

    @property
    def frozen_front(self) -> bool:
        """SAM baseline on a trained FusionSAM's fused image: LSTG + FMP are not trained."""
        return self.model_config.sam_baseline and self.model_config.baseline_input == "fused"

    @property
    def lstg_trains_in_seg(self) -> bool:
        """The VQ autoencoders are fine-tuned in stage seg (``seg.freeze_lstg: false``)."""
        return self.model_config.lstg and not self.opts.seg.freeze_lstg

    def steps_per_epoch(self) -> int:
        cap = self.opts.train.max_steps_per_epoch
        n = len(self.data.train_loader)
        return min(n, cap) if cap else n

    # ---- stages (training.stages) ---------------------------------------------------
    def setup_stage(self, stage: str) -> None:
        stages.setup_stage(self, stage)

    def _set_modes(self, stage: str) -> None:
        stages.set_modes(self, stage)

    def lstg_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return stages.lstg_step(self, batch)

    def seg_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return stages.seg_step(self, batch)

    # ---- epochs -------------------------------------------------------------------
    def run_epoch(self, stage: str, epoch: int) -> dict[str, float]:
        self._set_modes(stage)
        self.data.train_sampler.set_epoch(epoch)
        self.data.train_pairs.set_epoch(epoch)
        n_steps = self.steps_per_epoch()
        bar = None
        if self.info.is_main and self.opts.train.progress:
            from tqdm import tqdm

            total_epochs = self.opts.stage(stage).epochs
            bar = tqdm(
                total=n_steps,
                desc=f"{stage} {epoch + 1}/{total_epochs}",
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                leave=False,
            )
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        images = 0
        for i, batch in enumerate(self.data.train_loader):
            if i >= n_steps:
                break
            batch = {k: v.to(self.info.device, non_blocking=True) for k, v in batch.items()}
            stats = self.lstg_step(batch) if stage == "lstg" else self.seg_step(batch)
            self.state.step += 1
            images += batch["rgb"].shape[0] * self.info.world_size
            self.step_losses.append(
                {"stage": stage, "epoch": epoch, "step": self.state.step, **stats}
            )
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            if self.state.step % self.opts.train.log_every == 0:
                lr = self.optimizers["gen" if stage == "lstg" else "seg"].param_groups[0]["lr"]
                self.logger.scalars({**stats, "lr": lr}, self.state.step, prefix=f"{stage}/train/")
            if bar is not None:
                rate = images / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", img_s=f"{rate:.1f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        means = {k: v / max(1, min(n_steps, len(self.data.train_loader))) for k, v in sums.items()}
        means = all_reduce_mean(self.info, means)
        means["images_per_s"] = images / max(seconds, 1e-9)
        means["seconds"] = seconds
        return means

    def validate(self) -> dict[str, dict[str, Any]]:
        """val-split scores through the inference path (Segmenter over the live model), rank 0:
        the ``scoring.summary`` of ``overall`` and, for MFNet-style names, ``day`` / ``night``."""
        result = None
        if self.info.is_main:
            from fusionsam_model.evaluation.offline import evaluate
            from fusionsam_model.evaluation.scoring import SPLITS
            from fusionsam_model.runtime.backends import make_backend
            from fusionsam_model.runtime.segmenter import Segmenter

            cfg = self.model_config
            backend = make_backend(
                "torch",
                self.model,
                device=self.info.device,
                precision="fp32",
                channels_last=False,  # keeps the training module's memory format
            )
            segmenter = Segmenter(
                backend, self.class_table, cfg.thermal_range, cfg.thermal_percentiles
            )
            with torch.no_grad():
                r = evaluate(segmenter, self.data.val_ds, limit=self.opts.data.val_limit)
            result = {split: r[split] for split in SPLITS if split in r}
        return broadcast_object(self.info, result)

    # ---- checkpoints ----------------------------------------------------------------
    def _train_state(self) -> dict[str, Any]:
        return {
            **self.state.to_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "discriminators": self.discriminators.state_dict(),
            "rng": capture_rng(),
            "sampler_epoch": int(self.data.train_sampler.epoch),
            "config": self.cfg,
        }

    def save(self, name: str, with_state: bool, extra: dict[str, Any] | None = None) -> Path:
        meta = {
            "stage": self.state.stage,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "select_split": self.opts.train.select_split,
            **(extra or {}),
        }
        if with_state:
            meta["train_state"] = self._train_state()
        return save_checkpoint(self.out_dir / name, self.model, self.class_table, meta)

    def resume(self, path: str | Path) -> None:
        """Restore everything ``save(..., with_state=True)`` stored (weights_only load)."""
        weights, st = read_resume_state(path)
        self.model.load_state_dict(weights)
        self.discriminators.load_state_dict(st["discriminators"])
        self.state = RunState.from_dict(st)
        self._resume_state = st
        log.info(
            "resuming %s: stage %s after epoch %d (step %d)",
            path,
            self.state.stage,
            self.state.epoch,
            self.state.step,
        )

    def _load_stage_state(self) -> None:
        """Optimiser, schedule, scaler and RNG states of a resumed stage (after setup_stage)."""
        st = getattr(self, "_resume_state", None)
        if st is None:
            return
        for k, s in st["optimizers"].items():
            self.optimizers[k].load_state_dict(s)
        for k, s in st["schedulers"].items():
            self.schedulers[k].load_state_dict(s)
        self.scaler.load_state_dict(st["scaler"])
        restore_rng(st["rng"])
        self._resume_state = None

    # ---- whole run ------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        run_stages = self.opts.stages
        if self.state.stage not in run_stages:
            raise ConfigError(
                f"--resume: checkpoint is in stage {self.state.stage!r}, run has {run_stages}"
            )
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(self.cfg, indent=2))
        for stage in run_stages[run_stages.index(self.state.stage) :]:
            if stage == "lstg" and not len(self.discriminators) and not self.model_config.lstg:
                log.info("stage lstg skipped: model.lstg=false has no VQ autoencoders to pre-train")
                continue
            if stage != self.state.stage:
                self.state.stage, self.state.epoch, self.state.step = stage, 0, 0
            self.setup_stage(stage)
            self._load_stage_state()
            epochs = self.opts.stage(stage).epochs
            t_stage = time.perf_counter() - self.state.stage_seconds.get(stage, 0.0)
            while self.state.epoch < epochs:
                epoch = self.state.epoch
                means = self.run_epoch(stage, epoch)
                entry: dict[str, Any] = {"stage": stage, "epoch": epoch + 1, **means}
                self.state.epoch += 1
                val_every = self.opts.train.val_every
                is_last = self.state.epoch == epochs
                if stage == "seg" and (self.state.epoch % val_every == 0 or is_last):
                    val = self.validate()
                    for split, scores in val.items():  # val_miou, val_miou_day, val_miou_night
                        key = "val_miou" if split == "overall" else f"val_miou_{split}"
                        entry[key] = scores["miou"]
                    self.logger.scalars(
                        {k[4:]: v for k, v in entry.items() if k.startswith("val_")},
                        self.state.step,
                        prefix="seg/val/",
                    )
                    miou = val["overall"]["miou"]
                    if miou is not None and miou > self.state.best_miou:
                        self.state.best_miou, self.state.best_epoch = miou, self.state.epoch
                        if self.info.is_main:
                            self.save(
                                "best.pt",
                                with_state=False,
                                extra={
                                    "val_miou": miou,
                                    "val_iou": val["overall"]["iou"],
                                    "val_split": self.opts.data.val_split,
                                },
                            )
                self.logger.scalars(
                    {k: v for k, v in means.items()}, self.state.step, prefix=f"{stage}/epoch/"
                )
                if self.info.is_main and self.data.preview is not None:
                    every = self.opts.train.image_every
                    if every > 0 and (epoch + 1) % every == 0:
                        self.logger.preview_panels(
                            self.model, self.data.preview, stage, epoch, self.class_table
                        )
                self.state.history.append(entry)
                self.state.stage_seconds[stage] = time.perf_counter() - t_stage
                if self.info.is_main:
                    last = self.save("last.pt", with_state=True)
                    if self.opts.train.keep_epoch_checkpoints:
                        shutil.copyfile(
                            last, self.out_dir / f"{stage}_epoch{self.state.epoch:03d}.pt"
                        )
                    log.info("%s", epoch_line(entry))
                self.logger.flush()
                barrier(self.info)
        return self.report()

    def report(self) -> dict[str, Any]:
        rep = {
            "out_dir": str(self.out_dir),
            "stages": self.opts.stages,
            "best_val_miou": self.state.best_miou if self.state.best_epoch >= 0 else None,
            "best_epoch": self.state.best_epoch if self.state.best_epoch >= 0 else None,
            "select_split": self.opts.train.select_split,
            "stage_seconds": self.state.stage_seconds,
            "history": self.state.history,
            "perceptual_loss": getattr(self.perceptual, "name", type(self.perceptual).__name__),
            "processes": self.info.world_size,
            "checkpoints": {
                "last": str(self.out_dir / "last.pt"),
                "best": str(self.out_dir / "best.pt") if self.state.best_epoch >= 0 else None,
            },
            "model_config": self.model_config.to_dict(),
        }
        if self.info.is_main:
            (self.out_dir / "report.json").write_text(json.dumps(rep, indent=2))
        self.logger.close()
        return rep


def train(cfg: dict[str, Any], resume: str | None = None) -> tuple[dict[str, Any], Trainer]:
    """Run a whole training (library entry point used by the CLI and the tests)."""
    info = init_distributed(RunOptions.from_dict(cfg).train.device)
    try:
        trainer = Trainer(cfg, info)
        if resume:
            trainer.resume(resume)
        rep = trainer.fit()
        return rep, trainer
    finally:
        cleanup(info)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train FusionSAM (stages lstg, seg, or both).")
    p.add_argument("--config", required=True, help="training/configs/NAME.yaml")
    p.add_argument("--resume", default=None, help="last.pt of an interrupted run")
    p.add_argument(
        "overrides", nargs="*", help="section.key=value, e.g. train.epochs=2 model.input_size=256"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import os

    setup_console_logging(int(os.environ.get("RANK", "0")))
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rep, trainer = train(cfg, resume=args.resume)
    if trainer.info.is_main:
        print_report(rep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
