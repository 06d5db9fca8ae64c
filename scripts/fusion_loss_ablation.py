"""Which fused-image loss terms matter: retrain only the decision-map head of a checkpoint
with each term left out, on real unlabelled pairs, and write one checkpoint per variant.

The rest of the network is frozen, so only the fused image changes (its segmentation
stays the checkpoint's); ``fusionsam-fusion-eval`` then scores each variant on VIFB
(evaluation only: nothing here reads VIFB). Variants: all three terms, without intensity,
without gradient, without SSIM, and ``fixed`` (zero maps: half of each camera's base
layer, detail gain 1, no learning at all).

    python scripts/fusion_loss_ablation.py --checkpoint fusionsam_model/weights/fusionsam_tiny_synth.pt \
        --out runs/fusion_ablation --steps 150
    for v in all no_intensity no_gradient no_ssim fixed; do
        fusionsam-fusion-eval --checkpoint runs/fusion_ablation/$v.pt --data ../shared/data/vifb \
            --out runs/fusion_ablation/eval_$v --threads 1 --no-published-extra; done
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fusionsam_model.data.box_datasets import BoxDataset, select_names
from fusionsam_model.data.unlabelled import UnlabelledPairs
from fusionsam_model.modeling.composition import compose
from fusionsam_model.runtime.checkpoint import load_checkpoint, save_checkpoint
from fusionsam_model.runtime.preprocess import preprocess_pair
from training.losses import fusion_losses

VARIANTS = {
    "all": (1.0, 1.0, 1.0),
    "no_intensity": (0.0, 1.0, 1.0),
    "no_gradient": (1.0, 0.0, 1.0),
    "no_ssim": (1.0, 1.0, 0.0),
}


def real_pairs(roadscene: Path, msrs_dev: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """RoadScene's pairs and msrs_dev's TRAINING part (never its held-out frames), read by
    the project's own readers (UnlabelledPairs, BoxDataset)."""
    road = UnlabelledPairs(roadscene, "visible", "infrared")
    msrs = BoxDataset(msrs_dev, select_names(msrs_dev, "train"))
    return [(s.rgb, s.thermal) for ds in (road, msrs) for s in (ds[i] for i in range(len(ds)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="runs/fusion_ablation")
    p.add_argument("--roadscene", default="../shared/data/roadscene")
    p.add_argument("--msrs-dev", default="../shared/data/msrs_dev")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = real_pairs(Path(args.roadscene), Path(args.msrs_dev))
    model, table, meta = load_checkpoint(args.checkpoint)
    cfg = model.config
    items = [preprocess_pair(r, t, cfg.input_size, cfg.thermal_range) for r, t in pairs]
    rgb_all = torch.from_numpy(np.stack([i[0] for i in items]))
    th_all = torch.from_numpy(np.stack([i[1] for i in items]))
    valid_all = (rgb_all.sum(1, keepdim=True) + th_all > 0).float()
    head = model.fmp.heads.fusion_maps
    model.requires_grad_(False)
    model.eval()  # frozen statistics; only the head's weights move
    with torch.no_grad():  # the frozen trunk's S/4 features, computed once
        fine = torch.cat(
            [
                model.forward_front(rgb_all[i : i + 16], th_all[i : i + 16], inference=True).fine
                for i in range(0, len(rgb_all), 16)
            ]
        )
    rng = np.random.default_rng(args.seed)
    for name, weights in [*VARIANTS.items(), ("fixed", None)]:
        torch.manual_seed(args.seed)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        if weights is not None:
            head.requires_grad_(True)
            opt = torch.optim.Adam(head.parameters(), lr=args.lr)
            bar = tqdm(range(args.steps), desc=name)
            for _ in bar:
                idx = torch.from_numpy(rng.integers(len(items), size=args.batch))
                maps = head(fine[idx])
                fused = compose(rgb_all[idx], th_all[idx], maps)
                terms = fusion_losses(fused, rgb_all[idx], th_all[idx], valid_all[idx])
                loss = sum(w * t for w, t in zip(weights, terms, strict=True))
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.set_postfix(loss=f"{float(loss):.4f}")
            head.requires_grad_(False)
        path = save_checkpoint(
            out / f"{name}.pt",
            model,
            table,
            {**meta, "fusion_loss_ablation": {"variant": name, "steps": args.steps}},
        )
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
