"""A small real Trainer for tests of what training mixes into a step (shared by modules)."""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def small_trainer(tmp_path: Path, data: dict[str, str]):  # noqa: ANN201 (training.train.Trainer)
    """A Trainer over 16 generated synthetic pairs at S = 64, batch 2, with ``data.KEY``
    overrides (e.g. ``{"unlabelled": "{root: DIR}"}``); its run folder is tmp_path/run."""
    from fusionsam_model.data import synth
    from training.distributed import DistInfo
    from training.run_config import load_config
    from training.train import Trainer

    synth.generate(tmp_path / "synth", 16, 3, "mfnet", progress=False)
    overrides = {
        "data.root": str(tmp_path / "synth"),
        "data.generate": "null",
        "data.val_limit": 2,
        **{f"data.{k}": v for k, v in data.items()},
        "model.input_size": 64,
        "train.out_dir": str(tmp_path / "run"),
        "train.batch_size": 2,
        "train.progress": "false",
        "train.tensorboard": "false",
    }
    cfg = load_config(
        REPO / "training" / "configs" / "synth_tiny.yaml",
        [f"{k}={v}" for k, v in overrides.items()],
    )
    return Trainer(cfg, DistInfo(0, 1, 0, torch.device("cpu")))
