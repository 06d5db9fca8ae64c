"""Confusion matrix, per-class IoU and mIoU under a dataset's scoring protocol.

Why one matrix over the whole split: averaging per-image IoUs overweights small images
and classes; both MFNet and FMB papers accumulate one matrix at the label's native
resolution and average IoU over the scored classes, skipping classes that appear in
neither label nor prediction (nanmean). Matrices add, so distributed workers and the
day / night subsets are merged by summing.
"""

from __future__ import annotations

import numpy as np

from fusionsam_model.data.classes import ClassTable


class ConfusionMatrix:
    """``matrix[label, pred]`` pixel counts; ``ignore_index`` label pixels are skipped."""

    def __init__(
        self,
        class_table: ClassTable | int | None = None,
        *,
        num_classes: int | None = None,
        ignore_index: int | None = None,
        scored: tuple[int, ...] | None = None,
    ) -> None:
        if isinstance(class_table, int):
            class_table, num_classes = None, class_table
        if class_table is not None:
            self.class_table: ClassTable | None = class_table
            num_classes, ignore_index = class_table.num_classes, class_table.ignore_index
            scored = class_table.scored if scored is None else scored
            self.names = tuple(class_table.names)
        else:
            if num_classes is None or num_classes < 1:
                raise ValueError("ConfusionMatrix needs a class table or num_classes >= 1")
            self.class_table = None
            self.names = tuple(f"class_{i}" for i in range(num_classes))
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        if scored is None:
            scored = tuple(i for i in range(self.num_classes) if i != ignore_index)
        self.scored = tuple(int(i) for i in scored)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one prediction; both arrays must have the label's native shape."""
        pred, label = np.asarray(pred), np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(
                f"prediction shape {pred.shape} != label shape {label.shape}; "
                "resize the prediction to the label with nearest neighbour first"
            )
        label = label.ravel().astype(np.int64)
        pred = pred.ravel().astype(np.int64)
        if self.ignore_index is not None:
            keep = label != self.ignore_index
            label, pred = label[keep], pred[keep]
        if label.size == 0:
            return
        c = self.num_classes
        for what, ids in (("label", label), ("prediction", pred)):
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= c:
                raise ValueError(f"{what} has id {hi if hi >= c else lo} outside 0..{c - 1}")
        self.matrix += np.bincount(label * c + pred, minlength=c * c).reshape(c, c)

    def iou(self) -> np.ndarray:
        """(C,) IoU per class; NaN when a class is in neither label nor prediction, and for the ignore id."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        out = np.full(self.num_classes, np.nan)
        np.divide(tp, union, out=out, where=union > 0)
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            out[self.ignore_index] = np.nan
        return out

    def miou(self) -> float:
        """Mean IoU over the scored classes present (nanmean); NaN when none is present."""
        scores = self.iou()[list(self.scored)]
        scores = scores[~np.isnan(scores)]
        return float(scores.mean()) if scores.size else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def _check_compatible(self, other: ConfusionMatrix) -> None:
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) "
                f"into a {self.num_classes}-class one (ignore {self.ignore_index})"
            )

    def merge(self, other: ConfusionMatrix | np.ndarray) -> ConfusionMatrix:
        """Add another matrix (or a raw (C, C) count array) into this one; returns self."""
        if isinstance(other, ConfusionMatrix):
            self._check_compatible(other)
            counts = other.matrix
        else:
            counts = np.asarray(other)
            if counts.shape != self.matrix.shape:
                raise ValueError(
                    f"cannot merge counts of shape {counts.shape} into {self.matrix.shape}"
                )
        self.matrix += counts.astype(np.int64)
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.copy().merge(other)

    def copy(self) -> ConfusionMatrix:
        new = ConfusionMatrix.__new__(ConfusionMatrix)
        new.__dict__.update(self.__dict__)
        new.matrix = self.matrix.copy()
        return new

    def reset(self) -> None:
        self.matrix[:] = 0

    def to_dict(self) -> dict:
        """JSON-ready summary; NaN becomes None."""

        def clean(v: float) -> float | None:
            return None if np.isnan(v) else float(v)

        iou = self.iou()
        return {
            "protocol": self.class_table.protocol if self.class_table is not None else "",
            "miou": clean(self.miou()),
            "pixel_accuracy": clean(self.pixel_accuracy()),
            "iou": {name: clean(v) for name, v in zip(self.names, iou, strict=True)},
            "scored": [self.names[i] for i in self.scored],
            "ignore_index": self.ignore_index,
            "pixels": int(self.matrix.sum()),
            "matrix": self.matrix.tolist(),
        }
