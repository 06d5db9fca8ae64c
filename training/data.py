"""torch Dataset/DataLoader glue: dataset Samples -> letterboxed S x S training tensors.

Images go through ``fusionsam_model.runtime.preprocess`` exactly as at inference (same
thermal normalisation, same letterbox), labels are letterboxed with nearest
neighbour and padded with ``IGNORE`` so padding is never scored. Augmentation draws
from a generator seeded by (seed, epoch, index): a batch is the same whatever the
worker count, and a resumed run sees the very batches the uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from fusionsam_model.data.augment import AugmentConfig, augment, label_pad_value
from fusionsam_model.data.classes import ClassTable
from fusionsam_model.runtime.preprocess import letterbox_for, preprocess_pair
from training.losses import IGNORE


def letterbox_label(label: np.ndarray, size: int, class_table: ClassTable) -> np.ndarray:
    """(H, W) ids -> (S, S) int64 ids; padding and the table's ignore_index become IGNORE."""
    box = letterbox_for(label.shape[:2], size)
    rh, rw = box.resized_hw
    small = cv2.resize(label.astype(np.uint8), (rw, rh), interpolation=cv2.INTER_NEAREST)
    out = np.full((size, size), IGNORE, np.int64)
    out[:rh, :rw] = small
    if class_table.ignore_index is not None:
        out[out == class_table.ignore_index] = IGNORE
    out[(out >= class_table.num_classes) & (out != IGNORE)] = IGNORE  # unknown ids: not scored
    return out


@dataclass
class PairTransform:
    """Sample -> tensors; optional augmentation (fusionsam_model.data.augment) before the letterbox."""

    size: int
    class_table: ClassTable
    thermal_range: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (1.0, 99.0)
    augment: bool = False

    def __call__(self, sample, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        rgb, thermal, label = sample.rgb, sample.thermal, sample.label
        if self.augment and rng is not None:
            # Scale/crop/flip/jitter keeping the sample's own size, so the letterbox that
            # follows is the one inference applies.
            aug_cfg = AugmentConfig(crop_size=tuple(label.shape[:2]))
            pad = label_pad_value(self.class_table)
            rgb, thermal, label = augment(rgb, thermal, label, rng, aug_cfg, pad)
        rgb_t, th_t, box = preprocess_pair(
            rgb, thermal, self.size, self.thermal_range, self.percentiles
        )
        rh, rw = box.resized_hw
        valid = np.zeros((1, self.size, self.size), np.float32)
        valid[:, :rh, :rw] = 1.0
        return {
            "rgb": torch.from_numpy(np.ascontiguousarray(rgb_t)),
            "thermal": torch.from_numpy(np.ascontiguousarray(th_t)),
            "label": torch.from_numpy(letterbox_label(label, self.size, self.class_table)),
            "valid": torch.from_numpy(valid),
        }


class HeldOut:
    """Every k-th pair of a split (``keep=True``) or all the others: a val split carved
    from train for datasets that ship none (FMB has only train/ and test/)."""

    def __init__(self, dataset, fraction: float, keep: bool) -> None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"data.val_fraction_of_train must be in (0, 1), got {fraction}")
        k = max(2, round(1.0 / fraction))
        self.indices = [i for i in range(len(dataset)) if (i % k == 0) == keep]
        self.dataset = dataset
        self.class_table = dataset.class_table
        self.names = [dataset.names[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


class TrainingPairs(Dataset):
    """A fusionsam_model dataset split seen through a PairTransform, reproducible per epoch."""

    def __init__(self, dataset, transform: PairTransform, seed: int = 0) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call alongside DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        item = self.transform(self.dataset[index], rng)
        item["index"] = torch.tensor(int(index))
        return item


def make_loader(
    pairs: TrainingPairs,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
) -> tuple[DataLoader, DistributedSampler]:
    """DataLoader over a DistributedSampler (also with one process, so shuffling is seeded by epoch)."""
    sampler = DistributedSampler(
        pairs,
        num_replicas=world_size,
        rank=rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last and len(pairs) >= world_size,
    )
    loader = DataLoader(
        pairs,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last and len(pairs) // world_size >= batch_size,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )
    return loader, sampler
