"""Training: both stages learn, resume is exact, DDP keeps replicas equal, test splits are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from training.distributed import DistInfo
from training.run_config import ConfigError, load_config
from training.train import Trainer, main, train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "training" / "configs" / "synth_tiny.yaml"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """A tiny generated MFNet-layout dataset shared by the tests of this module."""
    from fusionsam_model.data import synth

    root = tmp_path_factory.mktemp("synth") / "data"
    synth.generate(root, 24, 3, "mfnet", progress=False)
    return root


def tiny_overrides(root: Path, out: Path, **extra: object) -> list[str]:
    base = {
        "data.root": str(root),
        "data.generate": "null",
        "data.val_limit": 2,
        "data.augment": "true",
        "model.input_size": 64,
        "train.out_dir": str(out),
        "train.batch_size": 2,
        "train.max_steps_per_epoch": 2,
        "train.progress": "false",
        "train.tensorboard": "false",
        "lstg.epochs": 1,
        "seg.epochs": 1,
        "loss.disc_start": 0,  # exercise the adversarial branch from the first step
    }
    base.update({k: v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def make_trainer(root: Path, out: Path, **extra: object) -> Trainer:
    cfg = load_config(CONFIG, tiny_overrides(root, out, **extra))
    return Trainer(cfg, DistInfo(0, 1, 0, torch.device("cpu")))


@pytest.mark.parametrize("stage", ["lstg", "seg"])
def test_steps_on_a_fixed_batch_lower_the_loss(synth_root, tmp_path, stage):
    trainer = make_trainer(synth_root, tmp_path, **{"lstg.lr": 2e-3, "seg.lr": 2e-3})
    trainer.setup_stage(stage)
    trainer._set_modes(stage)
    batch = next(iter(trainer.train_loader))
    step = trainer.lstg_step if stage == "lstg" else trainer.seg_step
    losses = [step(batch)["loss"] for _ in range(8)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-3:]) < losses[0], losses


def test_resume_reproduces_the_following_steps_exactly(synth_root, tmp_path):
    extra = {"lstg.epochs": 2, "seg.epochs": 2, "train.keep_epoch_checkpoints": "true"}
    cfg = load_config(CONFIG, tiny_overrides(synth_root, tmp_path / "full", **extra))
    rep, full = train(cfg)
    assert (tmp_path / "full" / "best.pt").is_file()
    # after lstg epoch 1: disc + codebook state in play
    mid = tmp_path / "full" / "lstg_epoch001.pt"
    cfg2 = load_config(CONFIG, tiny_overrides(synth_root, tmp_path / "resumed", **extra))
    _, resumed = train(cfg2, resume=str(mid))
    after = full.step_losses[len(full.step_losses) - len(resumed.step_losses) :]
    assert len(resumed.step_losses) == 2 + 2 * 2  # lstg epoch 2 + both seg epochs
    assert [s["loss"] for s in resumed.step_losses] == [s["loss"] for s in after]
    for (k, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


def test_best_checkpoint_loads_in_the_segmenter(synth_root, tmp_path):
    from fusionsam_model.runtime.segmenter import Segmenter

    cfg = load_config(CONFIG, tiny_overrides(synth_root, tmp_path, **{"train.stage": "seg"}))
    rep, _ = train(cfg)
    seg = Segmenter.from_checkpoint(tmp_path / "best.pt")
    assert seg.metadata["val_split"] == "val"
    assert rep["best_val_miou"] == pytest.approx(seg.metadata["val_miou"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["perceptual_loss"].startswith("offline")


@pytest.mark.parametrize(
    "override",
    [
        "train.select_split=test",
        "data.val_split=test",
        "data.val_split=test_night",
        "data.train_split=test",
    ],
)
def test_selecting_or_training_on_a_test_split_is_refused(override, capsys):
    with pytest.raises(ConfigError, match="test split"):
        load_config(CONFIG, [override])
    assert main(["--config", str(CONFIG), override]) == 2
    assert "never be used" in capsys.readouterr().err


def test_vgg_perceptual_weights_are_loaded_from_a_user_file(tmp_path):
    from torchvision.models import vgg16

    from training.losses import VGGPerceptualLoss, build_perceptual_loss

    path = tmp_path / "vgg16.pth"
    torch.save(vgg16(weights=None).state_dict(), path)
    loss = build_perceptual_loss(str(path))
    assert isinstance(loss, VGGPerceptualLoss)
    x = torch.rand(1, 3, 32, 32)
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, torch.rand(1, 3, 32, 32))) > 0
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="features"):
        VGGPerceptualLoss(tmp_path / "bad.pth")


WORKER = textwrap.dedent(
    """
    import sys, torch
    from training.run_config import load_config
    from training.train import train
    cfg = load_config(sys.argv[1], sys.argv[3:])
    rep, trainer = train(cfg)
    import os
    torch.save(trainer.model.state_dict(), f"{sys.argv[2]}/rank{os.environ['RANK']}.pt")
    """
)


def test_torchrun_two_cpu_processes_keep_identical_weights(synth_root, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_port", str(29500 + os.getpid() % 1000), str(worker), str(CONFIG), str(tmp_path),
        *tiny_overrides(synth_root, out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == 2
    # Both ranks moved away from the common initialisation (so equality is not trivial).
    from fusionsam_model.modeling.config import build_config
    from fusionsam_model.modeling.model import FusionSAM
    from training.run_state import seed_everything

    seed_everything(0)
    init = FusionSAM(build_config("tiny", input_size=64, num_classes=9)).state_dict()
    assert not torch.equal(
        init["sam_decoder.mask_decoder.mask_tokens.weight"],
        a["sam_decoder.mask_decoder.mask_tokens.weight"],
    )
    assert not torch.equal(
        init["lstg_rgb.decoder.out_conv.weight"], a["lstg_rgb.decoder.out_conv.weight"]
    )


def test_class_weights_lift_rare_classes_and_skip_absent_ones():
    from training.losses import class_weights

    w = class_weights(torch.tensor([900.0, 100.0, 0.0, 25.0]), power=0.5)
    assert w[2] == 0  # absent from the train split: never a target
    assert w[0] < w[1] < w[3]
    assert w[[0, 1, 3]].mean().item() == pytest.approx(1.0)
    assert (w[3] / w[1]).item() == pytest.approx(2.0)  # sqrt(100 / 25)


def test_init_from_a_model_trained_at_another_input_size(tmp_path):
    """model.init_from at another S: every weight copied, the position tables interpolated
    (so the token grid's embedding is the source's, resampled), nothing left at init."""
    from fusionsam_model.data.classes import MFNET
    from fusionsam_model.modeling.config import build_config
    from fusionsam_model.modeling.model import FusionSAM
    from fusionsam_model.modeling.sam_decoder import resize_pos_embed
    from fusionsam_model.runtime.checkpoint import CheckpointError, save_checkpoint
    from training.init_weights import init_model

    torch.manual_seed(0)
    source = FusionSAM(build_config("tiny", input_size=64, num_classes=MFNET.num_classes))
    path = save_checkpoint(tmp_path / "s64.pt", source, MFNET)
    torch.manual_seed(1)
    target = FusionSAM(build_config("tiny", input_size=96, num_classes=MFNET.num_classes))
    init_model(target, path)
    src, dst = source.state_dict(), target.state_dict()
    resized = [k for k in src if src[k].shape != dst[k].shape]
    assert resized, "S=64 -> 96 must change the token grid"
    for key, value in src.items():
        if key in resized:
            if key.endswith("pos_embed"):
                expected = resize_pos_embed(value, dst[key].shape[1])
                torch.testing.assert_close(dst[key], expected, atol=1e-3, rtol=0)
        else:
            torch.testing.assert_close(dst[key], value, atol=1e-3, rtol=0)
    other = FusionSAM(build_config("tiny", input_size=64, num_classes=4))
    with pytest.raises(CheckpointError, match="does not match"):
        init_model(other, path)
