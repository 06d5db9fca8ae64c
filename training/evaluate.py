"""Offline evaluation: ``python -m training.evaluate --checkpoint C --data ROOT --split test``.

Runs the node's own inference path (``Segmenter.predict``) over a dataset split and
accumulates one ``ConfusionMatrix`` at the labels' native resolution. Prints a
per-class IoU table laid out like the paper's tables (MFNet / FMB class columns +
mIoU), the scoring protocol, day/night results for MFNet-style names (…D / …N),
throughput, and optionally writes a confusion-matrix PNG and a JSON report.
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fusionsam_model.data.classes import ClassTable
from fusionsam_model.evaluation.fusion_metrics import FusionMeter, compute_no_reference
from fusionsam_model.evaluation.metrics import ConfusionMatrix
from fusionsam_model.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, score


def table_columns(class_table: ClassTable) -> list[int]:
    """Class ids shown as columns: every scored class (MFNet's Table 1 prints Unlabeled too)."""
    return list(class_table.scored)


def day_night_of(name: str) -> str | None:
    """MFNet names end in D (day) or N (night); other names have no condition."""
    tail = Path(name).stem[-1:].upper()
    return {"D": "day", "N": "night"}.get(tail)


def _summary(cm: ConfusionMatrix, class_table: ClassTable, count: int) -> dict[str, Any]:
    iou = cm.iou()
    return {
        "pairs": count,
        "miou": _num(cm.miou()),
        "iou": {class_table.names[i]: _num(iou[i]) for i in range(class_table.num_classes)},
    }


def _num(x: float) -> float | None:
    """NaN (class absent) becomes None so the JSON stays standard."""
    return None if x is None or not np.isfinite(x) else float(x)


def evaluate(
    segmenter,
    dataset,
    limit: int | None = None,
    progress: bool = False,
    warmup: int = 1,
) -> dict[str, Any]:
    """Score ``segmenter`` on ``dataset`` (len(), [i] -> Sample); returns a JSON-ready dict.

    Keys: ``protocol``, ``class_table``, ``overall`` / ``day`` / ``night`` (each with
    ``miou``, per-class ``iou``, ``pairs``; day/night only for MFNet-style names),
    ``confusion_matrix`` (rows = label, cols = prediction), ``throughput_pairs_per_s``
    (Segmenter.predict calls only, after ``warmup`` untimed pairs are excluded),
    ``mean_timings_ms`` per stage, ``names`` of the scored pairs.
    """
    table = segmenter.class_table
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n == 0:
        raise ValueError("evaluate: the dataset split is empty")
    overall = ConfusionMatrix(table)
    all_ids = ConfusionMatrix(num_classes=table.num_classes)  # nothing ignored: any protocol
    parts = {"day": ConfusionMatrix(table), "night": ConfusionMatrix(table)}
    counts = {"day": 0, "night": 0}
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
        overall.update(pred.labels, sample.label)
        all_ids.update(pred.labels, sample.label)
        fusion.update(compute_no_reference(pred.fused))
        cond = day_night_of(sample.name)
        if cond is not None:
            parts[cond].update(pred.labels, sample.label)
            counts[cond] += 1
        names.append(sample.name)
    result: dict[str, Any] = {
        "class_table": table.name,
        "protocol": table.protocol,
        "class_names": list(table.names),
        "columns": [table.names[i] for i in table_columns(table)],
        "overall": _summary(overall, table, n),
        "confusion_matrix": overall.matrix.tolist(),
        "confusion_matrix_all_ids": all_ids.matrix.tolist(),
        # mIoU of the same predictions under each named protocol of this class table
        "protocols": {
            name: score(all_ids.matrix, table.names, name)["miou"]
            for name, p in PROTOCOLS.items()
            if p.class_table == table.name
        },
        "default_protocol": DEFAULT_PROTOCOL.get(table.name),
        "throughput_pairs_per_s": timed_n / timed_s if timed_s > 0 else None,
        "mean_timings_ms": {k: v / max(timed_n, 1) for k, v in stage_ms.items()},
        "backend": getattr(segmenter, "backend_name", "torch"),
        "fusion_metrics": fusion.means(),
        "names": names,
    }
    for cond in ("day", "night"):
        if counts[cond]:
            result[cond] = _summary(parts[cond], table, counts[cond])
    return result


def format_table(result: dict[str, Any]) -> str:
    """Paper-style table: one row per condition, IoU in percent, mIoU last."""
    cols = result["columns"]
    width = max(8, *(len(c) for c in cols))
    header = f"{'':<8}" + "".join(f"{c:>{width + 1}}" for c in cols) + f"{'mIoU':>{width + 1}}"
    lines = [header]
    for cond in ("overall", "day", "night"):
        if cond not in result:
            continue
        r = result[cond]
        cells = [r["iou"][c] for c in cols] + [r["miou"]]
        text = "".join(f"{'-' if v is None else f'{100 * v:.1f}':>{width + 1}}" for v in cells)
        lines.append(f"{cond:<8}{text}   ({r['pairs']} pairs)")
    return "\n".join(lines)


def save_confusion_png(result: dict[str, Any], path: Path) -> None:
    """Row-normalised confusion matrix (rows = label) as a PNG, drawn headless (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(result["confusion_matrix"], dtype=np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    names = result["class_names"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(names), 1.0 + 0.55 * len(names)))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("label")
    for r in range(len(names)):
        for c in range(len(names)):
            if norm[r, c] >= 0.005:
                color = "white" if norm[r, c] > 0.5 else "black"
                ax.text(
                    c, r, f"{norm[r, c]:.2f}", ha="center", va="center", fontsize=7, color=color
                )
    ax.set_title(
        f"{result['class_table']} confusion (row-normalised), mIoU {100 * (result['overall']['miou'] or 0):.1f}"
    )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--checkpoint", default=None, help="project checkpoint (default: the bundled tiny model)"
    )
    p.add_argument("--data", required=True, help="dataset root (MFNet or FMB layout)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--layout", default="auto", help="dataset layout: auto | mfnet | fmb")
    p.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--backend", default="torch")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    p.add_argument("--out", default=None, help="folder for results.json and confusion.png")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fusionsam_model.data.datasets import DatasetError, open_dataset
    from fusionsam_model.runtime.checkpoint import CheckpointError
    from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT, Segmenter

    checkpoint = Path(args.checkpoint) if args.checkpoint else BUNDLED_CHECKPOINT
    try:  # bad input is a message and exit 2, not a traceback
        dataset = open_dataset(args.data, args.split, layout=args.layout)
        segmenter = Segmenter.from_checkpoint(
            checkpoint, device=args.device, precision=args.precision, backend=args.backend
        )
    except (CheckpointError, DatasetError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    if dataset.class_table.name != segmenter.class_table.name:
        raise SystemExit(
            f"evaluate: checkpoint {checkpoint} predicts the '{segmenter.class_table.name}' classes "
            f"but {args.data} is a '{dataset.class_table.name}' dataset"
        )
    t0 = time.perf_counter()
    result = evaluate(
        segmenter, dataset, limit=args.limit, progress=not (args.json or args.no_progress)
    )
    result.update(
        checkpoint=str(checkpoint),
        data=str(args.data),
        split=args.split,
        wall_s=time.perf_counter() - t0,
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_confusion_png(result, out / "confusion.png")
        (out / "results.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"checkpoint: {checkpoint}")
    print(f"data: {args.data}  split: {args.split}  pairs: {result['overall']['pairs']}")
    print(f"protocol: {result['protocol']}")
    print(format_table(result))
    if result["protocols"]:
        named = ", ".join(
            f"{k} {'-' if v is None else f'{100 * v:.2f}'}" for k, v in result["protocols"].items()
        )
        print(
            f"mIoU by protocol: {named} (comparable with the paper: {result['default_protocol']})"
        )
    print(
        "fused image (no-reference metrics, mean): "
        + ", ".join(f"{k} {v:.3g}" for k, v in result["fusion_metrics"].items())
    )
    tp = result["throughput_pairs_per_s"]
    print(
        f"throughput: {tp:.2f} pairs/s ({result['backend']}, {args.device}, {args.precision})"
        if tp
        else ""
    )
    if args.out:
        print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'confusion.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
