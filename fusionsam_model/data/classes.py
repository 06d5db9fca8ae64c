"""Class tables: names, palettes and scoring protocols for every dataset, in one place.

A ``ClassTable`` travels inside checkpoints, so the node, the evaluators and the
training code agree on ids, colours and which classes a mIoU averages over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ClassTable:
    """Ids are positions in ``names``; ``ignore_index`` is excluded from scoring."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int | None = None
    protocol: str = ""
    scored: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.names) != len(self.palette):
            raise ValueError(
                f"class table {self.name}: {len(self.names)} names but {len(self.palette)} colours"
            )
        if not self.scored:
            scored = tuple(i for i in range(len(self.names)) if i != self.ignore_index)
            object.__setattr__(self, "scored", scored)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette_array(self) -> np.ndarray:
        """(256, 3) uint8 lookup table; ids beyond the table map to white so they stand out."""
        lut = np.full((256, 3), 255, dtype=np.uint8)
        lut[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        return lut

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """Class-id image (H, W) -> RGB image (H, W, 3) in the dataset palette."""
        return self.palette_array()[labels.astype(np.uint8, copy=False)]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "names": list(self.names),
            "palette": [list(c) for c in self.palette],
            "ignore_index": self.ignore_index,
            "protocol": self.protocol,
            "scored": list(self.scored),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClassTable:
        return cls(
            name=str(d["name"]),
            names=tuple(d["names"]),
            palette=tuple(tuple(int(v) for v in c) for c in d["palette"]),
            ignore_index=d.get("ignore_index"),
            protocol=str(d.get("protocol", "")),
            scored=tuple(d.get("scored", ())),
        )


MFNET = ClassTable(
    name="mfnet",
    names=(
        "unlabeled",
        "car",
        "person",
        "bike",
        "curve",
        "car_stop",
        "guardrail",
        "color_cone",
        "bump",
    ),
    palette=(
        (0, 0, 0),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
        (0, 0, 192),
        (128, 128, 0),
        (64, 64, 128),
        (192, 128, 128),
        (192, 64, 0),
    ),
    ignore_index=None,
    protocol="MFNet: 9 classes, class 0 (unlabeled) scored as a class (RTFNet convention), nanmean over classes present",
)

FMB = ClassTable(
    name="fmb",
    names=(
        "unlabeled",
        "road",
        "sidewalk",
        "building",
        "traffic_lamp",
        "sign",
        "vegetation",
        "sky",
        "person",
        "car",
        "truck",
        "bus",
        "motorcycle",
        "bicycle",
        "pole",
    ),
    palette=(
        (0, 0, 0),
        (179, 228, 228),
        (181, 57, 133),
        (67, 162, 177),
        (200, 178, 50),
        (132, 45, 199),
        (66, 172, 84),
        (179, 73, 79),
        (76, 99, 166),
        (66, 121, 253),
        (137, 165, 91),
        (155, 97, 152),
        (105, 153, 140),
        (222, 215, 158),
        (135, 113, 90),
    ),
    ignore_index=0,
    protocol="FMB: 14 classes, id 0 (unlabeled) ignored, nanmean over classes present",
)

CLASS_TABLES: dict[str, ClassTable] = {t.name: t for t in (MFNET, FMB)}


def get_class_table(name: str) -> ClassTable:
    """Look a table up by name (``mfnet`` or ``fmb``) with an error listing the choices."""
    try:
        return CLASS_TABLES[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown class table {name!r}; choose one of {sorted(CLASS_TABLES)}"
        ) from None
