"""Offline evaluation of a ``Segmenter`` over a dataset split (what ``training/evaluate.py`` runs).

Why here and not in ``training``: the streaming demo re-scores its frames with it, and the
ROS package must not need the trainer. Scores come from ``evaluation.scoring`` so the
keys equal the streaming evaluator's and the trainer's validation.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.evaluation.fusion_metrics import FusionMeter, compute_no_reference
from fusionsam_model.evaluation.protocols import DEFAULT_PROTOCOL
from fusionsam_model.evaluation.scoring import SplitScores


def table_columns(class_table: ClassTable) -> list[int]:
    """Class ids shown as columns: every scored class (MFNet's Table 1 prints Unlabeled too)."""
    return list(class_table.scored)


def evaluate(
    segmenter,
    dataset,
    limit: int | None = None,
    progress: bool = False,
    warmup: int = 1,
) -> dict[str, Any]:
    """Score ``segmenter`` on ``dataset`` (len(), [i] -> Sample); returns a JSON-ready dict.

    Keys: ``protocol``, ``class_table``, ``overall`` / ``day`` / ``night`` (each a
    ``scoring.summary``: ``pairs``, ``miou``, per-class ``iou``, ``protocols``; day/night
    only for MFNet-style names),
    ``confusion_matrix`` (rows = label, cols = prediction), ``throughput_pairs_per_s``
    (Segmenter.predict calls only, after ``warmup`` untimed pairs are excluded),
    ``mean_timings_ms`` per stage, ``names`` of the scored pairs.
    """
    table = segmenter.class_table
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n == 0:
        raise ValueError("evaluate: the dataset split is empty")
    scores = SplitScores(table)
    timed_s, timed_n = 0.0, 0
    fusion = FusionMeter()  # fused-image-only metrics (VIFB definitions) of every pair
    stage_ms: dict[str, float] = {}
    names = []
    indices = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="evaluate", unit="pair", dynamic_ncols=True, file=sys.stderr)
    for i in indices:
        sample = dataset[i]
        t0 = time.perf_counter()
        pred = segmenter.predict(sample.rgb, sample.thermal)
        dt = time.perf_counter() - t0
        if i >= warmup or n <= warmup:
            timed_s += dt
            timed_n += 1
            for k, v in pred.timings.items():
                stage_ms[k] = stage_ms.get(k, 0.0) + float(v)
        if pred.labels.shape != sample.label.shape:
            raise ValueError(
                f"prediction {pred.labels.shape} and label {sample.label.shape} differ for {sample.name}"
            )
        scores.add(pred.labels, sample.label, sample.name)
        fusion.update(compute_no_reference(pred.fused))
        names.append(sample.name)
    summaries = scores.summaries()
    result: dict[str, Any] = {
        "class_table": table.name,
        "protocol": table.protocol,
        "class_names": list(table.names),
        "columns": [table.names[i] for i in table_columns(table)],
        **summaries,  # overall, and day / night for MFNet-style names
        "confusion_matrix": scores.matrix().matrix.tolist(),
        "confusion_matrix_all_ids": scores.raw["overall"].matrix.tolist(),
        # mIoU of the same predictions under each named protocol of this class table
        "protocols": summaries["overall"]["protocols"],
        "default_protocol": DEFAULT_PROTOCOL.get(table.name),
        "throughput_pairs_per_s": timed_n / timed_s if timed_s > 0 else None,
        "mean_timings_ms": {k: v / max(timed_n, 1) for k, v in stage_ms.items()},
        "backend": getattr(segmenter, "backend_name", "torch"),
        "fusion_metrics": fusion.means(),
        "names": names,
    }
    return result
