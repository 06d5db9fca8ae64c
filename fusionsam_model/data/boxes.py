"""Box labels (YOLO txt per image, or COCO json) mapped onto a class table, strictly checked.

Why: most public RGB-thermal data sets (KAIST, LLVIP, M3FD, FLIR ADAS, MSRS) carry boxes,
not masks, so the segmentation is scored and trained against boxes too. A malformed line
must stop the run with the file and line named, not vanish from the score; a missing YOLO
file means "no objects" (the YOLO convention) and is counted so a report can say so.

Boxes are kept normalised (``x1 y1 x2 y2`` in [0, 1] of the image size, class-table id) so
one store serves images of any size; ``to_pixels`` gives pixel corners for a given image.

Several label sets of the same images (e.g. MSRS's visible, infrared and fused-image
labels) are merged by ``merge_label_sets``: boxes of one class with IoU > 0.5 are one object.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.data.datasets import DatasetError

MERGE_IOU = 0.5  # boxes of one class overlapping more than this are the same object
# Labels are written with ~6 decimals: an edge may overshoot the image by rounding.
EDGE_TOLERANCE = 1e-3
CLASS_FILES = ("classes.txt", "obj.names", "classes.names")


class BoxLabelError(DatasetError):
    """A box label file is malformed; the message names the file and the line."""


def empty_boxes() -> np.ndarray:
    """(0, 5) float64: the boxes of an image without objects."""
    return np.zeros((0, 5), dtype=np.float64)


@dataclass
class LabelSet:
    """One label set: per image name, (N, 5) boxes ``x1 y1 x2 y2 id`` normalised, ids of
    the *box* classes (``class_names``); ``source`` is the folder or json file."""

    name: str
    source: Path
    class_names: tuple[str, ...]
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # names asked for without a file

    def get(self, image: str) -> np.ndarray:
        return self.boxes.get(image, empty_boxes())


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """``classes.txt``: one name a line (YOLO), or ``ID NAME`` lines with ids 0..n-1."""
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    names: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        head, _, rest = line.partition(" ")
        if head.isdigit() and rest.strip():
            names[int(head)] = rest.strip()
        else:
            names[number - 1] = line
    if sorted(names) != list(range(len(names))):
        raise BoxLabelError(f"{path}: class ids must be 0..{len(names) - 1}, got {sorted(names)}")
    return tuple(names[i] for i in range(len(names)))


def find_class_file(folder: Path) -> Path:
    """The class-name file of a YOLO label folder: in the folder or in its parent (a
    shared ``boxes/classes.txt`` above ``boxes/visible/`` etc.)."""
    for where in (folder, folder.parent):
        for name in CLASS_FILES:
            if (where / name).is_file():
                return where / name
    raise BoxLabelError(
        f"no class-name file ({', '.join(CLASS_FILES)}) in {folder} or {folder.parent}; "
        "YOLO class ids mean nothing without it"
    )


def parse_yolo_line(line: str, path: Path, number: int, num_classes: int) -> list[float]:
    """``class cx cy w h`` (normalised) -> ``[x1, y1, x2, y2, class]``; raises naming file:line."""
    where = f"{path}:{number}"
    fields = line.split()
    if len(fields) != 5:
        raise BoxLabelError(f"{where}: expected 5 fields 'class cx cy w h', got {len(fields)}")
    try:
        cls = int(fields[0])
    except ValueError:
        raise BoxLabelError(f"{where}: class id {fields[0]!r} is not an integer") from None
    try:
        cx, cy, w, h = (float(v) for v in fields[1:])
    except ValueError:
        raise BoxLabelError(f"{where}: non-numeric coordinate in {line.strip()!r}") from None
    if not 0 <= cls < num_classes:
        raise BoxLabelError(
            f"{where}: unknown class id {cls} (the class file has 0..{num_classes - 1})"
        )
    check_unit({"cx": cx, "cy": cy, "w": w, "h": h}, where)
    return [*corners(cx - w / 2, cy - h / 2, w, h, where), float(cls)]


def check_unit(values: Mapping[str, float], where: str) -> None:
    """Every normalised value must be a finite number in [0, 1]."""
    bad = {k: v for k, v in values.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)}
    if bad:
        raise BoxLabelError(f"{where}: coordinates outside [0, 1]: {bad}")


def corners(x: float, y: float, w: float, h: float, where: str) -> list[float]:
    """Top-left + size (normalised) -> corners clipped to [0, 1]. The box must have an
    area and its edges must lie in the image (within ``EDGE_TOLERANCE``, for rounding)."""
    if w <= 0 or h <= 0:
        raise BoxLabelError(f"{where}: box has no area (w {w}, h {h})")
    x1, y1, x2, y2 = x, y, x + w, y + h
    if min(x1, y1) < -EDGE_TOLERANCE or max(x2, y2) > 1 + EDGE_TOLERANCE:
        raise BoxLabelError(
            f"{where}: coordinates outside [0, 1]: box edges x {x1:.6f}..{x2:.6f}, "
            f"y {y1:.6f}..{y2:.6f}"
        )
    return [min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2)]


def read_yolo_file(path: Path, num_classes: int) -> np.ndarray:
    """One YOLO txt file -> (N, 5) normalised boxes; blank lines are allowed."""
    rows = [
        parse_yolo_line(line, path, number, num_classes)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip()
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def read_yolo_dir(
    folder: str | Path, names: Iterable[str], class_file: str | Path | None = None
) -> LabelSet:
    """``folder/NAME.txt`` for each name (a missing file: no objects, recorded in ``missing``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BoxLabelError(f"box label folder {folder} does not exist")
    class_names = read_class_names(class_file or find_class_file(folder))
    labels = LabelSet(folder.name, folder, class_names)
    for name in names:
        path = folder / f"{name}.txt"
        if path.is_file():
            labels.boxes[name] = read_yolo_file(path, len(class_names))
        else:
            labels.missing.append(name)
    return labels


def read_coco_json(path: str | Path, names: Iterable[str]) -> LabelSet:
    """COCO detection json (``images``, ``annotations`` with pixel ``bbox`` [x, y, w, h],
    ``categories``); images are matched by file-name stem. Class ids of the returned set
    are positions in the sorted category ids. An image not listed is missing."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        categories = sorted(doc["categories"], key=lambda c: c["id"])
        images = {int(im["id"]): im for im in doc["images"]}
        annotations = doc.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BoxLabelError(f"{path}: not a COCO detection file: {exc}") from None
    index = {int(c["id"]): k for k, c in enumerate(categories)}
    labels = LabelSet(path.stem, path, tuple(str(c["name"]) for c in categories))
    rows: dict[int, list[list[float]]] = {i: [] for i in images}
    for k, ann in enumerate(annotations):
        where = f"{path}: annotation {k} (id {ann.get('id')})"
        image = images.get(ann.get("image_id"))
        if image is None:
            raise BoxLabelError(f"{where}: unknown image_id {ann.get('image_id')!r}")
        if ann.get("category_id") not in index:
            raise BoxLabelError(f"{where}: unknown category_id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise BoxLabelError(f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
        try:
            w_img, h_img = float(image["width"]), float(image["height"])
            x, y, w, h = (float(v) for v in bbox)
        except (KeyError, TypeError, ValueError):
            raise BoxLabelError(f"{where}: non-numeric bbox or image size") from None
        unit = {"x": x / w_img, "y": y / h_img, "w": w / w_img, "h": h / h_img}
        check_unit(unit, where)
        box = corners(unit["x"], unit["y"], unit["w"], unit["h"], where)
        rows[int(image["id"])].append([*box, float(index[ann["category_id"]])])
    by_stem = {Path(im["file_name"]).stem: rows[i] for i, im in images.items()}
    for name in names:
        if name in by_stem:
            labels.boxes[name] = np.asarray(by_stem[name], dtype=np.float64).reshape(-1, 5)
        else:
            labels.missing.append(name)
    return labels


def resolve_source(source: str | Path) -> Path:
    """A folder holding exactly one json and no txt stands for that COCO file."""
    source = Path(source)
    if source.is_dir() and not any(source.glob("*.txt")):
        jsons = sorted(source.glob("*.json"))
        if len(jsons) == 1:
            return jsons[0]
    return source


def read_label_set(source: str | Path, names: Iterable[str]) -> LabelSet:
    """A YOLO folder or a COCO ``.json`` file (a folder holding exactly one json and no txt
    counts as that json)."""
    source = resolve_source(source)
    if source.suffix.lower() == ".json":
        if not source.is_file():
            raise BoxLabelError(f"COCO file {source} does not exist")
        return read_coco_json(source, names)
    return read_yolo_dir(source, names)


def label_set_names(source: str | Path) -> list[str]:
    """The image names a label set has labels for (YOLO: the txt stems, the class file
    left out; COCO: the image file stems), sorted. For readers that learn the names only
    as frames arrive (the streamed evaluator)."""
    source = resolve_source(source)
    if source.suffix.lower() == ".json":
        try:
            images = json.loads(source.read_text())["images"]
            return sorted({Path(im["file_name"]).stem for im in images})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BoxLabelError(f"{source}: not a COCO detection file: {exc}") from None
    if not source.is_dir():
        raise BoxLabelError(f"box label folder {source} does not exist")
    return sorted(p.stem for p in source.glob("*.txt") if p.name not in CLASS_FILES)


def parse_box_map(
    text: str | Mapping[str, str], box_classes: Sequence[str], table: ClassTable
) -> dict[int, int]:
    """``"person=person,bicycle=bike,car=car"`` -> {box class id: class-table id}. Box
    classes left out are not scored (their boxes are dropped); a name on either side
    that does not exist is an error."""
    if isinstance(text, str):
        pairs = []
        for item in (p.strip() for p in text.split(",")):
            if not item:
                continue
            src, sep, dst = item.partition("=")
            if not sep or not src.strip() or not dst.strip():
                raise ValueError(f"box map entry {item!r} must be BOX_CLASS=TABLE_CLASS")
            pairs.append((src.strip(), dst.strip()))
    else:
        pairs = list(text.items())
    mapping: dict[int, int] = {}
    for src, dst in pairs:
        if src not in box_classes:
            raise ValueError(
                f"box map: {src!r} is not a box class (box classes: {list(box_classes)})"
            )
        if dst not in table.names:
            raise ValueError(
                f"box map: {dst!r} is not a class of the {table.name} table ({list(table.names)})"
            )
        mapping[box_classes.index(src)] = table.names.index(dst)
    if not mapping:
        raise ValueError("box map is empty")
    return mapping


def map_classes(boxes: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Box-class ids -> class-table ids; boxes of unmapped classes are dropped."""
    keep = np.isin(boxes[:, 4].astype(np.int64), list(mapping))
    out = boxes[keep].copy()
    out[:, 4] = [mapping[int(c)] for c in out[:, 4]]
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of corner boxes ``a`` (N, >=4) and ``b`` (M, >=4)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    area_a = np.prod(a[:, 2:4] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:4] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def merge_label_sets(sets: Sequence[np.ndarray], iou: float = MERGE_IOU) -> np.ndarray:
    """Boxes of one image from several label sets (same class ids) as one list of objects.

    In the given order, a box is kept unless a box already kept from an *earlier* set has
    the same class and IoU > ``iou`` with it (then both are one object, the earlier box
    stands for it). Boxes within one set are never merged: two labelled objects of a set
    stay two. Deterministic: the same sets in the same order give the same boxes."""
    kept = empty_boxes()
    for boxes in sets:
        if len(kept) and len(boxes):
            same = boxes[:, None, 4] == kept[None, :, 4]
            dup = ((box_iou(boxes, kept) > iou) & same).any(axis=1)
            boxes = boxes[~dup]
        kept = np.concatenate([kept, boxes])
    return kept


def to_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised (N, 5) boxes -> pixel corners (x1, y1, x2, y2 in [0, W] x [0, H]), id kept."""
    out = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 5)
    out[:, [0, 2]] *= width
    out[:, [1, 3]] *= height
    return out
