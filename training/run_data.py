"""The data of one training run: splits, loaders, CE class weights, unlabelled extras, previews.

Built once from the run options (``RunData.build``); the trainer and the stage steps
read it. Class weights come from the TRAIN split only (never val or test); unlabelled
real pairs are drawn by (seed, stage, step) so a resumed run sees the same batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.modeling.config import ModelConfig
from training import losses as L
from training.data import HeldOut, PairTransform, TrainingPairs, make_loader
from training.distributed import DistInfo, barrier
from training.options import ConfigError, RunOptions
from training.run_state import RunState

log = logging.getLogger("training.train")


@dataclass
class RunData:
    train_pairs: TrainingPairs
    val_ds: Any  # a dataset (len(), [i] -> Sample)
    train_loader: torch.utils.data.DataLoader
    train_sampler: Any
    unlabelled_pairs: TrainingPairs | None
    unlabelled_batch_size: int
    boxed_pairs: Any  # training.box_data.BoxedPairs | None
    boxed_batch_size: int
    preview: dict[str, torch.Tensor] | None  # two val pairs for the TensorBoard panels
    ce_weights: torch.Tensor | None
    seed: int
    device: torch.device

    @classmethod
    def build(
        cls, opts: RunOptions, model_config: ModelConfig, class_table: ClassTable, info: DistInfo
    ) -> RunData:
        from fusionsam_model.data.datasets import open_dataset

        data, seed = opts.data, opts.train.seed
        root = Path(data.root)
        if data.generate and not root.exists():
            if info.is_main:
                from fusionsam_model.data import synth

                gen = dict(data.generate)
                log.info("generating synthetic dataset at %s (%s)", root, gen)
                synth.generate(
                    root,
                    int(gen.get("num", 600)),
                    int(gen.get("seed", 0)),
                    gen.get("layout", "mfnet"),
                    progress=opts.train.progress,
                    warm_chance=float(gen.get("warm_surfaces", 0.0)),
                )
            barrier(info)
        train_ds = open_dataset(root, data.train_split, layout=data.layout)
        if data.val_fraction_of_train:
            frac = data.val_fraction_of_train
            train_ds, val_ds = HeldOut(train_ds, frac, False), HeldOut(train_ds, frac, True)
        else:
            val_ds = open_dataset(root, data.val_split, layout=data.layout)
        if train_ds.class_table.name != class_table.name:
            raise ConfigError(
                f"model.class_table={class_table.name!r} but {root} holds a "
                f"{train_ds.class_table.name!r} dataset"
            )
        mc = model_config
        transform = PairTransform(
            mc.input_size, class_table, mc.thermal_range, mc.thermal_percentiles, data.augment
        )
        ce_weights = ce_class_weights(train_ds, class_table, opts.loss.ce_class_weight_power)
        if data.pseudo:
            train_ds = with_pseudo_labels(train_ds, dict(data.pseudo))
        train_pairs = TrainingPairs(train_ds, transform, seed=seed)
        unlabelled_pairs, unlabelled_n = None, 0
        if data.unlabelled:
            from fusionsam_model.data.unlabelled import UnlabelledPairs

            spec = dict(data.unlabelled)
            real = UnlabelledPairs(
                spec["root"], spec.get("visible", "visible"), spec.get("infrared", "infrared")
            )
            unlabelled_pairs = TrainingPairs(real, transform, seed=seed)
            unlabelled_n = int(spec.get("batch_size", 4))
            log.info(
                "unlabelled pairs for the label-free losses: %d from %s, %d per step",
                len(real),
                spec["root"],
                unlabelled_n,
            )
        boxed_pairs, boxed_n = build_boxed(data.boxed, mc)
        train_loader, train_sampler = make_loader(
            train_pairs,
            opts.train.batch_size,
            shuffle=True,
            num_workers=data.num_workers,
            seed=seed,
            rank=info.rank,
            world_size=info.world_size,
        )
        plain = PairTransform(
            mc.input_size, class_table, mc.thermal_range, mc.thermal_percentiles, False
        )
        items = [plain(val_ds[i], None) for i in range(min(2, len(val_ds)))]
        preview = {k: torch.stack([it[k] for it in items]) for k in items[0]} if items else None
        if len(train_loader) == 0:
            raise ConfigError(
                f"train split of {root} has {len(train_ds)} pairs: too few for batch_size "
                f"{opts.train.batch_size} x {info.world_size} processes"
            )
        return cls(
            train_pairs,
            val_ds,
            train_loader,
            train_sampler,
            unlabelled_pairs,
            unlabelled_n,
            boxed_pairs,
            boxed_n,
            preview,
            None if ce_weights is None else ce_weights.to(info.device),
            seed,
            info.device,
        )

    def with_unlabelled(
        self, batch: dict[str, torch.Tensor], state: RunState
    ) -> dict[str, torch.Tensor]:
        """``batch`` plus data.unlabelled pairs drawn by (seed, stage, step): resume-exact."""
        if self.unlabelled_pairs is None:
            return batch
        stage = 1 if state.stage == "seg" else 0
        seed = (self.seed * 1_000_003 + state.step) * 2 + stage
        rng = torch.Generator().manual_seed(seed)
        n = self.unlabelled_batch_size
        picks = torch.randint(len(self.unlabelled_pairs), (n,), generator=rng).tolist()
        self.unlabelled_pairs.set_epoch(state.step)
        items = [self.unlabelled_pairs[i] for i in picks]
        extra = {k: torch.stack([it[k] for it in items]).to(self.device) for k in batch}
        extra["label"].fill_(L.IGNORE)  # augmentation pads labels with a class id; never score them
        return {k: torch.cat([batch[k], extra[k]]) for k in batch}

    @property
    def boxed_classes(self) -> tuple[int, ...]:
        """Class ids the box labels cover (their negatives are trained)."""
        return () if self.boxed_pairs is None else self.boxed_pairs.classes

    def with_boxed(
        self, batch: dict[str, torch.Tensor], state: RunState
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """``batch`` plus data.boxed real frames (labels: ignore) drawn by (seed, step), and
        their boxes at S (one (N, 6) tensor per appended frame): resume-exact."""
        if self.boxed_pairs is None:
            return batch, []
        rng = np.random.default_rng((self.seed, state.step, 2))
        picks = rng.integers(len(self.boxed_pairs), size=self.boxed_batch_size)
        items = [self.boxed_pairs.item(int(i), rng) for i in picks]
        extra = {
            "rgb": torch.stack([it.rgb for it in items]),
            "thermal": torch.stack([it.thermal for it in items]),
            "valid": torch.stack([it.valid for it in items]),
        }
        s = extra["rgb"].shape[-1]
        extra["label"] = torch.full((len(items), s, s), L.IGNORE, dtype=batch["label"].dtype)
        for key in set(batch) - set(extra):  # e.g. the dataset index: none for these frames
            extra[key] = torch.full((len(items), *batch[key].shape[1:]), -1, dtype=batch[key].dtype)
        merged = {k: torch.cat([batch[k], extra[k].to(self.device)]) for k in batch}
        return merged, [it.boxes.to(self.device) for it in items]


def with_pseudo_labels(train_ds: Any, spec: dict) -> torch.utils.data.ConcatDataset:
    """The train split followed by data.pseudo's frames (CE class weights stay the train
    split's: the pseudo-labels' class shares are the teacher's, not the world's)."""
    from fusionsam_model.data.datasets import MFNetDataset

    pseudo = MFNetDataset(spec["root"], str(spec.get("split", "train")), void_ok=True)
    if pseudo.class_table.name != train_ds.class_table.name:
        raise ConfigError(f"data.pseudo {spec['root']} is not a {train_ds.class_table.name} set")
    log.info("pseudo-labelled real frames: %d from %s", len(pseudo), spec["root"])
    return torch.utils.data.ConcatDataset([train_ds, pseudo])


def build_boxed(spec: dict | None, mc: ModelConfig) -> tuple[Any, int]:
    """data.boxed -> (BoxedPairs over its training names, frames per step) or (None, 0)."""
    if not spec:
        return None, 0
    from fusionsam_model.data.box_datasets import MSRS_LABEL_SETS, BoxDataset, select_names
    from training.box_data import BoxedPairs

    spec = dict(spec)
    names = select_names(spec["root"], str(spec.get("names", "train")))
    ds = BoxDataset(spec["root"], names, tuple(spec.get("label_sets", MSRS_LABEL_SETS)))
    photometric = bool(spec.get("photometric", False))
    pairs = BoxedPairs(
        ds, mc.input_size, mc.thermal_range, mc.thermal_percentiles, photometric=photometric
    )
    n = int(spec.get("batch_size", 2))
    log.info("box-labelled real frames: %d from %s, %d per seg step", len(pairs), spec["root"], n)
    return pairs, n


def ce_class_weights(train_ds: Any, table: ClassTable, power: float) -> torch.Tensor | None:
    """CE class weights from the TRAIN split's label pixel counts (never val or test)."""
    if power == 0.0:
        return None
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
    return weights
