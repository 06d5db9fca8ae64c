"""Optimisation of a stage: Adam with a warm-up + cosine schedule, gradient clipping, autocast.

Kept apart from the stage steps (``training.stages``) so the recipe the paper's
training follows (Adam, cosine decay) is read and changed in one place.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import torch
from torch import nn


def make_optimizer(
    params: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float,
    scheduler: str,
    total_steps: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam over the trainable ``params`` and a per-step LR schedule: ``cosine`` (linear
    warm-up over 5 % of the steps, at most 100, then cosine to 0) or constant."""
    opt = torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)
    if scheduler == "cosine":
        warmup = min(100, max(1, total_steps // 20))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            t = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)


def clip_gradients(params: Iterable[nn.Parameter], max_norm: float | None) -> None:
    """Clip the total gradient norm to ``max_norm`` (None or 0: no clipping)."""
    if max_norm:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA for ``bf16`` / ``fp16``; nothing for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def step_with_scaler(
    scaler: torch.amp.GradScaler,
    loss: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    params: Iterable[nn.Parameter],
    max_norm: float | None,
) -> None:
    """backward, unscale, clip, step, scaler and schedule update: one optimiser step."""
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    clip_gradients(params, max_norm)
    scaler.step(opt)
    scaler.update()
    sched.step()
