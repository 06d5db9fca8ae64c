"""Split scores: the confusion matrices of a run (overall, day, night) and one summary schema.

Why one module: the offline evaluation, the streaming evaluator of a running node and the
trainer's validation all report mIoU; they share this accumulator and ``summary`` so their
numbers and keys are the same by construction (the streaming mIoU equals the offline one
exactly when no frame is dropped). Each split keeps the raw ``matrix[label, pred]`` over
**all** ids, so one pass gives the class table's own score and every named protocol.

A summary is ``{"pairs": n, "miou": m, "iou": {class: iou}, "protocols": {name: miou}}``,
IoU as fractions and None where a class is absent (standard JSON, no NaN).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.data.conditions import CONDITIONS, condition_of
from fusionsam_model.evaluation.metrics import ConfusionMatrix
from fusionsam_model.evaluation.protocols import PROTOCOLS, score

SPLITS = ("overall", *CONDITIONS)


def json_number(x: float | None) -> float | None:
    """NaN / inf (class absent, nothing measured) become None so the JSON stays standard."""
    return None if x is None or not math.isfinite(x) else float(x)


def table_matrix(raw: np.ndarray, table: ClassTable) -> ConfusionMatrix:
    """The class table's own matrix (its ignore id's label pixels dropped) from a raw one."""
    counts = np.asarray(raw, dtype=np.int64).copy()
    if table.ignore_index is not None and 0 <= table.ignore_index < table.num_classes:
        counts[table.ignore_index, :] = 0
    return ConfusionMatrix(table).merge(counts)


def protocol_mious(raw: np.ndarray, table: ClassTable) -> dict[str, float | None]:
    """mIoU of the raw matrix under each named protocol of this class table."""
    return {
        name: score(raw, table.names, name)["miou"]
        for name, p in PROTOCOLS.items()
        if p.class_table == table.name
    }


def summary(raw: np.ndarray, table: ClassTable, pairs: int) -> dict[str, Any]:
    """The one summary schema: pairs, mIoU, per-class IoU, the named protocols' mIoU."""
    cm = table_matrix(raw, table)
    iou = cm.iou()
    return {
        "pairs": int(pairs),
        "miou": json_number(cm.miou()),
        "iou": {n: json_number(iou[i]) for i, n in enumerate(table.names)},
        "protocols": protocol_mious(raw, table),
    }


class SplitScores:
    """Raw all-ids confusion matrices and pair counts of the whole run and of its day / night parts."""

    def __init__(self, table: ClassTable) -> None:
        self.table = table
        self.raw = {s: ConfusionMatrix(num_classes=table.num_classes) for s in SPLITS}
        self.pairs = dict.fromkeys(SPLITS, 0)

    def add(self, pred: np.ndarray, label: np.ndarray, name: str | None = None) -> None:
        """Score one pair overall and, when its name gives one, in its condition."""
        self.add_overall(pred, label)
        if name is not None:
            self.add_condition(name, pred, label)

    def add_overall(self, pred: np.ndarray, label: np.ndarray) -> None:
        self.raw["overall"].update(pred, label)
        self.pairs["overall"] += 1

    def add_condition(self, name: str, pred: np.ndarray, label: np.ndarray) -> None:
        """For a pair already scored overall whose name arrived later (streaming)."""
        condition = condition_of(name)
        if condition is not None:
            self.raw[condition].update(pred, label)
            self.pairs[condition] += 1

    def matrix(self, split: str = "overall") -> ConfusionMatrix:
        """The class table's matrix of one split (rows = label, cols = prediction)."""
        return table_matrix(self.raw[split].matrix, self.table)

    def summaries(self) -> dict[str, dict[str, Any]]:
        """``overall`` always; ``day`` / ``night`` when some pair had that condition."""
        return {
            s: summary(self.raw[s].matrix, self.table, self.pairs[s])
            for s in SPLITS
            if s == "overall" or self.pairs[s]
        }
