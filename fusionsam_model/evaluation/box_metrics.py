"""Box-level scores of a semantic mask: per-class recall, precision and F1 against boxes.

Why: real RGB-thermal data sets mostly carry boxes, not masks. The definition (issue 23),
per class c of the class table:

* **recall** = share of c's boxes in which at least 15 % of the box's pixels are c;
* **precision** = share of the pixels predicted c that lie inside some box of class c
  grown by 10 % of its width (height) + 2 px on each side;
* **F1** = 2 P R / (P + R).

Counts are summed over frames before dividing (boxes hit / boxes, pixels inside /
predicted pixels), for all frames and for day / night (MFNet-style names); the mean F1 is
over the evaluated classes (those the box classes map to; car, person, bike for msrs_dev)
that have boxes. A box's pixels are those whose centre lies in
it (``pixel_rect``), at least one; boxes are clipped to the image.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.data.conditions import CONDITIONS, condition_of

EVALUATED_CLASSES = ("car", "person", "bike")
RECALL_COVER = 0.15  # a box is found when this share of its pixels carries its class
GROW_FRACTION = 0.10  # precision: boxes grown by this share of their size ...
GROW_PIXELS = 2.0  # ... plus this many pixels, on each side
SPLITS = ("all", *CONDITIONS)
REFERENCE_PERCENTILE = 98.0  # "the hottest 2 % of the thermal image is a person"


def pixel_rect(
    box: Sequence[float], height: int, width: int, grow: bool = False
) -> tuple[int, int, int, int]:
    """Pixel corners ``(x1, y1, x2, y2)``, half-open, of a box ``x1 y1 x2 y2`` in pixels:
    the pixels whose centre lies inside (at least one), clipped to the image; ``grow``
    first widens each side by ``GROW_FRACTION`` of the size + ``GROW_PIXELS``."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    if grow:
        dx = GROW_FRACTION * (x2 - x1) + GROW_PIXELS
        dy = GROW_FRACTION * (y2 - y1) + GROW_PIXELS
        x1, y1, x2, y2 = x1 - dx, y1 - dy, x2 + dx, y2 + dy
    c0, c1 = _span(x1, x2, width)
    r0, r1 = _span(y1, y2, height)
    return c0, r0, c1, r1


def _span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Half-open range of the pixels i whose centre i + 0.5 lies in [lo, hi), at least
    one, inside [0, size)."""
    first = min(max(math.ceil(lo - 0.5), 0), size - 1)
    return first, min(max(math.ceil(hi - 0.5), first + 1), size)


def frame_counts(pred: np.ndarray, boxes: np.ndarray, class_ids: Iterable[int]) -> np.ndarray:
    """(len(class_ids), 4) int64 counts of one frame: boxes, boxes hit, predicted pixels,
    predicted pixels inside a grown box of the class. ``boxes``: (N, 5) pixel xyxy + id."""
    height, width = pred.shape
    ids = list(class_ids)
    counts = np.zeros((len(ids), 4), dtype=np.int64)
    for k, c in enumerate(ids):
        is_c = pred == c
        inside = np.zeros_like(is_c)
        for box in boxes[boxes[:, 4] == c]:
            x1, y1, x2, y2 = pixel_rect(box, height, width)
            hit = np.count_nonzero(is_c[y1:y2, x1:x2]) >= RECALL_COVER * (x2 - x1) * (y2 - y1)
            counts[k, :2] += (1, int(hit))
            gx1, gy1, gx2, gy2 = pixel_rect(box, height, width, grow=True)
            inside[gy1:gy2, gx1:gx2] = True
        counts[k, 2] = np.count_nonzero(is_c)
        counts[k, 3] = np.count_nonzero(is_c & inside)
    return counts


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def f1_score(recall: float | None, precision: float | None) -> float | None:
    """None without boxes (recall undefined); 0 when boxes exist but nothing is predicted
    (precision undefined, recall 0) or when both are 0."""
    if recall is None:
        return None
    if precision is None or recall + precision == 0:
        return 0.0
    return 2 * recall * precision / (recall + precision)


class BoxScores:
    """Accumulates ``frame_counts`` over frames for all / day / night and summarises."""

    def __init__(self, table: ClassTable, classes: Sequence[str] = EVALUATED_CLASSES) -> None:
        self.table = table
        self.classes = tuple(classes)
        self.ids = [table.names.index(c) for c in self.classes]
        self.counts = {s: np.zeros((len(self.ids), 4), dtype=np.int64) for s in SPLITS}
        self.frames = dict.fromkeys(SPLITS, 0)

    def add(self, name: str, pred: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Score one frame; returns its counts (for per-frame reports)."""
        counts = frame_counts(pred, boxes, self.ids)
        for split in ("all", condition_of(name)):
            if split is not None:
                self.counts[split] += counts
                self.frames[split] += 1
        return counts

    def summary(self, split: str = "all") -> dict[str, Any]:
        """``{"frames", "classes": {name: {boxes, hit, recall, pred_pixels, inside,
        precision, f1}}, "mean_f1", "mean_over"}``."""
        classes = {}
        for name, (boxes, hit, pred, inside) in zip(
            self.classes, self.counts[split].tolist(), strict=True
        ):
            recall, precision = ratio(hit, boxes), ratio(inside, pred)
            classes[name] = {
                "boxes": boxes,
                "hit": hit,
                "recall": recall,
                "pred_pixels": pred,
                "inside": inside,
                "precision": precision,
                "f1": f1_score(recall, precision),
            }
        scored = [n for n, c in classes.items() if c["f1"] is not None]
        mean = sum(classes[n]["f1"] for n in scored) / len(scored) if scored else None
        return {
            "frames": self.frames[split],
            "classes": classes,
            "mean_f1": mean,
            "mean_over": scored,
        }

    def summaries(self) -> dict[str, dict[str, Any]]:
        """all, and day / night when frames of that condition were scored."""
        return {s: self.summary(s) for s in SPLITS if s == "all" or self.frames[s]}


def hottest_person(thermal: np.ndarray, table: ClassTable) -> np.ndarray:
    """The reference rule: pixels >= the frame's 98th thermal percentile are person."""
    hot = thermal >= np.percentile(thermal, REFERENCE_PERCENTILE)
    return np.where(hot, table.names.index("person"), 0).astype(np.uint8)


# (rgb, thermal) -> class-id mask of the frame's size
Variant = Callable[[np.ndarray, np.ndarray], np.ndarray]


def model_variants(segmenter: Any, ablations: bool = True, reference: bool = True) -> dict:
    """The model, its input ablations and the trivial reference, on the same frames."""

    def run(rgb: np.ndarray, thermal: np.ndarray) -> np.ndarray:
        return segmenter.predict(rgb, thermal, return_fused=False).labels

    variants: dict[str, Variant] = {"model": run}
    if ablations:
        variants["thermal zeroed"] = lambda rgb, t: run(rgb, np.zeros_like(t))
        variants["RGB zeroed"] = lambda rgb, t: run(np.zeros_like(rgb), t)
    if reference:
        variants["hottest 2% = person"] = lambda rgb, t: hottest_person(t, segmenter.class_table)
    return variants


def evaluate_boxes(
    dataset: Any,
    variants: dict[str, Variant],
    table: ClassTable,
    progress: bool = False,
) -> dict[str, Any]:
    """Score each variant on every frame of ``dataset`` (``[i] -> BoxSample``); returns a
    JSON-ready dict: ``variants`` {name: summaries}, ``frames`` {name: per-frame counts of
    the first variant}, ``missing_box_files``, ``frames_without_box_file``."""
    labels = dataset.labels
    scores = {v: BoxScores(table, labels.classes) for v in variants}
    per_frame: dict[str, Any] = {}
    indices: Iterable[int] = range(len(dataset))
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="box eval", unit="frame", dynamic_ncols=True, file=sys.stderr)
    first = next(iter(variants))
    for i in indices:
        sample = dataset[i]
        for v, predict in variants.items():
            pred = predict(sample.rgb, sample.thermal)
            if pred.shape != sample.thermal.shape:
                raise ValueError(f"{v}: mask {pred.shape} vs frame {sample.thermal.shape}")
            counts = scores[v].add(sample.name, pred, sample.boxes)
            if v == first:
                per_frame[sample.name] = counts.tolist()
    return {
        "class_table": table.name,
        "classes": list(labels.classes),
        "definition": __doc__.split("\n\n", 1)[1].strip(),
        "label_sets": list(labels.label_sets),
        "missing_box_files": {k: len(v) for k, v in labels.missing.items()},
        "frames_without_box_file": labels.frames_without_file,
        "variants": {v: s.summaries() for v, s in scores.items()},
        "frame_counts_columns": ["boxes", "hit", "pred_pixels", "inside"],
        "frame_counts": per_frame,
        "names": list(dataset.names),
    }


def format_box_table(summaries: dict[str, dict[str, Any]]) -> str:
    """One variant: a row per split and class with boxes, recall, precision, F1."""

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [f"{'frames':<11} {'class':<8} {'boxes':>6} {'recall':>7} {'precision':>9} {'F1':>6}"]
    for split, s in summaries.items():
        label = f"{split} ({s['frames']})"
        for name, c in s["classes"].items():
            lines.append(
                f"{label:<11} {name:<8} {c['boxes']:>6} {num(c['recall']):>7} "
                f"{num(c['precision']):>9} {num(c['f1']):>6}"
            )
            label = ""
        lines.append(f"{'':<11} {'mean F1':<8} {'':>6} {'':>7} {'':>9} {num(s['mean_f1']):>6}")
    return "\n".join(lines)


def format_comparison(variants: dict[str, dict[str, dict[str, Any]]]) -> str:
    """F1 per class and the mean, all / day / night, for every variant side by side."""
    splits = [s for s in SPLITS if all(s in v for v in variants.values())]
    classes = list(next(iter(variants.values()))["all"]["classes"])
    names = (*classes, "mean")
    width = max(len(v) for v in variants) + 1
    block = 7 * len(names)
    top = f"{'F1':<{width}}" + "".join(f"  {s:<{block - 2}}" for s in splits)
    lines = [top.rstrip(), " " * width + "".join(f"{c:>7}" for _ in splits for c in names)]
    for name, summaries in variants.items():
        cells = []
        for s in splits:
            cls = summaries[s]["classes"]
            cells += [cls[c]["f1"] for c in classes] + [summaries[s]["mean_f1"]]
        text = "".join(f"{'-' if x is None else f'{x:.3f}':>7}" for x in cells)
        lines.append(f"{name:<{width}}{text}")
    return "\n".join(lines)
