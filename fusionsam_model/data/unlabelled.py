"""Unlabelled visible / infrared folder pairs (RoadScene layout) for self-supervised training.

Why: the VQ autoencoders (stage 1) and the fused-image loss need no labels, so real
registered pairs can teach them what real cameras look like while segmentation keeps
training on synthetic labels. Layout: ``ROOT/visible/NAME.ext`` and
``ROOT/infrared/NAME.ext`` with the same stem (RoadScene; any folder pair works with
``visible=`` / ``infrared=``). Samples carry a label of ``UNLABELLED`` everywhere (an id
outside every class table) only so they fit the ``Sample`` type and the training
transforms; training sets the labels of these pairs to its ignore value after
augmentation (whose padding writes a class id) and feeds them to label-free losses only.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fusionsam_model.data.datasets import DatasetError, Sample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
UNLABELLED = 255  # no class table has 256 classes; letterbox_label maps it to IGNORE


def _by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"missing folder {folder}")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


class UnlabelledPairs:
    """``len()`` / ``[i] -> Sample`` over same-stem visible / infrared files (sorted by stem)."""

    def __init__(
        self,
        root: str | Path,
        visible: str = "visible",
        infrared: str = "infrared",
        class_table=None,
    ) -> None:
        self.root = Path(root)
        vis, ir = _by_stem(self.root / visible), _by_stem(self.root / infrared)
        self.names = sorted(set(vis) & set(ir))
        if not self.names:
            raise DatasetError(
                f"no visible/infrared pairs with matching names under {self.root} "
                f"({visible}/: {len(vis)} images, {infrared}/: {len(ir)} images)"
            )
        self.unpaired = sorted(set(vis) ^ set(ir))
        self.paths = [(vis[n], ir[n]) for n in self.names]
        self.class_table = class_table

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        vis_path, ir_path = self.paths[index]
        rgb = cv2.imread(str(vis_path), cv2.IMREAD_COLOR)
        thermal = cv2.imread(str(ir_path), cv2.IMREAD_UNCHANGED)
        if rgb is None or thermal is None:
            raise DatasetError(f"cannot decode {vis_path if rgb is None else ir_path}")
        if thermal.ndim == 3:  # thermal stored as 3 equal channels (RoadScene, VIFB)
            thermal = cv2.cvtColor(thermal[..., :3], cv2.COLOR_BGR2GRAY)
        if rgb.shape[:2] != thermal.shape[:2]:
            raise DatasetError(
                f"pair {self.names[index]}: visible {rgb.shape[:2]} and infrared "
                f"{thermal.shape[:2]} differ in size (pairs must be registered)"
            )
        label = np.full(rgb.shape[:2], UNLABELLED, np.uint8)
        return Sample(self.names[index], cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB), thermal, label)
