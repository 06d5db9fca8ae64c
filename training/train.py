"""Train FusionSAM: ``python -m training.train --config training/configs/NAME.yaml [k=v ...]``.

Stage ``lstg`` pre-trains the per-modality VQ autoencoders (L1 + codebook/commitment +
perceptual + hinge PatchGAN with delayed start and adaptive weight); stage ``seg``
trains FMP, heads, prompt encoder and mask decoder (and the image encoder unless
frozen) on CE + Dice + presence BCE + fusion intensity/gradient + fusion-mask BCE;
``both`` runs them in sequence. The same script runs under ``torchrun`` (DDP).

Every epoch writes ``last.pt`` (a project checkpoint whose metadata carries the full
resume state) and, after validation on the val split, ``best.pt`` when val mIoU
improves; ``Segmenter.from_checkpoint`` loads either directly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from fusionsam_model.data.classes import ClassTable, get_class_table
from fusionsam_model.modeling.config import build_config
from fusionsam_model.modeling.discriminator import (
    PatchDiscriminator,
    adaptive_adversarial_weight,
    hinge_d_loss,
    hinge_g_loss,
)
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.runtime.checkpoint import CheckpointError, load_sam_weights, save_checkpoint
from training import losses as L
from training.checkpointing import capture_rng, restore_rng, seed_everything
from training.data import HeldOut, PairTransform, TrainingPairs, make_loader
from training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
)
from training.logging_utils import RunLogger, setup_console_logging
from training.run_config import ConfigError, load_config, model_overrides

log = logging.getLogger("training.train")


# --------------------------------------------------------------------------- state
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
        return {
            "stage": self.stage,
            "epoch": self.epoch,
            "step": self.step,
            "best_miou": self.best_miou,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "stage_seconds": self.stage_seconds,
        }


def _stages(stage: str) -> list[str]:
    return ["lstg", "seg"] if stage == "both" else [stage]


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, DDP) else m


class LSTGPair(nn.Module):
    """The model's LSTG autoencoders as one module, so stage 1 wraps them in a single DDP."""

    def __init__(self, model: FusionSAM) -> None:
        super().__init__()
        self.stems = nn.ModuleDict(
            {
                k: m
                for k, m in (("rgb", model.lstg_rgb), ("thermal", model.lstg_thermal))
                if m is not None
            }
        )

    def forward(self, rgb: torch.Tensor, thermal: torch.Tensor) -> dict[str, tuple]:
        inputs = {"rgb": rgb, "thermal": thermal}
        return {k: stem(inputs[k]) for k, stem in self.stems.items()}


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Owns model, data, optimizers and checkpoints of one run (one process of a DDP job)."""

    def __init__(self, cfg: dict[str, Any], info: DistInfo) -> None:
        self.cfg = cfg
        self.info = info
        self.out_dir = Path(cfg["train"]["out_dir"])
        self.class_table: ClassTable = get_class_table(cfg["model"]["class_table"])
        overrides = model_overrides(cfg)
        overrides.setdefault("num_classes", self.class_table.num_classes)
        self.model_config = build_config(cfg["model"]["preset"], **overrides)
        if self.model_config.num_classes != self.class_table.num_classes:
            raise ConfigError(
                f"model.num_classes={self.model_config.num_classes} but class table "
                f"{self.class_table.name!r} has {self.class_table.num_classes} classes"
            )
        seed_everything(int(cfg["train"]["seed"]))
        self.model = FusionSAM(self.model_config).to(info.device)
        sam_ckpt = cfg["model"]["sam_checkpoint"]
        if sam_ckpt:
            report = load_sam_weights(self.model, sam_ckpt)
            log.info("%s", str(report).splitlines()[0])
        if cfg["model"]["init_from"]:
            self._init_model(Path(cfg["model"]["init_from"]))
        if cfg["model"]["init_lstg_from"]:
            self._init_lstg(Path(cfg["model"]["init_lstg_from"]))
        self.discriminators = nn.ModuleDict(
            {
                k: PatchDiscriminator(3 if k == "rgb" else 1)
                for k, m in (("rgb", self.model.lstg_rgb), ("thermal", self.model.lstg_thermal))
                if m is not None and self.model_config.lstg
            }
        ).to(info.device)
        self.perceptual = L.build_perceptual_loss(cfg["loss"]["perceptual_weights"]).to(info.device)
        self.precision = cfg["train"]["precision"]
        if info.device.type != "cuda" and self.precision != "fp32":
            log.info(
                "train.precision=%s applies on CUDA only; running fp32 on %s",
                self.precision,
                info.device,
            )
            self.precision = "fp32"
        self.state = RunState(stage=_stages(cfg["train"]["stage"])[0])
        self.logger = RunLogger(
            self.out_dir / "tensorboard", info.is_main and cfg["train"]["tensorboard"]
        )
        self._prepare_data()
        self.step_losses: list[dict[str, float]] = []  # every optimizer step (tests, report)

    # ---- data -------------------------------------------------------------------
    def _prepare_data(self) -> None:
        from fusionsam_model.data.datasets import open_dataset

        data = self.cfg["data"]
        root = Path(data["root"])
        if data["generate"] and not root.exists():
            if self.info.is_main:
                from fusionsam_model.data import synth

                gen = dict(data["generate"])
                log.info("generating synthetic dataset at %s (%s)", root, gen)
                synth.generate(
                    root,
                    int(gen.get("num", 600)),
                    int(gen.get("seed", 0)),
                    gen.get("layout", "mfnet"),
                    progress=bool(self.cfg["train"]["progress"]),
                )
            barrier(self.info)
        train_ds = open_dataset(root, data["train_split"], layout=data["layout"])
        if data["val_fraction_of_train"]:
            frac = float(data["val_fraction_of_train"])
            train_ds, self.val_ds = HeldOut(train_ds, frac, False), HeldOut(train_ds, frac, True)
        else:
            self.val_ds = open_dataset(root, data["val_split"], layout=data["layout"])
        if train_ds.class_table.name != self.class_table.name:
            raise ConfigError(
                f"model.class_table={self.class_table.name!r} but {root} holds a "
                f"{train_ds.class_table.name!r} dataset"
            )
        cfg = self.model_config
        transform = PairTransform(
            cfg.input_size,
            self.class_table,
            cfg.thermal_range,
            cfg.thermal_percentiles,
            bool(data["augment"]),
        )
        self.ce_weights = self._ce_class_weights(train_ds)
        self.train_pairs = TrainingPairs(train_ds, transform, seed=int(self.cfg["train"]["seed"]))
        self.unlabelled_pairs: TrainingPairs | None = None
        if data["unlabelled"]:
            from fusionsam_model.data.unlabelled import UnlabelledPairs

            spec = dict(data["unlabelled"])
            real = UnlabelledPairs(
                spec["root"], spec.get("visible", "visible"), spec.get("infrared", "infrared")
            )
            self.unlabelled_pairs = TrainingPairs(
                real, transform, seed=int(self.cfg["train"]["seed"])
            )
            log.info(
                "unlabelled pairs for the label-free losses: %d from %s, %d per step",
                len(real),
                spec["root"],
                int(spec.get("batch_size", 4)),
            )
        self.train_loader, self.train_sampler = make_loader(
            self.train_pairs,
            int(self.cfg["train"]["batch_size"]),
            shuffle=True,
            num_workers=int(data["num_workers"]),
            seed=int(self.cfg["train"]["seed"]),
            rank=self.info.rank,
            world_size=self.info.world_size,
        )
        plain = PairTransform(
            cfg.input_size, self.class_table, cfg.thermal_range, cfg.thermal_percentiles, False
        )
        n_show = min(2, len(self.val_ds))
        items = [plain(self.val_ds[i], None) for i in range(n_show)]
        self.preview = (
            {k: torch.stack([it[k] for it in items]) for k in items[0]} if items else None
        )
        if len(self.train_loader) == 0:
            raise ConfigError(
                f"train split of {root} has {len(train_ds)} pairs: too few for batch_size "
                f"{self.cfg['train']['batch_size']} x {self.info.world_size} processes"
            )

    def _ce_class_weights(self, train_ds) -> torch.Tensor | None:
        """CE class weights from the TRAIN split's label pixel counts (never val or test)."""
        power = float(self.cfg["loss"]["ce_class_weight_power"])
        if power == 0.0:
            return None
        table = self.class_table
        counts = torch.zeros(table.num_classes, dtype=torch.float64)
        for i in range(len(train_ds)):
            label = torch.from_numpy(train_ds[i].label.astype("int64")).flatten()
            label = label[label < table.num_classes]
            if table.ignore_index is not None:
                label = label[label != table.ignore_index]
            counts += torch.bincount(label, minlength=table.num_classes).double()
        weights = L.class_weights(counts, power)
        log.info(
            "CE class weights (1/freq^%.2f, train split, %d pairs): %s",
            power,
            len(train_ds),
            ", ".join(f"{n} {w:.2f}" for n, w in zip(table.names, weights.tolist(), strict=True)),
        )
        return weights.to(self.info.device)

    def _init_model(self, path: Path) -> None:
        """All weights from a project checkpoint (same preset and switches): fine-tuning."""
        from fusionsam_model.runtime.checkpoint import load_checkpoint

        if not path.is_file():
            raise CheckpointError(f"model.init_from: no checkpoint at {path}")
        source, _, _ = load_checkpoint(path, map_location="cpu")
        state = {
            k: v.float() if v.is_floating_point() else v for k, v in source.state_dict().items()
        }
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"model.init_from: {path} does not match this run's model config: {exc}"
            ) from None
        log.info("model initialised from %s", path)

    def _unlabelled_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch`` plus data.unlabelled pairs drawn by (seed, stage, step): resume-exact."""
        if self.unlabelled_pairs is None:
            return batch
        n = int(self.cfg["data"]["unlabelled"].get("batch_size", 4))
        stage = 1 if self.state.stage == "seg" else 0
        seed = (int(self.cfg["train"]["seed"]) * 1_000_003 + self.state.step) * 2 + stage
        rng = torch.Generator().manual_seed(seed)
        picks = torch.randint(len(self.unlabelled_pairs), (n,), generator=rng).tolist()
        self.unlabelled_pairs.set_epoch(self.state.step)
        items = [self.unlabelled_pairs[i] for i in picks]
        extra = {k: torch.stack([it[k] for it in items]).to(self.info.device) for k in batch}
        extra["label"].fill_(L.IGNORE)  # augmentation pads labels with a class id; never score them
        return {k: torch.cat([batch[k], extra[k]]) for k in batch}

    def _init_lstg(self, path: Path) -> None:
        """Copy the LSTG autoencoders (lstg_rgb.*, lstg_thermal.*) from a project checkpoint;
        a SAM baseline on the fused image (Table 4) also takes the FMP (its front stays frozen)."""
        if not path.is_file():
            raise CheckpointError(f"model.init_lstg_from: no checkpoint at {path}")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state = payload.get("state_dict", {}) if isinstance(payload, dict) else {}
        own = self.model.state_dict()
        prefixes = ("lstg_rgb.", "lstg_thermal.") + (("fmp.",) if self._frozen_front else ())
        keys = [k for k in own if k.startswith(prefixes)]
        missing = [k for k in keys if k not in state or state[k].shape != own[k].shape]
        if not keys or missing:
            raise CheckpointError(
                f"model.init_lstg_from: {path} lacks matching LSTG weights for this model "
                f"(e.g. {missing[:3]}); it must come from a run with the same preset and LSTG"
            )
        self.model.load_state_dict({k: state[k] for k in keys}, strict=False)
        log.info("LSTG autoencoders (%d tensors) initialised from %s", len(keys), path)

    @property
    def _frozen_front(self) -> bool:
        """SAM baseline on a trained FusionSAM's fused image: LSTG + FMP are not trained."""
        return self.model_config.sam_baseline and self.model_config.baseline_input == "fused"

    def steps_per_epoch(self) -> int:
        cap = self.cfg["train"]["max_steps_per_epoch"]
        n = len(self.train_loader)
        return min(n, int(cap)) if cap else n

    # ---- optimisation -------------------------------------------------------------
    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def _make_optim(self, params, section: dict[str, Any], total_steps: int):
        params = [p for p in params if p.requires_grad]
        opt = torch.optim.Adam(
            params, lr=float(section["lr"]), weight_decay=float(section["weight_decay"])
        )
        if section.get("scheduler", "cosine") == "cosine":
            warmup = min(100, max(1, total_steps // 20))

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                t = (step - warmup) / max(1, total_steps - warmup)
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
        return opt, sched

    def _wrap(self, module: nn.Module) -> nn.Module:
        if not self.info.distributed:
            return module
        ids = [self.info.device.index] if self.info.device.type == "cuda" else None
        return DDP(module, device_ids=ids, find_unused_parameters=True)

    def _clip(self, params) -> None:
        clip = self.cfg["train"]["grad_clip"]
        if clip:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], float(clip))

    # ---- stage set-up -------------------------------------------------------------
    def setup_stage(self, stage: str) -> None:
        """Freeze what the stage does not train, build its optimizers, DDP wrappers, scaler."""
        section = self.cfg[stage]
        total = max(1, int(section["epochs"]) * self.steps_per_epoch())
        self.model.requires_grad_(False)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        if stage == "lstg":
            self.lstg = LSTGPair(self.model)
            self.lstg.requires_grad_(True)
            self.gen = self._wrap(self.lstg)
            opt, sched = self._make_optim(self.lstg.parameters(), section, total)
            self.optimizers["gen"], self.schedulers["gen"] = opt, sched
            # Not DDP-wrapped: its gradients are averaged by hand (_average_grads), because
            # the generator step also runs it (frozen) and DDP wants one backward per forward.
            self.disc = self.discriminators if len(self.discriminators) else None
            dsec = {"lr": self.cfg["loss"]["disc_lr"], "weight_decay": 0.0, "scheduler": "constant"}
            dopt, dsched = self._make_optim(self.discriminators.parameters(), dsec, total)
            self.optimizers["disc"], self.schedulers["disc"] = dopt, dsched
        else:
            m = self.model
            for name, part in m.parts().items():
                trainable = True
                if (
                    name.startswith("lstg_")
                    and self.model_config.lstg
                    and self.cfg["seg"]["freeze_lstg"]
                ):
                    trainable = False  # pretrained in stage 1; the latent tokens stay fixed
                if name == "image_encoder" and self.model_config.freeze_image_encoder:
                    trainable = False
                if name in ("lstg_rgb", "lstg_thermal", "fmp") and self._frozen_front:
                    trainable = False
                part.requires_grad_(trainable)
            self.net = self._wrap(m)
            opt, sched = self._make_optim(m.parameters(), section, total)
            self.optimizers["seg"], self.schedulers["seg"] = opt, sched
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info(
            "stage %s: %d epochs x %d steps, %.2fM trainable model parameters, precision %s, %d process(es)",
            stage,
            int(section["epochs"]),
            self.steps_per_epoch(),
            n_train / 1e6,
            self.precision,
            self.info.world_size,
        )

    @property
    def lstg_trains_in_seg(self) -> bool:
        """The VQ autoencoders are fine-tuned in stage seg (``seg.freeze_lstg: false``)."""
        return self.model_config.lstg and not self.cfg["seg"]["freeze_lstg"]

    def _set_modes(self, stage: str) -> None:
        self.model.train()
        if stage == "seg":
            frozen_lstg = self.model_config.lstg and self.cfg["seg"]["freeze_lstg"]
            for m in (self.model.lstg_rgb, self.model.lstg_thermal):
                if m is not None and frozen_lstg:
                    m.eval()  # frozen codebooks: no EMA updates, no dead-code restarts
            if self.model_config.freeze_image_encoder:
                self.model.image_encoder.eval()
            if self._frozen_front:
                for m in (self.model.lstg_rgb, self.model.lstg_thermal, self.model.fmp):
                    if m is not None:
                        m.eval()
        else:
            self.discriminators.train()

    # ---- one step -----------------------------------------------------------------
    def lstg_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lw = self.cfg["loss"]
        batch = self._unlabelled_batch(batch)  # reconstruction needs no labels
        rgb, th = batch["rgb"], batch["thermal"]
        targets = {"rgb": rgb, "thermal": th}
        disc_on = (
            self.state.step >= int(lw["disc_start"])
            and self.disc is not None
            and lw["adversarial"] > 0
        )
        opt = self.optimizers["gen"]
        opt.zero_grad(set_to_none=True)
        self.discriminators.requires_grad_(False)
        with self._autocast():
            outs = self.gen(rgb, th)
        total = rgb.new_zeros((), dtype=torch.float32)
        stats: dict[str, float] = {}
        recons = {}
        for k, (recon, q) in outs.items():
            x = targets[k]
            recon = recon.float()
            recons[k] = recon
            l1 = (recon - x).abs().mean()
            perc = self.perceptual(recon, x)
            nll = lw["l1"] * l1 + lw["perceptual"] * perc
            loss_k = nll + lw["codebook"] * q.loss.float()
            if disc_on:
                g_loss = hinge_g_loss(self.discriminators[k](recon))
                stem = self.lstg.stems[k]
                w = adaptive_adversarial_weight(nll, g_loss, stem.last_decoder_layer)
                loss_k = loss_k + lw["adversarial"] * w * g_loss
                stats[f"g_{k}"] = float(g_loss.detach())
                stats[f"adv_weight_{k}"] = float(w)
            total = total + loss_k
            stats.update(
                {
                    f"l1_{k}": float(l1.detach()),
                    f"perceptual_{k}": float(perc.detach()),
                    f"vq_{k}": float(q.loss.detach()),
                }
            )
            stats[f"perplexity_{k}"] = float(q.perplexity)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(opt)
        self._clip(self.lstg.parameters())
        self.scaler.step(opt)
        self.scaler.update()
        self.schedulers["gen"].step()
        stats["loss"] = float(total.detach())
        if disc_on:
            self.discriminators.requires_grad_(True)
            dopt = self.optimizers["disc"]
            dopt.zero_grad(set_to_none=True)
            d_total = rgb.new_zeros((), dtype=torch.float32)
            for k in outs:
                both = torch.cat([targets[k], recons[k].detach()])
                logits = self.disc[k](both)
                real, fake = logits.split(targets[k].shape[0])
                d_total = d_total + hinge_d_loss(real.float(), fake.float())
            d_total.backward()
            if self.info.distributed:
                _average_grads(self.discriminators, self.info)
            dopt.step()
            self.schedulers["disc"].step()
            stats["d_loss"] = float(d_total.detach())
        return stats

    def seg_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        lw = self.cfg["loss"]
        opt = self.optimizers["seg"]
        opt.zero_grad(set_to_none=True)
        n = batch["label"].shape[0]  # labelled pairs; unlabelled ones follow for the fusion loss
        batch = self._unlabelled_batch(batch)
        with self._autocast():
            out = self.net(batch["rgb"], batch["thermal"], reconstruct=False)
        labels = batch["label"][:n]
        ce, dice = L.segmentation_losses(
            out.class_logits[:n], labels, self.model_config.num_classes, self.ce_weights
        )
        pres = L.presence_loss(out.presence[:n], labels)
        inten, grad = L.fusion_losses(out.fused, batch["rgb"], batch["thermal"], batch["valid"])
        fmask = L.fusion_mask_loss(out.mask_logits[:n], labels)
        total = (
            lw["ce"] * ce
            + lw["dice"] * dice
            + lw["presence"] * pres
            + lw["fusion_intensity"] * inten
            + lw["fusion_gradient"] * grad
            + lw["fusion_mask"] * fmask
        )
        if self.lstg_trains_in_seg:  # VQ commitment keeps the fine-tuned encoders on their codes
            total = total + lw["codebook"] * out.vq_loss.float()
        self.scaler.scale(total).backward()
        self.scaler.unscale_(opt)
        self._clip(self.model.parameters())
        self.scaler.step(opt)
        self.scaler.update()
        self.schedulers["seg"].step()
        stats = {
            "loss": float(total.detach()),
            "ce": float(ce.detach()),
            "dice": float(dice.detach()),
            "presence": float(pres.detach()),
            "fusion_intensity": float(inten.detach()),
            "fusion_gradient": float(grad.detach()),
            "fusion_mask": float(fmask.detach()),
            "vq": float(out.vq_loss.detach()),
        }
        for k, v in out.perplexity.items():
            stats[f"perplexity_{k}"] = float(v)
        return stats

    # ---- epochs -------------------------------------------------------------------
    def run_epoch(self, stage: str, epoch: int) -> dict[str, float]:
        self._set_modes(stage)
        self.train_sampler.set_epoch(epoch)
        self.train_pairs.set_epoch(epoch)
        n_steps = self.steps_per_epoch()
        bar = None
        if self.info.is_main and self.cfg["train"]["progress"]:
            from tqdm import tqdm

            total_epochs = int(self.cfg[stage]["epochs"])
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
        for i, batch in enumerate(self.train_loader):
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
            if self.state.step % int(self.cfg["train"]["log_every"]) == 0:
                lr = self.optimizers["gen" if stage == "lstg" else "seg"].param_groups[0]["lr"]
                self.logger.scalars({**stats, "lr": lr}, self.state.step, prefix=f"{stage}/train/")
            if bar is not None:
                rate = images / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", img_s=f"{rate:.1f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        means = {k: v / max(1, min(n_steps, len(self.train_loader))) for k, v in sums.items()}
        means = all_reduce_mean(self.info, means)
        means["images_per_s"] = images / max(seconds, 1e-9)
        means["seconds"] = seconds
        return means

    def validate(self) -> dict[str, Any]:
        """val-split mIoU through the inference path (Segmenter over the live model), rank 0."""
        result = None
        if self.info.is_main:
            from fusionsam_model.runtime.backends import make_backend
            from fusionsam_model.runtime.segmenter import Segmenter
            from training.evaluate import evaluate

            cfg = self.model_config
            backend = make_backend("torch", self.model, device=self.info.device, precision="fp32")
            segmenter = Segmenter(
                backend, self.class_table, cfg.thermal_range, cfg.thermal_percentiles
            )
            with torch.no_grad():
                r = evaluate(segmenter, self.val_ds, limit=self.cfg["data"]["val_limit"])
            result = {"miou": r["overall"]["miou"], "iou": r["overall"]["iou"]}
            for cond in ("day", "night"):
                if cond in r:
                    result[f"miou_{cond}"] = r[cond]["miou"]
        return broadcast_object(self.info, result)

    def _preview_images(self, stage: str, epoch: int) -> None:
        if not self.info.is_main or self.preview is None or self.logger.writer is None:
            return
        every = int(self.cfg["train"]["image_every"])
        if every <= 0 or (epoch + 1) % every:
            return
        batch = {k: v.to(self.info.device) for k, v in self.preview.items()}
        self.model.eval()
        with torch.no_grad():
            out = self.model(batch["rgb"], batch["thermal"], reconstruct=stage == "lstg")
        out_d = {
            "fused": out.fused,
            "mask_logits": out.mask_logits,
            "class_logits": out.class_logits,
        }
        self.logger.image_panel(f"{stage}/val_preview", batch, out_d, self.class_table, epoch)
        if stage == "lstg":
            for k, rec in (("rgb", out.recon_rgb), ("thermal", out.recon_thermal)):
                if rec is not None:
                    src = batch[k].float().cpu()
                    self.logger.writer.add_images(
                        f"lstg/reconstruction_{k}",
                        torch.cat([src, rec.float().cpu()], dim=3),
                        epoch,
                    )

    # ---- checkpoints ----------------------------------------------------------------
    def _train_state(self) -> dict[str, Any]:
        return {
            **self.state.to_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "discriminators": self.discriminators.state_dict(),
            "rng": capture_rng(),
            "sampler_epoch": int(self.train_sampler.epoch),
            "config": self.cfg,
        }

    def save(self, name: str, with_state: bool, extra: dict[str, Any] | None = None) -> Path:
        meta = {
            "stage": self.state.stage,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "select_split": self.cfg["train"]["select_split"],
            **(extra or {}),
        }
        if with_state:
            meta["train_state"] = self._train_state()
        return save_checkpoint(self.out_dir / name, self.model, self.class_table, meta)

    def resume(self, path: str | Path) -> None:
        """Restore everything ``save(..., with_state=True)`` stored (weights_only load)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {path}")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        st = payload.get("metadata", {}).get("train_state") if isinstance(payload, dict) else None
        if st is None:
            raise CheckpointError(
                f"--resume: {path} has no training state (best.pt and bundled models hold weights "
                "only); resume from the run's last.pt"
            )
        self.model.load_state_dict(payload["state_dict"])
        self.discriminators.load_state_dict(st["discriminators"])
        self.state = RunState(
            stage=st["stage"],
            epoch=int(st["epoch"]),
            step=int(st["step"]),
            best_miou=float(st["best_miou"]),
            best_epoch=int(st["best_epoch"]),
            history=list(st["history"]),
            stage_seconds=dict(st["stage_seconds"]),
        )
        self._resume_state = st
        log.info(
            "resuming %s: stage %s after epoch %d (step %d)",
            path,
            self.state.stage,
            self.state.epoch,
            self.state.step,
        )

    def _load_stage_state(self) -> None:
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
        stages = _stages(self.cfg["train"]["stage"])
        if self.state.stage not in stages:
            raise ConfigError(
                f"--resume: checkpoint is in stage {self.state.stage!r}, run has {stages}"
            )
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(self.cfg, indent=2))
        for stage in stages[stages.index(self.state.stage) :]:
            if stage == "lstg" and not len(self.discriminators) and not self.model_config.lstg:
                log.info("stage lstg skipped: model.lstg=false has no VQ autoencoders to pre-train")
                continue
            if stage != self.state.stage:
                self.state.stage, self.state.epoch, self.state.step = stage, 0, 0
            self.setup_stage(stage)
            self._load_stage_state()
            epochs = int(self.cfg[stage]["epochs"])
            t_stage = time.perf_counter() - self.state.stage_seconds.get(stage, 0.0)
            while self.state.epoch < epochs:
                epoch = self.state.epoch
                means = self.run_epoch(stage, epoch)
                entry: dict[str, Any] = {"stage": stage, "epoch": epoch + 1, **means}
                self.state.epoch += 1
                val_every = int(self.cfg["train"]["val_every"])
                is_last = self.state.epoch == epochs
                if stage == "seg" and (self.state.epoch % val_every == 0 or is_last):
                    val = self.validate()
                    entry["val_miou"] = val["miou"]
                    for cond in ("day", "night"):
                        if f"miou_{cond}" in val:
                            entry[f"val_miou_{cond}"] = val[f"miou_{cond}"]
                    self.logger.scalars(
                        {k[4:]: v for k, v in entry.items() if k.startswith("val_")},
                        self.state.step,
                        prefix="seg/val/",
                    )
                    if val["miou"] is not None and val["miou"] > self.state.best_miou:
                        self.state.best_miou, self.state.best_epoch = val["miou"], self.state.epoch
                        if self.info.is_main:
                            self.save(
                                "best.pt",
                                with_state=False,
                                extra={
                                    "val_miou": val["miou"],
                                    "val_iou": val["iou"],
                                    "val_split": self.cfg["data"]["val_split"],
                                },
                            )
                self.logger.scalars(
                    {k: v for k, v in means.items()}, self.state.step, prefix=f"{stage}/epoch/"
                )
                self._preview_images(stage, epoch)
                self.state.history.append(entry)
                self.state.stage_seconds[stage] = time.perf_counter() - t_stage
                if self.info.is_main:
                    last = self.save("last.pt", with_state=True)
                    if self.cfg["train"]["keep_epoch_checkpoints"]:
                        shutil.copyfile(
                            last, self.out_dir / f"{stage}_epoch{self.state.epoch:03d}.pt"
                        )
                    log.info("%s", _epoch_line(entry))
                self.logger.flush()
                barrier(self.info)
        return self.report()

    def report(self) -> dict[str, Any]:
        rep = {
            "out_dir": str(self.out_dir),
            "stages": _stages(self.cfg["train"]["stage"]),
            "best_val_miou": self.state.best_miou if self.state.best_epoch >= 0 else None,
            "best_epoch": self.state.best_epoch if self.state.best_epoch >= 0 else None,
            "select_split": self.cfg["train"]["select_split"],
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


def _average_grads(module: nn.Module, info: DistInfo) -> None:
    """All-reduce mean of gradients (the discriminator step runs outside DDP's hooks)."""
    import torch.distributed as dist

    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= info.world_size


def _epoch_line(entry: dict[str, Any]) -> str:
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


def train(cfg: dict[str, Any], resume: str | None = None) -> tuple[dict[str, Any], Trainer]:
    """Run a whole training (library entry point used by the CLI and the tests)."""
    info = init_distributed(cfg["train"]["device"])
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
