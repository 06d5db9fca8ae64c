"""MFNet and FMB dataset readers returning aligned (rgb, thermal, label) samples.

Why: training, evaluation and the bag writer all read the same two on-disk layouts
(the synthetic generator writes MFNet's), and every bad file must fail with a message
that names it instead of a shape error deep inside a model.

Label id policy: ids must be < the class table's number of classes. A label value of
255 (the common "void" convention of converted datasets) is accepted only when the
table has an ``ignore_index`` and is mapped to it (FMB: 255 -> 0, which is ignored);
MFNet scores every id including 0, so a 255 there is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusionsam_model.data.classes import FMB, MFNET, ClassTable

VOID_LABEL = 255


class DatasetError(Exception):
    """A dataset file is missing or malformed; the message names the file."""


@dataclass
class Sample:
    name: str  # e.g. "00001D" (MFNet) or the file stem (FMB)
    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    thermal: np.ndarray  # (H, W) uint8 (MFNet/synth) or uint8/uint16 (FMB)
    label: np.ndarray  # (H, W) uint8 class ids


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot decode image {path}")
    return img


def _check_label(
    label: np.ndarray, path: Path, table: ClassTable, void_ok: bool = False
) -> np.ndarray:
    if label.ndim != 2:
        raise DatasetError(f"label {path} must be single-channel, got shape {label.shape}")
    if label.dtype != np.uint8:
        raise DatasetError(f"label {path} must be 8-bit, got {label.dtype}")
    top = int(label.max())
    if top < table.num_classes:
        return label
    ids = np.unique(label)
    void_ok = void_ok or table.ignore_index is not None
    bad = [int(i) for i in ids if i >= table.num_classes and not (i == VOID_LABEL and void_ok)]
    if bad:
        raise DatasetError(
            f"label {path} has unexpected ids {bad}; the {table.name} table has ids "
            f"0..{table.num_classes - 1}"
            + ("" if table.ignore_index is None else f" (and {VOID_LABEL} = ignore)")
        )
    if table.ignore_index is None:
        return label  # void_ok: VOID_LABEL stays; training ignores ids past the table
    label = label.copy()
    label[label == VOID_LABEL] = table.ignore_index
    return label


def _check_size(name: str, parts: dict[Path, np.ndarray]) -> None:
    sizes = {path: img.shape[:2] for path, img in parts.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{p} {s[1]}x{s[0]}" for p, s in sizes.items())
        raise DatasetError(f"sample {name}: modalities differ in size: {listing}")


class MFNetDataset:
    """``images/NAME.png`` RGBA (thermal in alpha), ``labels/NAME.png`` ids, ``SPLIT.txt`` names.
    ``void_ok``: labels may hold VOID_LABEL (pixels without a label, e.g. pseudo-labels)."""

    class_table: ClassTable = MFNET

    def __init__(self, root: str | Path, split: str, void_ok: bool = False) -> None:
        self.root, self.split, self.void_ok = Path(root), split, void_ok
        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} does not exist")
        split_file = self.root / f"{split}.txt"
        if not split_file.is_file():
            found = sorted(p.stem for p in self.root.glob("*.txt"))
            raise DatasetError(f"missing split file {split_file} (found splits: {found})")
        self.names = [
            n.strip().removesuffix(".png") for n in split_file.read_text().splitlines() if n.strip()
        ]
        for name in self.names:
            for path in (self.image_path(name), self.label_path(name)):
                if not path.is_file():
                    raise DatasetError(
                        f"split file {split_file} names {name}, but {path} is missing"
                    )

    def image_path(self, name: str) -> Path:
        return self.root / "images" / f"{name}.png"

    def label_path(self, name: str) -> Path:
        return self.root / "labels" / f"{name}.png"

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Sample:
        name = self.names[i]
        image_path, label_path = self.image_path(name), self.label_path(name)
        img = _read(image_path)
        if img.ndim != 3 or img.shape[2] != 4:
            raise DatasetError(
                f"image {image_path} must be RGBA (thermal in alpha), got shape {img.shape}"
            )
        if img.dtype != np.uint8:
            raise DatasetError(f"image {image_path} must be 8-bit, got {img.dtype}")
        label = _read(label_path)
        _check_size(name, {image_path: img, label_path: label})
        label = _check_label(label, label_path, self.class_table, self.void_ok)
        rgb = np.ascontiguousarray(img[..., 2::-1])
        thermal = np.ascontiguousarray(img[..., 3])
        return Sample(name, rgb, thermal, label)


def write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def write_mfnet_sample(
    root: Path, name: str, rgb: np.ndarray, thermal: np.ndarray, label: np.ndarray
) -> None:
    """One sample in the layout ``MFNetDataset`` reads (``images/`` and ``labels/`` exist)."""
    if thermal.dtype != np.uint8:
        raise DatasetError(f"{name}: the MFNet layout stores 8-bit thermal, got {thermal.dtype}")
    write_png(root / "images" / f"{name}.png", np.dstack([rgb[..., ::-1], thermal]))  # BGRA
    write_png(root / "labels" / f"{name}.png", label)


class FMBDataset:
    """``SPLIT/{Visible,Infrared,Label}/NAME.png``; the names come from ``Visible``."""

    class_table: ClassTable = FMB

    def __init__(self, root: str | Path, split: str) -> None:
        self.root, self.split = Path(root), split
        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} does not exist")
        visible = self.root / split / "Visible"
        if not visible.is_dir():
            raise DatasetError(f"missing split folder {visible}")
        self.names = sorted(p.stem for p in visible.glob("*.png"))
        if not self.names:
            raise DatasetError(f"split folder {visible} has no .png images")
        for name in self.names:
            for path in (self.infrared_path(name), self.label_path(name)):
                if not path.is_file():
                    raise DatasetError(
                        f"{self.visible_path(name)} has no partner: {path} is missing"
                    )

    def visible_path(self, name: str) -> Path:
        return self.root / self.split / "Visible" / f"{name}.png"

    def infrared_path(self, name: str) -> Path:
        return self.root / self.split / "Infrared" / f"{name}.png"

    def label_path(self, name: str) -> Path:
        return self.root / self.split / "Label" / f"{name}.png"

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Sample:
        name = self.names[i]
        paths = (self.visible_path(name), self.infrared_path(name), self.label_path(name))
        bgr, infrared, label = (_read(p) for p in paths)
        if bgr.ndim != 3 or bgr.shape[2] not in (3, 4) or bgr.dtype != np.uint8:
            raise DatasetError(
                f"visible image {paths[0]} must be 8-bit colour, got {bgr.dtype} {bgr.shape}"
            )
        _check_size(name, dict(zip(paths, (bgr, infrared, label), strict=True)))
        rgb = np.ascontiguousarray(bgr[..., 2::-1])
        thermal = _one_channel(infrared, paths[1])
        return Sample(name, rgb, thermal, _check_label(label, paths[2], self.class_table))


def _one_channel(img: np.ndarray, path: Path) -> np.ndarray:
    """FMB infrared PNGs are grey images saved as 1 or 3 (equal) channels."""
    if img.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"infrared image {path} must be 8- or 16-bit, got {img.dtype}")
    if img.ndim == 2:
        return img
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.shape[2] != 3:
        raise DatasetError(f"infrared image {path} has {img.shape[2]} channels; expected 1 or 3")
    if np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]):
        return np.ascontiguousarray(img[..., 0])
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


LAYOUT_CLASSES = {"mfnet": MFNetDataset, "synth": MFNetDataset, "fmb": FMBDataset}


def detect_layout(root: str | Path) -> str:
    """``mfnet`` when ``images/`` and ``labels/`` exist, ``fmb`` when ``train|test/Visible`` does."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist")
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "mfnet"
    if any((root / s / "Visible").is_dir() for s in ("train", "test")):
        return "fmb"
    raise DatasetError(
        f"cannot tell the layout of {root}: expected images/ and labels/ (MFNet) "
        "or train/Visible, test/Visible (FMB)"
    )


def open_dataset(root: str | Path, split: str, layout: str = "auto") -> MFNetDataset | FMBDataset:
    """Open one split; ``layout`` is ``auto``, ``mfnet`` (also the generator's output) or ``fmb``."""
    if layout == "auto":
        layout = detect_layout(root)
    try:
        cls = LAYOUT_CLASSES[layout.lower()]
    except KeyError:
        raise DatasetError(
            f"unknown dataset layout {layout!r}; choose auto, {', '.join(LAYOUT_CLASSES)}"
        ) from None
    return cls(root, split)
