"""Training-run configuration: YAML file + ``section.key=value`` command-line overrides.

One nested dict with sections ``model`` (ModelConfig fields plus ``class_table`` and
``sam_checkpoint``), ``data``, ``train``, ``lstg``, ``seg`` and ``loss``. Defaults
live here so a config file only names what differs; unknown keys are errors so a
typo never silently trains the wrong thing. ``validate`` also casts the dict into the
typed ``training.options.RunOptions`` the trainer reads.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from training.options import MODEL_RUN_KEYS, ConfigError, RunOptions

__all__ = ["DEFAULTS", "ConfigError", "RunOptions", "load_config", "model_overrides", "validate"]

DEFAULTS: dict[str, Any] = {
    "model": {
        "preset": "tiny",
        "class_table": "mfnet",
        "sam_checkpoint": None,  # official SAM .pth for the image encoder (vit_* presets)
        # Project checkpoint whose stage-1 LSTG autoencoders to start from (run stage seg
        # only), so ablations share one stage 1 instead of re-training it.
        "init_lstg_from": None,
        # Project checkpoint to start the whole model from (fine-tuning recipes).
        "init_from": None,
    },
    "data": {
        "root": "data/synth",
        "layout": "auto",
        "train_split": "train",
        "val_split": "val",
        "augment": True,
        "num_workers": 0,
        "val_limit": None,
        # Hold out every k-th train pair (k = 1/fraction) as the val split, for datasets
        # without one (FMB); data.val_split is then ignored.
        "val_fraction_of_train": None,  # score only the first N val pairs (None: all)
        # Generate the synthetic dataset first when root is missing (synth configs only).
        "generate": None,  # e.g. {num: 600, seed: 0, layout: mfnet, warm_surfaces: 0.0}
        # Unlabelled real visible/infrared pairs (fusionsam_model.data.unlabelled) mixed
        # into every step's batch for the label-free losses only (stage-1 reconstruction,
        # fused-image loss), e.g. {root: ../shared/data/roadscene, batch_size: 4}.
        "unlabelled": None,
        # Real frames with box labels (fusionsam_model.data.box_datasets, msrs_dev layout)
        # mixed into every seg step for the box losses (training.box_losses) and the
        # fused-image loss, e.g. {root: ../shared/data/msrs_dev, names: train,
        # batch_size: 2, label_sets: [visible, infrared, fusion], photometric: false}.
        # names "holdout" is refused; photometric: per-camera colour / gain jitter.
        "boxed": None,
        # Pseudo-labelled real frames (training.pseudo_labels: an MFNet-layout folder whose
        # uncertain pixels are void) joined to the train split, e.g. {root: data/pseudo_real}.
        "pseudo": None,
    },
    "train": {
        "stage": "both",  # lstg | seg | both
        "batch_size": 4,
        "precision": "fp32",  # fp32 | bf16 | fp16 (autocast on CUDA only)
        "grad_clip": 1.0,
        "seed": 0,
        "device": "auto",  # auto | cpu | cuda
        "out_dir": "runs/default",
        "select_split": "val",  # split that chooses best.pt; never a test split
        "val_every": 1,  # epochs between validations
        "log_every": 10,  # steps between TensorBoard scalar writes
        "image_every": 1,  # epochs between TensorBoard image panels
        "max_steps_per_epoch": None,  # cap for smoke runs / benchmarks
        "progress": True,  # tqdm bars
        "tensorboard": True,
        "keep_epoch_checkpoints": False,  # also keep a copy of last.pt per epoch
    },
    "lstg": {"epochs": 10, "lr": 2e-4, "weight_decay": 0.0, "scheduler": "cosine"},
    "seg": {
        "epochs": 100,
        "lr": 1e-4,
        "weight_decay": 1e-3,
        "scheduler": "cosine",
        "freeze_lstg": True,  # stage-1 autoencoders stay fixed in stage 2 (paper)
    },
    "loss": {
        # stage 1
        "l1": 1.0,
        "codebook": 1.0,
        "perceptual": 0.5,
        "perceptual_weights": None,  # torchvision vgg16 state dict; None: offline SSIM+gradient
        "adversarial": 0.1,
        "disc_start": 500,  # generator steps before the PatchGAN loss starts
        "disc_lr": 2e-4,
        # stage 2
        "ce": 1.0,
        # CE class weights 1 / frequency**power from the TRAIN split's pixel counts
        # (0: unweighted, 0.5: inverse square root; see training.losses.class_weights)
        "ce_class_weight_power": 0.0,
        "dice": 1.0,
        "presence": 0.2,
        "fusion_intensity": 0.5,
        "fusion_gradient": 0.5,
        "fusion_ssim": 0.5,
        "fusion_mask": 0.5,
        # box supervision of real frames (data.boxed): MIL bags, nothing outside the boxes
        "box_mil": 1.0,
        "box_negative": 1.0,
        "box_mil_balanced": False,  # MIL: mean over classes of each class's mean bag loss
        # BoxInst pairwise term on the box frames: alike neighbours share a class (0: off)
        "box_pairwise": 0.0,
    },
}

STAGES = ("lstg", "seg", "both")
PRECISIONS = ("fp32", "bf16", "fp16")


def _parse_value(text: str) -> Any:
    """Override values use YAML scalars: 2, 1e-4, true, null, [1, 2], mfnet."""
    return yaml.safe_load(text) if text != "" else ""


def apply_override(cfg: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` (e.g. ``train.epochs=2``) in place."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2:
        raise ConfigError(f"override {item!r}: key must be section.key (e.g. train.epochs)")
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            if p in node:
                raise ConfigError(f"override {item!r}: {p} is not a section")
            node[p] = {}
        node = node[p]
    node[parts[-1]] = _parse_value(value)


def _merge(base: dict[str, Any], extra: dict[str, Any], where: str = "") -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v, f"{where}{k}.")
        else:
            base[k] = v


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Defaults <- YAML file <- overrides, then validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections")
        _merge(cfg, loaded)
    for item in overrides:
        apply_override(cfg, item)
    validate(cfg)
    return cfg


def model_overrides(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` section minus the keys that are not ModelConfig fields."""
    return {k: v for k, v in cfg["model"].items() if k not in MODEL_RUN_KEYS}


def is_test_split(name: str | None) -> bool:
    """True for any split that is (part of) a test split: test, test_day, test_night, ..."""
    return name is not None and str(name).lower().startswith("test")


def validate(cfg: dict[str, Any]) -> None:
    """Reject bad sections/keys and, above all, any use of a test split for training or selection."""
    unknown_sections = sorted(set(cfg) - set(DEFAULTS))
    if unknown_sections:
        raise ConfigError(
            f"unknown config section(s) {unknown_sections}; valid: {sorted(DEFAULTS)}"
        )
    for section, defaults in DEFAULTS.items():
        if section == "model":
            continue  # ModelConfig validates its own fields in build_config
        unknown = sorted(set(cfg[section]) - set(defaults))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown} in section '{section}'; valid: {sorted(defaults)}"
            )
    train, data = cfg["train"], cfg["data"]
    if train["stage"] not in STAGES:
        raise ConfigError(f"train.stage must be one of {STAGES}, got {train['stage']!r}")
    if train["precision"] not in PRECISIONS:
        raise ConfigError(
            f"train.precision must be one of {PRECISIONS}, got {train['precision']!r}"
        )
    for key, split in (
        ("train.select_split", train["select_split"]),
        ("data.val_split", data["val_split"]),
        ("data.train_split", data["train_split"]),
    ):
        if is_test_split(split):
            raise ConfigError(
                f"{key}={split!r} refused: a test split must never be used to train or to select "
                "checkpoints (use the val split; score test only with training/evaluate.py)"
            )
    boxed = data.get("boxed") or {}
    if str(boxed.get("names", "train")) == "holdout":
        raise ConfigError(
            "data.boxed.names='holdout' refused: the held-out frames score the model and are "
            "never trained on (use names: train)"
        )
    if train["select_split"] != data["val_split"]:
        raise ConfigError(
            f"train.select_split={train['select_split']!r} must equal data.val_split="
            f"{data['val_split']!r}: best.pt is chosen on the validation split"
        )
    opts = RunOptions.from_dict(cfg)  # every value casts to its type: fails here, not mid-run
    if opts.train.batch_size < 1:
        raise ConfigError(f"train.batch_size must be >= 1, got {train['batch_size']}")
    for stage in ("lstg", "seg"):
        if opts.stage(stage).epochs < 0:
            raise ConfigError(f"{stage}.epochs must be >= 0")
