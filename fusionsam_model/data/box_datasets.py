"""Registered RGB-thermal folder pairs with box labels (msrs_dev layout), and its held-out split.

Why: box-level evaluation and box-supervised training read the same frames and the same
boxes; one reader keeps them agreeing on names, class ids and pixel coordinates.

Layout (``../shared/data/msrs_dev``): ``ROOT/vi/NAME.png`` (RGB), ``ROOT/ir/NAME.png``
(8-bit thermal, registered), ``ROOT/boxes/<label set>/NAME.txt`` (YOLO) with
``ROOT/boxes/classes.txt``, ``ROOT/names.txt``. Label sets may also be COCO json files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusionsam_model.data.boxes import (
    LabelSet,
    label_set_names,
    map_classes,
    merge_label_sets,
    parse_box_map,
    read_label_set,
    to_pixels,
)
from fusionsam_model.data.classes import MFNET, ClassTable
from fusionsam_model.data.conditions import DAY, NIGHT, condition_of
from fusionsam_model.data.datasets import DatasetError

MSRS_LABEL_SETS = ("visible", "infrared", "fusion")
MSRS_BOX_MAP = "person=person,bicycle=bike,car=car"  # box classes.txt -> MFNet names
NAME_SELECTIONS = ("all", "train", "holdout")


HOLDOUT_BLOCKS = (1, 4)  # of SPLIT_BLOCKS contiguous blocks per condition (0-based)
SPLIT_BLOCKS = 6


def msrs_dev_split(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split frames by name range, never at random: ``(train_names, holdout_names)``.

    Frames in a sequence are a few video frames apart, so neighbours look alike and a
    random split would leak the held-out frames into training. Day names (``…D``) and
    night names (``…N``) are sorted separately and each list is cut into six contiguous
    blocks; the 2nd and the 5th are held out, so both parts span the whole drive (with
    one held-out stretch at the end, msrs_dev's training part had no bicycle by day).
    The name just before and just after each held-out block is a **guard**: in neither
    part, so no training frame is the direct neighbour of a held-out one. Both lists come
    back sorted; the result depends only on the set of names. For msrs_dev's 39 day +
    52 night names: 13 + 16 held out, 22 + 32 for training, 8 guards.
    """
    unique = sorted(set(names))
    other = [n for n in unique if condition_of(n) is None]
    if other:
        raise ValueError(f"names without a D (day) / N (night) suffix: {other[:5]}")
    train: list[str] = []
    holdout: list[str] = []
    for cond in (DAY, NIGHT):
        group = [n for n in unique if condition_of(n) == cond]
        edges = [round(i * len(group) / SPLIT_BLOCKS) for i in range(SPLIT_BLOCKS + 1)]
        held: set[int] = set()
        guard: set[int] = set()
        for block in HOLDOUT_BLOCKS:
            start, end = edges[block], edges[block + 1]
            if start == end:  # fewer than six names: the block is empty
                continue
            held.update(range(start, end))
            guard.update(i for i in (start - 1, end) if 0 <= i < len(group))
        holdout += [group[i] for i in sorted(held)]
        train += [n for i, n in enumerate(group) if i not in held and i not in guard]
    return sorted(train), sorted(holdout)


def list_names(root: str | Path, visible: str = "vi") -> list[str]:
    """``ROOT/names.txt`` when present, else the stems of the visible images; sorted."""
    root = Path(root)
    listing = root / "names.txt"
    if listing.is_file():
        return sorted({ln.strip() for ln in listing.read_text().splitlines() if ln.strip()})
    folder = root / visible
    if not folder.is_dir():
        raise DatasetError(f"neither {listing} nor the image folder {folder} exists")
    return sorted(p.stem for p in folder.glob("*.png"))


def select_names(root: str | Path, selection: str, visible: str = "vi") -> list[str]:
    """``all`` / ``train`` / ``holdout`` (``msrs_dev_split``) of the root's names, or a
    file with one name a line."""
    if selection in NAME_SELECTIONS:
        names = list_names(root, visible)
        if selection == "all":
            return names
        train, holdout = msrs_dev_split(names)
        return train if selection == "train" else holdout
    path = Path(selection)
    if not path.is_file():
        raise DatasetError(f"--names {selection!r}: not one of {NAME_SELECTIONS} nor a file")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not names:
        raise DatasetError(f"names file {path} is empty")
    return names


@dataclass
class BoxSample:
    name: str
    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    thermal: np.ndarray  # (H, W) uint8 (or uint16)
    boxes: np.ndarray  # (N, 5) float64: x1, y1, x2, y2 in pixels, class-table id


@dataclass(frozen=True)
class BoxLabels:
    """The merged, class-mapped boxes of a list of images (no pixels: the streamed
    evaluator needs only these). ``boxes[name]`` is (N, 5) normalised ``x1 y1 x2 y2 id``."""

    boxes: dict[str, np.ndarray]
    label_sets: tuple[str, ...]
    missing: dict[str, list[str]]  # label set -> names without a file (= no objects)
    class_table: ClassTable
    classes: tuple[str, ...]  # the class-table names boxes map to, in table-id order

    @property
    def frames_without_file(self) -> list[str]:
        """Names that no label set has a file for."""
        sets = list(self.missing.values())
        return sorted(set.intersection(*map(set, sets))) if sets else []

    def pixels(self, name: str, height: int, width: int) -> np.ndarray:
        return to_pixels(self.boxes[name], height, width)

    @classmethod
    def load(
        cls,
        sources: Sequence[str | Path],
        names: Sequence[str],
        mapping: str | Mapping[str, str] = MSRS_BOX_MAP,
        class_table: ClassTable = MFNET,
    ) -> BoxLabels:
        """Read every label set (YOLO folder or COCO json) for ``names``, map the box
        classes with ``mapping`` (the first set's class names; all sets must agree) and
        merge the sets in the given order (``merge_label_sets``)."""
        if not sources:
            raise DatasetError("no box label set given")
        sets: list[LabelSet] = [read_label_set(s, names) for s in sources]
        for other in sets[1:]:
            if other.class_names != sets[0].class_names:
                raise DatasetError(
                    f"label sets disagree on classes: {sets[0].source} {sets[0].class_names}, "
                    f"{other.source} {other.class_names}"
                )
        ids = parse_box_map(mapping, sets[0].class_names, class_table)
        merged = {n: merge_label_sets([map_classes(s.get(n), ids) for s in sets]) for n in names}
        return cls(
            merged,
            tuple(s.name for s in sets),
            {s.name: list(s.missing) for s in sets},
            class_table,
            tuple(class_table.names[i] for i in sorted(set(ids.values()))),
        )


def load_streamed_box_labels(
    sources: Sequence[str | Path],
    mapping: str | Mapping[str, str] = MSRS_BOX_MAP,
    class_table: ClassTable = MFNET,
) -> BoxLabels:
    """``BoxLabels`` of every name any label set has a file for: a reader that learns the
    names only as frames arrive (the streamed evaluator) checks all files up front and
    treats a name outside these as a frame without objects."""
    names = sorted({n for s in sources for n in label_set_names(s)})
    return BoxLabels.load(sources, names, mapping, class_table)


class BoxDataset:
    """``len()`` / ``[i] -> BoxSample`` over ``names`` of a folder pair with box labels.

    ``label_sets``: folders or COCO files; a relative entry that does not exist as given
    is looked up under ``ROOT/boxes/``. ``mapping``: box class names -> class-table names.
    Every box file is read and checked when the dataset is made (a malformed line fails
    here, naming file and line); images are read per item.
    """

    def __init__(
        self,
        root: str | Path,
        names: Sequence[str] | None = None,
        label_sets: Sequence[str | Path] = MSRS_LABEL_SETS,
        mapping: str | Mapping[str, str] = MSRS_BOX_MAP,
        class_table: ClassTable = MFNET,
        visible: str = "vi",
        infrared: str = "ir",
    ) -> None:
        self.root = Path(root)
        self.visible, self.infrared = self.root / visible, self.root / infrared
        for folder in (self.visible, self.infrared):
            if not folder.is_dir():
                raise DatasetError(f"image folder {folder} does not exist")
        self.names = list(names) if names is not None else list_names(self.root, visible)
        for name in self.names:
            for folder in (self.visible, self.infrared):
                if not (folder / f"{name}.png").is_file():
                    raise DatasetError(f"frame {name}: {folder / f'{name}.png'} is missing")
        sources = [self._source(s) for s in label_sets]
        self.labels = BoxLabels.load(sources, self.names, mapping, class_table)
        self.class_table = class_table

    def _source(self, entry: str | Path) -> Path:
        path = Path(entry)
        return path if path.is_absolute() or path.exists() else self.root / "boxes" / path

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> BoxSample:
        name = self.names[index]
        rgb_path, ir_path = self.visible / f"{name}.png", self.infrared / f"{name}.png"
        bgr = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR)
        thermal = cv2.imread(str(ir_path), cv2.IMREAD_UNCHANGED)
        if bgr is None or thermal is None:
            raise DatasetError(f"cannot decode {rgb_path if bgr is None else ir_path}")
        if thermal.ndim == 3:  # thermal saved as three equal channels
            thermal = cv2.cvtColor(thermal[..., :3], cv2.COLOR_BGR2GRAY)
        if bgr.shape[:2] != thermal.shape[:2]:
            raise DatasetError(
                f"frame {name}: visible {bgr.shape[:2]} and infrared {thermal.shape[:2]} differ"
            )
        height, width = thermal.shape
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return BoxSample(name, rgb, thermal, self.labels.pixels(name, height, width))
