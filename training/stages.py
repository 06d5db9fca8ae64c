"""The two training stages: what each trains and freezes, and one optimiser step of each.

Stage ``lstg`` pre-trains the per-modality VQ autoencoders (L1 + codebook/commitment +
perceptual + hinge PatchGAN with delayed start and adaptive weight); stage ``seg``
trains FMP, heads, prompt encoder and mask decoder (and the image encoder unless
frozen) on CE + Dice + presence BCE + fusion intensity/gradient + fusion-mask BCE.
The functions take a ``StageHost``: what they need of the run (model, options, data, run
state; ``setup_stage`` sets its optimisers, wrappers and scaler). ``training.train.Trainer``
is one; the epoch loop, validation and checkpoints stay there. This module does not import
``training.train`` (only train imports stages: no import cycle).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from fusionsam_model.modeling.config import ModelConfig
from fusionsam_model.modeling.discriminator import (
    adaptive_adversarial_weight,
    hinge_d_loss,
    hinge_g_loss,
)
from fusionsam_model.modeling.model import FusionSAM
from training import losses as L
from training.box_losses import box_losses, pairwise_affinity_loss
from training.distributed import DistInfo
from training.optim import autocast, make_optimizer, step_with_scaler
from training.options import RunOptions
from training.run_data import RunData
from training.run_state import RunState

log = logging.getLogger("training.train")


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


class StageHost(Protocol):
    """What the stage functions read and set on the run (``training.train.Trainer``)."""

    opts: RunOptions
    info: DistInfo
    model: FusionSAM
    model_config: ModelConfig
    data: RunData
    state: RunState
    discriminators: nn.ModuleDict
    perceptual: nn.Module
    precision: str
    # set by setup_stage
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    scaler: torch.amp.GradScaler
    lstg: LSTGPair  # stage lstg: the autoencoders (gen: their DDP wrapper, disc: the PatchGANs)
    gen: nn.Module
    disc: nn.ModuleDict | None
    net: nn.Module  # stage seg: the model's DDP wrapper

    @property
    def frozen_front(self) -> bool: ...

    @property
    def lstg_trains_in_seg(self) -> bool: ...

    def steps_per_epoch(self) -> int: ...


def wrap_ddp(module: nn.Module, info: DistInfo) -> nn.Module:
    """DDP around ``module`` in a distributed run; the module itself otherwise."""
    if not info.distributed:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=True)


def average_grads(module: nn.Module, info: DistInfo) -> None:
    """All-reduce mean of gradients (the discriminator step runs outside DDP's hooks)."""
    import torch.distributed as dist

    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= info.world_size


def setup_stage(tr: StageHost, stage: str) -> None:
    """Freeze what the stage does not train, build its optimizers, DDP wrappers, scaler."""
    so = tr.opts.stage(stage)
    total = max(1, so.epochs * tr.steps_per_epoch())
    tr.model.requires_grad_(False)
    tr.optimizers, tr.schedulers = {}, {}
    if stage == "lstg":
        tr.lstg = LSTGPair(tr.model)
        tr.lstg.requires_grad_(True)
        tr.gen = wrap_ddp(tr.lstg, tr.info)
        opt, sched = make_optimizer(
            tr.lstg.parameters(), so.lr, so.weight_decay, so.scheduler, total
        )
        tr.optimizers["gen"], tr.schedulers["gen"] = opt, sched
        # Not DDP-wrapped: its gradients are averaged by hand (average_grads), because
        # the generator step also runs it (frozen) and DDP wants one backward per forward.
        tr.disc = tr.discriminators if len(tr.discriminators) else None
        dopt, dsched = make_optimizer(
            tr.discriminators.parameters(), tr.opts.loss.disc_lr, 0.0, "constant", total
        )
        tr.optimizers["disc"], tr.schedulers["disc"] = dopt, dsched
    else:
        m, mc = tr.model, tr.model_config
        for name, part in m.parts().items():
            trainable = True
            if name.startswith("lstg_") and mc.lstg and tr.opts.seg.freeze_lstg:
                trainable = False  # pretrained in stage 1; the latent tokens stay fixed
            if name == "image_encoder" and mc.freeze_image_encoder:
                trainable = False
            if name in ("lstg_rgb", "lstg_thermal", "fmp") and tr.frozen_front:
                trainable = False
            part.requires_grad_(trainable)
        tr.net = wrap_ddp(m, tr.info)
        opt, sched = make_optimizer(m.parameters(), so.lr, so.weight_decay, so.scheduler, total)
        tr.optimizers["seg"], tr.schedulers["seg"] = opt, sched
    tr.scaler = torch.amp.GradScaler("cuda", enabled=tr.precision == "fp16")
    n_train = sum(p.numel() for p in tr.model.parameters() if p.requires_grad)
    log.info(
        "stage %s: %d epochs x %d steps, %.2fM trainable model parameters, precision %s, %d process(es)",
        stage,
        so.epochs,
        tr.steps_per_epoch(),
        n_train / 1e6,
        tr.precision,
        tr.info.world_size,
    )


def set_modes(tr: StageHost, stage: str) -> None:
    """train() mode, but eval() for the frozen parts (no EMA codebook updates in them)."""
    tr.model.train()
    if stage == "seg":
        frozen_lstg = tr.model_config.lstg and tr.opts.seg.freeze_lstg
        for m in (tr.model.lstg_rgb, tr.model.lstg_thermal):
            if m is not None and frozen_lstg:
                m.eval()  # frozen codebooks: no EMA updates, no dead-code restarts
        if tr.model_config.freeze_image_encoder:
            tr.model.image_encoder.eval()
        if tr.frozen_front:
            for m in (tr.model.lstg_rgb, tr.model.lstg_thermal, tr.model.fmp):
                if m is not None:
                    m.eval()
    else:
        tr.discriminators.train()


def lstg_step(tr: StageHost, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """One generator step (and, once the PatchGAN is on, one discriminator step)."""
    lw = tr.opts.loss
    batch = tr.data.with_unlabelled(batch, tr.state)  # reconstruction needs no labels
    rgb, th = batch["rgb"], batch["thermal"]
    targets = {"rgb": rgb, "thermal": th}
    disc_on = tr.state.step >= lw.disc_start and tr.disc is not None and lw.adversarial > 0
    opt = tr.optimizers["gen"]
    opt.zero_grad(set_to_none=True)
    tr.discriminators.requires_grad_(False)
    with autocast(tr.precision):
        outs = tr.gen(rgb, th)
    total = rgb.new_zeros((), dtype=torch.float32)
    stats: dict[str, float] = {}
    recons = {}
    for k, (recon, q) in outs.items():
        x = targets[k]
        recon = recon.float()
        recons[k] = recon
        l1 = (recon - x).abs().mean()
        perc = tr.perceptual(recon, x)
        nll = lw.l1 * l1 + lw.perceptual * perc
        loss_k = nll + lw.codebook * q.loss.float()
        if disc_on:
            g_loss = hinge_g_loss(tr.discriminators[k](recon))
            stem = tr.lstg.stems[k]
            w = adaptive_adversarial_weight(nll, g_loss, stem.last_decoder_layer)
            loss_k = loss_k + lw.adversarial * w * g_loss
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
    step_with_scaler(
        tr.scaler, total, opt, tr.schedulers["gen"], tr.lstg.parameters(), tr.opts.train.grad_clip
    )
    stats["loss"] = float(total.detach())
    if disc_on:
        tr.discriminators.requires_grad_(True)
        dopt = tr.optimizers["disc"]
        dopt.zero_grad(set_to_none=True)
        d_total = rgb.new_zeros((), dtype=torch.float32)
        for k in outs:
            both = torch.cat([targets[k], recons[k].detach()])
            logits = tr.disc[k](both)
            real, fake = logits.split(targets[k].shape[0])
            d_total = d_total + hinge_d_loss(real.float(), fake.float())
        d_total.backward()
        if tr.info.distributed:
            average_grads(tr.discriminators, tr.info)
        dopt.step()
        tr.schedulers["disc"].step()
        stats["d_loss"] = float(d_total.detach())
    return stats


def seg_step(tr: StageHost, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """One segmentation step: labelled pairs' losses plus the label-free fusion losses."""
    lw = tr.opts.loss
    opt = tr.optimizers["seg"]
    opt.zero_grad(set_to_none=True)
    n = batch["label"].shape[0]  # labelled pairs; unlabelled ones follow for the fusion loss
    batch = tr.data.with_unlabelled(batch, tr.state)
    batch, boxes = tr.data.with_boxed(batch, tr.state)  # box-labelled real frames come last
    with autocast(tr.precision):
        out = tr.net(batch["rgb"], batch["thermal"], reconstruct=False)
    labels = batch["label"][:n]
    ce, dice = L.segmentation_losses(
        out.class_logits[:n], labels, tr.model_config.num_classes, tr.data.ce_weights
    )
    pres = L.presence_loss(out.presence[:n], labels)
    inten, grad, structure = L.fusion_losses(
        out.fused, batch["rgb"], batch["thermal"], batch["valid"]
    )
    fmask = L.fusion_mask_loss(out.mask_logits[:n], labels)
    mil = neg = pair = out.class_logits.new_zeros(())
    if boxes:
        m = len(boxes)
        mil, neg = box_losses(
            out.class_logits[-m:],
            boxes,
            batch["valid"][-m:],
            tr.data.boxed_classes,
            tr.model_config.input_size,
            class_balanced=lw.box_mil_balanced,
        )
        if lw.box_pairwise:
            pair = pairwise_affinity_loss(
                out.class_logits[-m:], batch["rgb"][-m:], batch["thermal"][-m:], batch["valid"][-m:]
            )
    total = (
        lw.ce * ce
        + lw.dice * dice
        + lw.presence * pres
        + lw.fusion_intensity * inten
        + lw.fusion_gradient * grad
        + lw.fusion_ssim * structure
        + lw.fusion_mask * fmask
        + lw.box_mil * mil
        + lw.box_negative * neg
        + lw.box_pairwise * pair
    )
    if tr.lstg_trains_in_seg:  # VQ commitment keeps the fine-tuned encoders on their codes
        total = total + lw.codebook * out.vq_loss.float()
    step_with_scaler(
        tr.scaler, total, opt, tr.schedulers["seg"], tr.model.parameters(), tr.opts.train.grad_clip
    )
    stats: dict[str, Any] = {
        "loss": float(total.detach()),
        "ce": float(ce.detach()),
        "dice": float(dice.detach()),
        "presence": float(pres.detach()),
        "fusion_intensity": float(inten.detach()),
        "fusion_gradient": float(grad.detach()),
        "fusion_ssim": float(structure.detach()),
        "box_mil": float(mil.detach()),
        "box_negative": float(neg.detach()),
        "box_pairwise": float(pair.detach()),
        "fusion_mask": float(fmask.detach()),
        "vq": float(out.vq_loss.detach()),
    }
    for k, v in out.perplexity.items():
        stats[f"perplexity_{k}"] = float(v)
    return stats
