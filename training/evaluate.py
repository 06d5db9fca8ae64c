"""Offline evaluation: ``python -m training.evaluate --checkpoint C --data ROOT --split test``.

The command line over ``fusionsam_model.evaluation.offline.evaluate``, which runs the
node's own inference path (``Segmenter.predict``) over a dataset split and scores it
with ``evaluation.scoring`` (one confusion matrix at the labels' native resolution). Prints a
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

from fusionsam_model.evaluation.offline import evaluate, table_columns

__all__ = ["evaluate", "format_table", "main", "save_confusion_png", "table_columns"]


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
