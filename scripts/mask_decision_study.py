"""What the decision from class logits to a mask does to the held-out box F1 (issue 23).

The network's class logits are computed once per frame; only the step that turns them
into the published mask changes:

* ``plain``: the Segmenter's own argmax of the bilinearly resized logits (shipped);
* ``offsets``: per-class logit offsets for car / person / bike before the argmax, every
  combination of a small grid; chosen on the very frames it is scored on, so its best row
  is an upper bound of what calibration could give, not a figure to ship;
* ``flip``: the logits of the horizontally mirrored pair averaged in (test-time
  augmentation, twice the network cost);
* ``guided``: class probabilities brought to camera resolution by the fused image's fast
  guided filter (He & Sun 2015, ``composition.guided_upsample``) on the thermal, grey or mixed image instead of bilinearly, so a mask
  edge can follow an image edge.

Frames: msrs_dev's held-out part (``--names holdout``), box definition of
docs/box_evaluation.md, mean F1 over car, person, bike.

    python scripts/mask_decision_study.py --images-root ../shared/data/msrs_dev --names holdout
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusionsam_model.data.box_datasets import (  # noqa: E402
    MSRS_BOX_MAP,
    MSRS_LABEL_SETS,
    BoxDataset,
    select_names,
)
from fusionsam_model.evaluation.box_metrics import BoxScores  # noqa: E402
from fusionsam_model.modeling import composition  # noqa: E402
from fusionsam_model.runtime.preprocess import (  # noqa: E402
    frame_levels,
    preprocess_batch,
    resized_argmax,
)
from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT, Segmenter  # noqa: E402
from fusionsam_model.runtime.threads import set_torch_threads  # noqa: E402

OFFSETS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0)
BIKE_OFFSETS = (-3.0, -1.0, 0.0)


def logits_of(seg: Segmenter, rgb: np.ndarray, thermal: np.ndarray):
    """(C, s, s) class logits and the letterbox of one pair."""
    levels = [frame_levels(thermal, seg.thermal_range, seg.thermal_percentiles)]
    r, t, boxes = preprocess_batch(
        [rgb], [thermal], seg.input_size, seg.thermal_range, seg.thermal_percentiles, levels
    )
    return torch.as_tensor(seg.backend.infer(r, t).class_logits[0]).float(), boxes[0]


def guided_labels(logits, box, guide: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Argmax of the class probabilities upsampled by the fused image's guided filter."""
    f = logits.shape[-1] / box.size
    ch, cw = (round(n * f) for n in box.resized_hw)
    p = torch.softmax(logits[:, :ch, :cw], 0)[None]
    g = torch.from_numpy(guide)[None, None]
    g_low = F.interpolate(g, size=(ch, cw), mode="area")
    q = composition.guided_upsample(g_low, g, p, radius, eps)
    return q[0].argmax(0).numpy().astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(BUNDLED_CHECKPOINT))
    parser.add_argument("--images-root", default="../shared/data/msrs_dev")
    parser.add_argument("--names", default="holdout")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_torch_threads(args.threads)
    seg = Segmenter.from_checkpoint(args.checkpoint)
    table = seg.class_table
    root = Path(args.images_root)
    names = select_names(root, args.names, "vi")
    data = BoxDataset(root, names, MSRS_LABEL_SETS, MSRS_BOX_MAP, table, "vi", "ir")
    frames = []
    for i in tqdm(range(len(data)), desc="logits", unit="frame"):
        s = data[i]
        logits, box = logits_of(seg, s.rgb, s.thermal)
        mirrored, _ = logits_of(seg, s.rgb[:, ::-1].copy(), s.thermal[:, ::-1].copy())
        frames.append((s, logits, mirrored.flip(-1), box))

    def score(decide) -> str:
        scores = BoxScores(table)
        for s, logits, mirrored, box in frames:
            scores.add(s.name, decide(s, logits, mirrored, box), s.boxes)
        summary = scores.summary()
        per = " ".join(f"{c} {v['f1'] or 0:.3f}" for c, v in summary["classes"].items())
        return f"mean {summary['mean_f1']:.3f} ({per})"

    print("plain:", score(lambda s, lg, mi, box: resized_argmax(lg, box)))
    print("flip (mirrored logits averaged in):", end=" ")
    print(score(lambda s, lg, mi, box: resized_argmax((lg + mi) / 2, box)))
    ids = [table.names.index(c) for c in ("car", "person", "bike")]
    rows = []
    for offsets in itertools.product(OFFSETS, OFFSETS, BIKE_OFFSETS):
        bias = torch.zeros(len(table.names))
        bias[ids] = torch.tensor(offsets)
        row = score(lambda s, lg, mi, box, b=bias: resized_argmax(lg + b[:, None, None], box))
        rows.append((float(row.split()[1]), offsets, row))
    for _, offsets, row in sorted(rows, key=lambda r: -r[0])[:3]:
        print(f"offsets car/person/bike {offsets}: {row}")
    guides = {
        "thermal": lambda s: s.thermal.astype(np.float32) / 255.0,
        "grey": lambda s: cv2.cvtColor(s.rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0,
    }
    guides["mixed"] = lambda s: 0.5 * guides["thermal"](s) + 0.5 * guides["grey"](s)
    for (name, guide), radius, eps in itertools.product(guides.items(), (1, 2), (1e-3, 1e-2)):
        row = score(
            lambda s, lg, mi, box, g=guide, r=radius, e=eps: guided_labels(lg, box, g(s), r, e)
        )
        print(f"guided ({name}, radius {radius} cells, eps {eps:g}): {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
