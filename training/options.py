"""Typed run options: the validated, cast form of a training config's nested dict.

Why: the trainer used to read ``cfg[section][key]`` and cast at every use (~40 lookups,
~60 casts), so a bad value failed mid-run, far from the config. ``RunOptions.from_dict``
casts every key once, when ``run_config.load_config`` validates the file, and the
trainer reads typed attributes. The dict stays the serialised form (config.json, the
resume state); ``run_config`` keeps defaults, YAML loading and overrides.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A training config that cannot run; the message names the key."""


# keys of the ``model`` section that are run settings, not ModelConfig fields
MODEL_RUN_KEYS = ("preset", "class_table", "sam_checkpoint", "init_lstg_from", "init_from")


@dataclass(frozen=True)
class ModelOptions:
    preset: str
    class_table: str
    sam_checkpoint: str | None
    init_lstg_from: str | None
    init_from: str | None
    overrides: dict  # the remaining keys: ModelConfig fields (build_config validates them)


@dataclass(frozen=True)
class DataOptions:
    root: str
    layout: str
    train_split: str
    val_split: str
    augment: bool
    num_workers: int
    val_limit: int | None
    val_fraction_of_train: float | None
    generate: dict | None
    unlabelled: dict | None
    boxed: dict | None
    pseudo: dict | None


@dataclass(frozen=True)
class TrainOptions:
    stage: str
    batch_size: int
    precision: str
    grad_clip: float | None
    seed: int
    device: str
    out_dir: str
    select_split: str
    val_every: int
    log_every: int
    image_every: int
    max_steps_per_epoch: int | None
    progress: bool
    tensorboard: bool
    keep_epoch_checkpoints: bool


@dataclass(frozen=True)
class StageOptions:
    """One stage's optimiser and length (sections ``lstg`` and ``seg``)."""

    epochs: int
    lr: float
    weight_decay: float
    scheduler: str
    freeze_lstg: bool = True  # seg only


@dataclass(frozen=True)
class LossOptions:
    l1: float
    codebook: float
    perceptual: float
    perceptual_weights: str | None
    adversarial: float
    disc_start: int
    disc_lr: float
    ce: float
    ce_class_weight_power: float
    dice: float
    presence: float
    fusion_intensity: float
    fusion_gradient: float
    fusion_ssim: float
    fusion_mask: float
    box_mil: float
    box_negative: float
    box_mil_balanced: bool
    box_pairwise: float


@dataclass(frozen=True)
class RunOptions:
    model: ModelOptions
    data: DataOptions
    train: TrainOptions
    lstg: StageOptions
    seg: StageOptions
    loss: LossOptions

    @property
    def stages(self) -> list[str]:
        """The stages this run goes through, in order."""
        return ["lstg", "seg"] if self.train.stage == "both" else [self.train.stage]

    def stage(self, name: str) -> StageOptions:
        return self.lstg if name == "lstg" else self.seg

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> RunOptions:
        """Cast a merged config (every default present) into typed options; ConfigError names a bad key."""
        model = dict(cfg["model"])
        run = {k: model.pop(k, None) for k in MODEL_RUN_KEYS}
        return cls(
            model=ModelOptions(**_cast_all(ModelOptions, run, "model", skip=("overrides",)),
                               overrides=model),
            data=DataOptions(**_cast_all(DataOptions, cfg["data"], "data")),
            train=TrainOptions(**_cast_all(TrainOptions, cfg["train"], "train")),
            lstg=StageOptions(**_cast_all(StageOptions, cfg["lstg"], "lstg")),
            seg=StageOptions(**_cast_all(StageOptions, cfg["seg"], "seg")),
            loss=LossOptions(**_cast_all(LossOptions, cfg["loss"], "loss")),
        )  # fmt: skip


def _cast_all(cls: type, values: dict[str, Any], section: str, skip: tuple = ()) -> dict:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        if f.name not in skip and f.name in values:  # absent: the field's default (freeze_lstg)
            out[f.name] = _cast(values[f.name], hints[f.name], f"{section}.{f.name}")
    return out


def _cast(value: Any, hint: Any, key: str) -> Any:
    """``value`` as ``hint`` (int, float, str, bool, dict, or one of those | None)."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{key} must be set, got null")
    target = next(a for a in args if a is not type(None))
    if target is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    try:
        return target(value)
    except (TypeError, ValueError):
        kind = {int: "an integer", float: "a number"}.get(target, f"a {target.__name__}")
        raise ConfigError(f"{key} must be {kind}, got {value!r}") from None
