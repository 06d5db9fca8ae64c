"""Pseudo-labels for self-training on real frames: a checkpoint's confident pixels.

Why: real frames reach the segmentation only as box bags (msrs_dev's training frames) and
through label-free fusion terms; most of what the model gets wrong on real frames is false
positives on real backgrounds (day person precision 0.35, bike 0.04), and the 221 RoadScene
pairs have no labels at all. Self-training (Lee 2013; Zou et al. 2018) turns the model's
own confident predictions on real frames into dense targets, background included. Kept
conservative:

* only the classes real frames can speak for: ``unlabeled`` (background), car, person,
  bike; every other class (trained on synthetic scenes only) is void (255);
* a pixel is labelled only when its top probability is at least ``min_prob``;
* the boxes overrule the model: a boxed class (car, person, bike) predicted outside every
  grown box of that class is void, and background inside a grown box is void. On frames
  without boxes (RoadScene) no box vouches for an object, so only background is labelled:
  the teacher's confident cars there include road markings and house fronts.

Output: an MFNet-layout dataset (``images/NAME.png`` RGBA, thermal in alpha;
``labels/NAME.png``; ``train.txt``) that ``data.pseudo`` mixes into training. msrs_dev's
held-out names are refused: they score the model and are never trained on.

    python -m training.pseudo_labels --out data/pseudo_real \\
        --msrs ../shared/data/msrs_dev --roadscene ../shared/data/roadscene
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fusionsam_model.data.box_datasets import BoxDataset, select_names
from fusionsam_model.data.classes import ClassTable
from fusionsam_model.data.datasets import VOID_LABEL, write_mfnet_sample
from fusionsam_model.data.unlabelled import UnlabelledPairs
from fusionsam_model.evaluation.box_metrics import EVALUATED_CLASSES, pixel_rect
from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT, Segmenter

REAL_CLASSES = ("unlabeled", *EVALUATED_CLASSES)  # what real frames can speak for: boxed + bg
DEFAULT_MIN_PROB = 0.9


def pseudo_label(
    probs: np.ndarray,
    table: ClassTable,
    min_prob: float = DEFAULT_MIN_PROB,
    boxes: np.ndarray | None = None,
    boxed_classes: Iterable[int] = (),
) -> np.ndarray:
    """(C, H, W) class probabilities -> (H, W) uint8 ids, VOID_LABEL where not confident,
    not a real-frame class, or against the boxes ((N, 5) pixel xyxy + id; None: a frame
    without boxes, whose boxed classes are all void)."""
    label = probs.argmax(0).astype(np.uint8)
    keep = probs.max(0) >= min_prob
    keep &= np.isin(label, [table.names.index(n) for n in REAL_CLASSES])
    if boxes is None:
        keep &= ~np.isin(label, list(boxed_classes))
    else:
        height, width = label.shape
        in_any = np.zeros_like(keep)
        for c in boxed_classes:
            in_c = np.zeros_like(keep)
            for box in boxes[boxes[:, 4] == c]:
                x1, y1, x2, y2 = pixel_rect(box, height, width, grow=True)
                in_c[y1:y2, x1:x2] = True
            keep &= ~((label == c) & ~in_c)
            in_any |= in_c
        keep &= ~((label == table.names.index("unlabeled")) & in_any)
    label[~keep] = VOID_LABEL
    return label


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--checkpoint", default=str(BUNDLED_CHECKPOINT), help="the teacher")
    p.add_argument("--msrs", help="msrs_dev folder: its training names, boxes filter the labels")
    p.add_argument("--roadscene", help="folder with visible/ and infrared/ pairs")
    p.add_argument("--min-prob", type=float, default=DEFAULT_MIN_PROB)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if not (args.msrs or args.roadscene):
        p.error("give --msrs and/or --roadscene")
    import torch

    torch.set_num_threads(args.threads)
    seg = Segmenter.from_checkpoint(Path(args.checkpoint), device="cpu")
    table = seg.class_table
    out = Path(args.out)
    for sub in ("images", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names, coverage = [], []
    sources: list[tuple[str, object, bool]] = []
    if args.msrs:
        boxed = BoxDataset(args.msrs, select_names(args.msrs, "train"))
        sources.append(("msrs_", boxed, True))
    if args.roadscene:
        sources.append(("rs_", UnlabelledPairs(args.roadscene), False))
    boxed_ids = [table.names.index(n) for n in EVALUATED_CLASSES]
    for prefix, dataset, has_boxes in sources:
        for i in tqdm(range(len(dataset)), desc=f"pseudo-labels {prefix}", unit="frame"):
            sample = dataset[i]
            probs = seg.predict(sample.rgb, sample.thermal, True, False).probs
            boxes = sample.boxes if has_boxes else None
            label = pseudo_label(probs, table, args.min_prob, boxes, boxed_ids)
            name = prefix + sample.name
            write_mfnet_sample(out, name, sample.rgb, sample.thermal, label)
            names.append(name)
            coverage.append(float(np.mean(label != VOID_LABEL)))
    (out / "train.txt").write_text("\n".join(names) + "\n")
    meta = {
        "teacher": str(args.checkpoint),
        "min_prob": args.min_prob,
        "classes": list(REAL_CLASSES),
        "frames": len(names),
        "labelled_share": float(np.mean(coverage)),
    }
    (out / "pseudo_labels.json").write_text(json.dumps(meta, indent=1))
    print(
        f"wrote {len(names)} pseudo-labelled frames to {out} "
        f"({100 * meta['labelled_share']:.1f} % of pixels labelled, the rest void)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
