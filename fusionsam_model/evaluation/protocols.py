"""Named scoring protocols (mfnet, fmb14, fmb15): which ids a table's mIoU averages.

Why named: the same predictions give different numbers under the conventions papers use.
MFNet papers (RTFNet onwards, and FusionSAM's Table 1) score all 9 ids including
*unlabeled*. For FMB, the dataset paper ignores id 0 (14 classes), while the released
evaluation code of MRFS (a Table 3 peer) and FusionSAM's own code average all 15 ids,
background included; a table must say which it used. Every protocol works on the raw
``matrix[label, pred]`` over **all** ids (nothing ignored), so one evaluation gives
every protocol's number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Protocol:
    """Class table it applies to, the ids whose label pixels are dropped, the ids averaged."""

    name: str
    class_table: str
    ignore_label: int | None  # label id whose pixels are not scored at all
    scored: tuple[int, ...]  # ids averaged into mIoU (nanmean over those present)
    description: str


PROTOCOLS: dict[str, Protocol] = {
    "mfnet": Protocol(
        "mfnet",
        "mfnet",
        None,
        tuple(range(9)),
        "9 ids, unlabeled scored as a class (RTFNet convention, the paper's Table 1), "
        "nanmean over classes present",
    ),
    "fmb14": Protocol(
        "fmb14",
        "fmb",
        0,
        tuple(range(1, 15)),
        "14 classes, id 0 (unlabeled) pixels ignored (FMB dataset paper), nanmean over "
        "classes present",
    ),
    "fmb15": Protocol(
        "fmb15",
        "fmb",
        None,
        tuple(range(15)),
        "all 15 ids including background averaged (MRFS's and FusionSAM's released "
        "evaluation code), nanmean over classes present",
    ),
}

DEFAULT_PROTOCOL = {"mfnet": "mfnet", "fmb": "fmb15"}  # comparable with Tables 1 and 3


def score(matrix: Any, class_names: list[str] | tuple[str, ...], protocol: str) -> dict[str, Any]:
    """mIoU and per-class IoU (fractions; None when absent / not scored) of a raw
    ``matrix[label, pred]`` under ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    p = PROTOCOLS[protocol]
    m = np.asarray(matrix, dtype=np.float64).copy()
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] <= max(p.scored):
        raise ValueError(
            f"protocol {protocol} needs a square matrix over >= {max(p.scored) + 1} ids, got {m.shape}"
        )
    if p.ignore_label is not None:
        m[p.ignore_label, :] = 0.0
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    iou = np.full(m.shape[0], np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    vals = iou[list(p.scored)]
    vals = vals[~np.isnan(vals)]
    scored = set(p.scored)
    return {
        "protocol": protocol,
        "description": p.description,
        "miou": float(vals.mean()) if vals.size else None,
        "iou": {
            n: (None if i not in scored or np.isnan(iou[i]) else float(iou[i]))
            for i, n in enumerate(class_names)
        },
    }
