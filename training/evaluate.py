"""Offline evaluation: ``python -m training.evaluate --checkpoint C --data ROOT --split test``.

The command line over ``fusionsam_model.evaluation.offline.evaluate``, which runs the
node's own inference path (``Segmenter.predict``) over a dataset split and scores it
with ``evaluation.scoring`` (one confusion matrix at the labels' native resolution). Prints a
per-class IoU table laid out like the paper's tables (MFNet / FMB class columns +
mIoU), the scoring protocol, day/night results for MFNet-style names (…D / …N),
throughput, and optionally writes a confusion-matrix PNG and a JSON report.

With ``--boxes DIR [DIR ...]`` it scores box labels instead (``docs/box_evaluation.md``):
frames from a visible / infrared folder pair (``--images-root``, msrs_dev layout), per-class
box recall, precision and F1 (``evaluation.box_metrics``), all / day / night, and on the
same frames the input ablations (thermal zeroed, RGB zeroed) and the reference rule
"the hottest 2 % of the thermal image is a person".
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

from fusionsam_model.data.box_datasets import MSRS_BOX_MAP
from fusionsam_model.evaluation.offline import evaluate, table_columns
from fusionsam_model.runtime.registration import HOMOGRAPHY_HELP, homography_argument

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
    p.add_argument("--data", default=None, help="dataset root (MFNet or FMB layout)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--layout", default="auto", help="dataset layout: auto | mfnet | fmb")
    p.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--backend", default="torch")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    p.add_argument("--out", default=None, help="folder for results.json and confusion.png")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch / OpenCV CPU threads")
    p.add_argument("--thermal-homography", type=homography_argument, help=HOMOGRAPHY_HELP)
    box = p.add_argument_group("box-level evaluation (instead of --data)")
    box.add_argument(
        "--boxes",
        nargs="+",
        default=None,
        metavar="DIR",
        help="label sets: YOLO txt folders (class cx cy w h, classes.txt here or one up) or "
        "COCO json files; several are merged (same class, IoU > 0.5: one object)",
    )
    box.add_argument(
        "--box-map",
        default=MSRS_BOX_MAP,
        help=f"box class = class-table class, comma-separated (default {MSRS_BOX_MAP})",
    )
    box.add_argument(
        "--images-root", default=None, help="folder with the visible / infrared subfolders"
    )
    box.add_argument("--visible", default="vi", help="visible subfolder (default vi)")
    box.add_argument("--infrared", default="ir", help="infrared subfolder (default ir)")
    box.add_argument(
        "--names",
        default="all",
        help="frames: all | train | holdout (by name range, see msrs_dev_split) | a file of names",
    )
    box.add_argument("--no-ablations", action="store_true", help="skip thermal / RGB zeroed")
    box.add_argument("--no-reference", action="store_true", help="skip the hottest-2%% rule")
    return p


def run_boxes(args: argparse.Namespace, segmenter, checkpoint: Path) -> int:
    """``--boxes``: box-level scores of the model, its input ablations and the reference."""
    from fusionsam_model.data.box_datasets import BoxDataset, select_names
    from fusionsam_model.data.datasets import DatasetError
    from fusionsam_model.evaluation.box_metrics import (
        evaluate_boxes,
        format_box_table,
        format_comparison,
        model_variants,
    )

    root = Path(args.images_root)
    try:  # bad labels or names are a message naming the file and exit 2
        names = select_names(root, args.names, args.visible)[: args.limit]
        dataset = BoxDataset(
            root,
            names,
            args.boxes,
            args.box_map,
            segmenter.class_table,
            args.visible,
            args.infrared,
        )
    except (DatasetError, ValueError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    variants = model_variants(segmenter, not args.no_ablations, not args.no_reference)
    t0 = time.perf_counter()
    result = evaluate_boxes(
        dataset, variants, segmenter.class_table, progress=not (args.json or args.no_progress)
    )
    result.update(
        checkpoint=str(checkpoint),
        images_root=str(root),
        boxes=list(args.boxes),
        box_map=args.box_map,
        names_selection=args.names,
        wall_s=time.perf_counter() - t0,
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "box_results.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    model = result["variants"]["model"]
    split = ", ".join(f"{model[s]['frames']} {s}" for s in ("day", "night") if s in model)
    missing = ", ".join(f"{k} {v}" for k, v in result["missing_box_files"].items())
    print(f"checkpoint: {checkpoint}")
    print(
        f"frames: {model['all']['frames']} ({split}) from {root}, names: {args.names}; "
        f"label sets merged: {', '.join(result['label_sets'])}"
    )
    print(
        f"missing box files (= no objects): {missing}; frames with no box file in any set: "
        f"{len(result['frames_without_box_file'])}"
    )
    print("model (RGB + thermal), box recall / precision / F1:")
    print(format_box_table(model))
    print(format_comparison(result["variants"]))
    if args.out:
        print(f"wrote {Path(args.out) / 'box_results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.data is None) == (args.boxes is None):
        parser.error("give either --data (mIoU) or --boxes (box-level evaluation)")
    if args.boxes is not None and args.images_root is None:
        parser.error("--boxes needs --images-root (the folder with vi/ and ir/)")
    from fusionsam_model.data.datasets import DatasetError, open_dataset
    from fusionsam_model.runtime.checkpoint import CheckpointError
    from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT, Segmenter
    from fusionsam_model.runtime.threads import set_torch_threads

    set_torch_threads(args.threads)  # torch and OpenCV; None keeps their defaults
    checkpoint = Path(args.checkpoint) if args.checkpoint else BUNDLED_CHECKPOINT
    try:  # bad input is a message and exit 2, not a traceback
        dataset = None
        if args.boxes is None:
            dataset = open_dataset(args.data, args.split, layout=args.layout)
        segmenter = Segmenter.from_checkpoint(
            checkpoint,
            device=args.device,
            precision=args.precision,
            backend=args.backend,
            thermal_homography=args.thermal_homography,
        )
    except (CheckpointError, DatasetError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    if dataset is None:
        return run_boxes(args, segmenter, checkpoint)
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
