"""How the fused image's composition rules were chosen, on RoadScene (never on VIFB).

Three rules of ``Segmenter.compose_fused`` (the camera-resolution composition of
``modeling.composition``) were weighed on RoadScene pairs (a training set of the
fused-image losses; VIFB stays evaluation only):

* **detail choice**: per pixel the stronger detail (``pixel``) or the locally stronger one
  (``local``: |detail| smoothed at half resolution, the shipped rule);
* **thermal levels** of an 8-bit thermal image in the published image: the model's
  percentile-stretched input (``stretched``, shipped) or the camera's own 0-255 levels
  (``display``);
* **base sharpness**: a scale on the network's base-weight logits, i.e. how firmly the
  published image takes the network's base decision (1 = as SAM's input is composed,
  shipped; 2-8 take the favoured camera's base more nearly as it is).

The network's decision maps are the same for every variant (one inference per pair); only
the camera-resolution composition changes. Scores: the VIFB metric definitions
(``evaluation.fusion_metrics``), mean over the pairs; the mean rank among the variants over
the 13 VIFB metrics and over the issue's three (Qabf, Mutinf, Ssim).

    python scripts/composition_study.py --data ../shared/data/roadscene --limit 40
    python scripts/composition_study.py --detail pixel local --levels stretched display --sharpness 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusionsam_model.evaluation import fusion_metrics as fm  # noqa: E402
from fusionsam_model.evaluation.fusion_benchmark import as_thermal, find_pairs  # noqa: E402
from fusionsam_model.modeling import composition  # noqa: E402
from fusionsam_model.runtime.preprocess import (  # noqa: E402
    maps_over_image,
    normalize_thermal,
    preprocess_batch,
    rgb_to_uint8,
)
from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT, Segmenter  # noqa: E402
from fusionsam_model.runtime.threads import set_torch_threads  # noqa: E402

LOWER_IS_BETTER = {"Cross_entropy", "Qcv", "Rmse"}
VIFB_13 = [m for m in fm.METRICS if m not in ("VIF", "SCD")]
ISSUE_3 = ["Qabf", "Mutinf", "Ssim"]


def per_pixel_choice(y, base_y, t, base_t):  # noqa: ANN001, ANN201  (same signature)
    """The first composed model's rule: the stronger detail, pixel by pixel."""
    return cv2.compare(cv2.absdiff(y, base_y), cv2.absdiff(t, base_t), cv2.CMP_GE)


CHOICES = {"local": composition.visible_detail_wins_numpy, "pixel": per_pixel_choice}


def mean_ranks(means: dict, variants: list, metrics: list[str]) -> dict:
    ranks = {v: [] for v in variants}
    for metric in metrics:
        order = sorted(
            variants, key=lambda v: means[v][metric], reverse=metric not in LOWER_IS_BETTER
        )
        for v in variants:
            ranks[v].append(order.index(v) + 1)
    return {v: float(np.mean(r)) for v, r in ranks.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "roadscene"))
    p.add_argument("--limit", type=int, default=40, help="pairs, evenly spaced")
    p.add_argument("--checkpoint", default=str(BUNDLED_CHECKPOINT))
    p.add_argument("--detail", nargs="+", default=["local"], choices=sorted(CHOICES))
    p.add_argument("--levels", nargs="+", default=["stretched", "display"])
    p.add_argument("--sharpness", nargs="+", type=float, default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--out", default="runs/composition_study.json")
    args = p.parse_args(argv)
    set_torch_threads(1)
    if "vifb" in str(args.data).lower():
        print("refused: VIFB is evaluation only, rules are not chosen on it", file=sys.stderr)
        return 2
    pairs, _ = find_pairs(Path(args.data), None, None)
    pairs = pairs[:: max(1, len(pairs) // args.limit)][: args.limit]
    seg = Segmenter.from_checkpoint(Path(args.checkpoint), device="cpu")
    variants = list(itertools.product(args.detail, args.levels, args.sharpness))
    meters = {v: fm.FusionMeter() for v in variants}
    for _name, vis_path, ir_path in tqdm(pairs, desc="pairs", unit="pair"):
        visible, infrared = fm.load_image(vis_path), fm.load_image(ir_path)
        if visible.ndim == 2:
            visible = np.repeat(visible[:, :, None], 3, axis=2)
        thermal = as_thermal(infrared)
        rgb, th, boxes = preprocess_batch(
            [visible], [thermal], seg.input_size, seg.thermal_range, seg.thermal_percentiles
        )
        crop = maps_over_image(seg.backend.infer(rgb, th).fusion_maps[0], boxes[0])
        visible8 = rgb_to_uint8(visible)
        levels = {
            "stretched": normalize_thermal(thermal, seg.thermal_range, seg.thermal_percentiles),
            "display": normalize_thermal(thermal, (0.0, 255.0)),
        }
        for choice, level, sharpness in variants:
            composition.visible_detail_wins_numpy = CHOICES[choice]
            try:
                firm = crop.copy()
                firm[0] *= sharpness
                fused = composition.compose_numpy(visible8, levels[level], firm)
            finally:
                composition.visible_detail_wins_numpy = CHOICES["local"]
            meters[(choice, level, sharpness)].update(fm.compute(visible, infrared, fused))
    means = {v: m.means() for v, m in meters.items()}
    rank13, rank3 = mean_ranks(means, variants, VIFB_13), mean_ranks(means, variants, ISSUE_3)
    metrics = list(fm.METRICS)
    print(f"{len(pairs)} pairs of {args.data}, decision maps of {Path(args.checkpoint).name}")
    head = "| detail | thermal levels | base sharpness | " + " | ".join(metrics)
    print(head + " | mean rank (13) | mean rank (Qabf, Mutinf, Ssim) |")
    print("|---|---|---:|" + "---:|" * (len(metrics) + 2))
    for v in variants:
        cells = " | ".join(f"{means[v][m]:.4g}" for m in metrics)
        print(f"| {v[0]} | {v[1]} | {v[2]:g} | {cells} | {rank13[v]:.2f} | {rank3[v]:.2f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({f"{c}/{lv}/{s:g}": means[(c, lv, s)] for c, lv, s in variants}, indent=1)
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
