"""``fusionsam-fusion-eval``: score a checkpoint's fused image against published fusion methods.

Why: the node publishes ``fusionsam/fused_image`` and nothing said how good it is. This
runs the node's own inference path (``Segmenter.predict``) on every visible / infrared
pair of a folder, scores each fused image with ``fusion_metrics`` (the VIFB benchmark's
definitions) and, on VIFB data, ranks the model against the published methods: per
metric our mean over the pairs, our rank among the published methods + us, and the best
published method. Writes ``fusion_eval.json``, ``fusion_eval.md``, ``fusion_ranks.png``
and ``fusion_strip.png`` (our fused images beside two of the best published methods).

Data layouts: VIFB (``input/VI``, ``input/IR``, ``fused/<name>_<method>.jpg``,
``metrics.csv``), RoadScene (``visible/``, ``infrared/``) or any ``--visible`` /
``--infrared`` folder pair (then no ranking: no published results to rank against).

Published values: the 13 VIFB metrics come from the benchmark's own ``metrics.csv``
(averaged over the same pairs we score); VIF and SCD are not in it and are computed here
from the published fused images (cached in ``--published-cache``). Only methods whose fused images
are present are ranked (VIFB's ``metrics.csv`` also lists MST_SR, whose images are not
shipped, so its values could not be checked by the reproduction test).
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fusionsam_model.data.datasets import DatasetError
from fusionsam_model.evaluation import fusion_metrics as fm
from fusionsam_model.runtime.registration import (
    HOMOGRAPHY_HELP,
    Registration,
    homography_argument,
)

OURS = "FusionSAM (ours)"


# --- data ------------------------------------------------------------------------------


def find_pairs(
    data: Path | None, visible: Path | None = None, infrared: Path | None = None
) -> tuple[list[tuple[str, Path, Path]], Path | None]:
    """[(name, visible path, infrared path)] and the VIFB root (None for plain folders)."""
    vifb_root = None
    if visible is None or infrared is None:
        if data is None:
            raise ValueError("give --data or both --visible and --infrared")
        if (data / "input" / "VI").is_dir():
            visible, infrared, vifb_root = data / "input" / "VI", data / "input" / "IR", data
        elif (data / "visible").is_dir():
            visible, infrared = data / "visible", data / "infrared"
        else:
            raise ValueError(
                f"{data}: neither VIFB (input/VI, input/IR) nor RoadScene (visible/, "
                "infrared/) layout; pass --visible and --infrared"
            )
    from fusionsam_model.data.unlabelled import UnlabelledPairs

    pairs = UnlabelledPairs(visible.parent, visible.name, infrared.name)
    paths = [(n, *pairs.paths[i]) for i, n in enumerate(pairs.names)]
    return paths, vifb_root


def as_thermal(image: np.ndarray) -> np.ndarray:
    """Thermal frames are often stored as 3 equal channels: take their luma."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def published_methods(vifb_root: Path, names: list[str]) -> list[str]:
    """Methods whose fused image exists for every scored pair."""
    methods = sorted({p.stem.split("_", 1)[1] for p in (vifb_root / "fused").glob("*_*.jpg")})
    return [m for m in methods if all(_published_path(vifb_root, n, m).is_file() for n in names)]


def _published_path(vifb_root: Path, name: str, method: str) -> Path:
    return vifb_root / "fused" / f"{name}_{method}.jpg"


def published_scores(
    vifb_root: Path, names: list[str], methods: list[str], cache: Path | None, extra: bool
) -> dict[str, dict[str, dict[str, float]]]:
    """{method: {image: {metric: value}}}: metrics.csv values, plus VIF / SCD computed."""
    scores: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    wanted = set(names)
    with open(vifb_root / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["image"] in wanted and row["method"] in methods:
                scores[row["method"]][row["image"]][row["metric"]] = float(row["value"])
    if not extra:
        return scores
    cached: dict[str, dict[str, float]] = {}
    if cache is not None and cache.is_file():
        cached = json.loads(cache.read_text())
    todo = [(n, m) for m in methods for n in names if f"{n}/{m}" not in cached]
    if todo:
        print(f"computing VIF and SCD of {len(todo)} published fused images", file=sys.stderr)
    sources: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, method in todo:
        if name not in sources:
            sources = {name: _load_sources(vifb_root / "input", name)}
        fused = fm.load_image(_published_path(vifb_root, name, method))
        cached[f"{name}/{method}"] = fm.compute(*sources[name], fused, fm.EXTRA_METRICS)
    if todo and cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(cached, indent=1))
    for method in methods:
        for name in names:
            scores[method][name].update(cached[f"{name}/{method}"])
    return scores


def _load_sources(input_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    return (
        fm.load_image(next((input_dir / "VI").glob(f"{name}.*"))),
        fm.load_image(next((input_dir / "IR").glob(f"{name}.*"))),
    )


# --- scoring ---------------------------------------------------------------------------


def rank_table(
    ours: dict[str, float], published: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """Per metric: our value, our rank among published + us (1 = best), the best method."""
    rows = []
    for metric in fm.METRICS:
        if metric not in ours:
            continue
        values = {m: v[metric] for m, v in published.items() if metric in v}
        sign = -1.0 if metric in fm.LOWER_IS_BETTER else 1.0
        row: dict[str, Any] = {
            "metric": metric,
            "ours": ours[metric],
            "better": "lower" if sign < 0 else "higher",
        }
        if values:
            best = max(values, key=lambda m: sign * values[m])
            row.update(
                rank=1 + sum(sign * v > sign * ours[metric] for v in values.values()),
                of=len(values) + 1,
                best_method=best,
                best_value=values[best],
                published_median=float(np.median(list(values.values()))),
            )
        rows.append(row)
    return rows


def best_methods(published: dict[str, dict[str, float]], k: int = 2) -> list[str]:
    """The k published methods with the best mean rank over the VIFB metrics."""
    ranks: dict[str, float] = defaultdict(float)
    for metric in fm.VIFB_METRICS:
        sign = -1.0 if metric in fm.LOWER_IS_BETTER else 1.0
        order = sorted(published, key=lambda m: -sign * published[m].get(metric, np.nan))
        for r, m in enumerate(order):
            ranks[m] += r
    return sorted(ranks, key=ranks.get)[:k]


def format_markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, ""]
    ranked = any("rank" in r for r in rows)
    if ranked:
        lines += [
            "| metric | better | ours | rank | best published | its value | published median |",
            "|---|---|---:|---:|---|---:|---:|",
        ]
        for r in rows:
            if "rank" not in r:  # no published values for this metric
                lines.append(f"| {r['metric']} | {r['better']} | {r['ours']:.4g} | - | - | - | - |")
                continue
            lines.append(
                f"| {r['metric']} | {r['better']} | {r['ours']:.4g} | {r['rank']}/{r['of']} | "
                f"{r['best_method']} | {r['best_value']:.4g} | {r['published_median']:.4g} |"
            )
    else:
        lines += ["| metric | better | ours |", "|---|---|---:|"]
        lines += [f"| {r['metric']} | {r['better']} | {r['ours']:.4g} |" for r in rows]
    return "\n".join(lines) + "\n"


# --- figures ---------------------------------------------------------------------------


def save_rank_figure(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "rank" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(rows) + 1.2))
    names = [r["metric"] for r in rows]
    ranks = [r["rank"] for r in rows]
    of = rows[0]["of"]
    ax.barh(
        range(len(rows)),
        ranks,
        color=[
            "tab:green" if k <= of / 3 else "tab:orange" if k <= 2 * of / 3 else "tab:red"
            for k in ranks
        ],
    )
    for i, r in enumerate(rows):
        ax.text(
            r["rank"] + 0.2,
            i,
            f"{r['rank']}/{r['of']}  ours {r['ours']:.3g}, best {r['best_method']} {r['best_value']:.3g}",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, of * 1.9)
    ax.set_xlabel(f"our rank among {of} (1 = best)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_strip(
    rows: list[tuple[str, list[tuple[str, np.ndarray]]]], path: Path, height: int = 180
) -> None:
    """One row per pair: labelled tiles (visible, infrared, ours, published methods)."""
    lines = []
    for name, tiles in rows:
        cells = []
        for label, image in tiles:
            rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
            w = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
            tile = cv2.resize(rgb, (w, height), interpolation=cv2.INTER_AREA).copy()
            text = f"{name}: {label}" if not cells else label
            cv2.putText(tile, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
            cv2.putText(tile, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            cells.append(tile)
            cells.append(np.full((height, 3, 3), 255, np.uint8))
        lines.append(np.concatenate(cells[:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [
        np.pad(line, ((0, 3), (0, width - line.shape[1]), (0, 0)), constant_values=255)
        for line in lines
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(lines, axis=0), cv2.COLOR_RGB2BGR))


# --- command ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT, Segmenter
    from fusionsam_model.runtime.threads import set_torch_threads

    set_torch_threads(args.threads)
    pairs, vifb_root = find_pairs(
        Path(args.data) if args.data else None,
        Path(args.visible) if args.visible else None,
        Path(args.infrared) if args.infrared else None,
    )
    if args.limit:
        pairs = pairs[: args.limit]
    checkpoint = Path(args.checkpoint) if args.checkpoint else BUNDLED_CHECKPOINT
    homography = getattr(args, "thermal_homography", None)
    segmenter = Segmenter.from_checkpoint(
        checkpoint, device=args.device, thermal_homography=homography
    )
    # scored against the infrared image in the RGB frame, the one the model fused
    registration = Registration(homography) if homography is not None else None
    out = Path(args.out)
    (out / "fused").mkdir(parents=True, exist_ok=True)
    per_image: dict[str, dict[str, float]] = {}
    fused_images: dict[str, np.ndarray] = {}
    meter = fm.FusionMeter()
    infer_s = 0.0
    for name, vis_path, ir_path in pairs:
        visible, infrared = fm.load_image(vis_path), fm.load_image(ir_path)
        if visible.ndim == 2:
            visible = cv2.cvtColor(visible, cv2.COLOR_GRAY2RGB)
        t0 = time.perf_counter()
        fused = segmenter.predict(visible, as_thermal(infrared)).fused
        infer_s += time.perf_counter() - t0
        if registration is not None:
            infrared = registration.warp(as_thermal(infrared), visible.shape[:2])
        cv2.imwrite(str(out / "fused" / f"{name}.png"), cv2.cvtColor(fused, cv2.COLOR_RGB2BGR))
        scores = fm.compute(visible, infrared, fused)
        per_image[name] = scores
        meter.update(scores)
        fused_images[name] = fused
        print(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in scores.items()), file=sys.stderr)
    ours = meter.means()
    names = [n for n, _, _ in pairs]
    published: dict[str, dict[str, float]] = {}
    methods: list[str] = []
    if vifb_root is not None and (vifb_root / "metrics.csv").is_file():
        methods = published_methods(vifb_root, names)
        raw = published_scores(
            vifb_root, names, methods, Path(args.published_cache), not args.no_published_extra
        )
        published = {
            m: {k: float(np.mean([raw[m][n][k] for n in names])) for k in raw[m][names[0]]}
            for m in methods
        }
    rows = rank_table(ours, published)
    strip_methods = best_methods(published) if published else []
    header = (
        f"Fused image of `{checkpoint.name}` on {len(pairs)} pairs of `{args.data or args.visible}`"
        + (f", ranked among {len(methods)} published methods + ours" if published else "")
        + " (mean over the pairs; metric definitions of VIFB, `fusionsam_model/evaluation/fusion_metrics.py`)"
    )
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": str(args.data or f"{args.visible} + {args.infrared}"),
        "pairs": names,
        "published_methods": methods,
        "ours": ours,
        "table": rows,
        "strip_methods": strip_methods,
        "published_means": published,
        "per_image": per_image,
        "inference_s_per_pair": infer_s / max(len(pairs), 1),
        "notes": (
            "13 VIFB metrics of published methods from the benchmark's metrics.csv; VIF and "
            "SCD of published methods computed here from their fused JPEGs. Our fused images "
            "are scored as produced (uint8, not JPEG-compressed)."
        ),
    }
    (out / "fusion_eval.json").write_text(json.dumps(result, indent=2))
    markdown = format_markdown(rows, header)
    (out / "fusion_eval.md").write_text(markdown)
    save_rank_figure(
        rows, out / "fusion_ranks.png", f"{checkpoint.name}: fused image on {len(pairs)} VIFB pairs"
    )
    strip_rows = []
    for name, vis_path, ir_path in pairs[: args.strip_rows]:
        tiles = [("visible", fm.load_image(vis_path)), ("infrared", fm.load_image(ir_path))]
        tiles.append(("ours", fused_images[name]))
        for m in strip_methods:
            tiles.append((m, fm.load_image(_published_path(vifb_root, name, m))))
        strip_rows.append((name, tiles))
    save_strip(strip_rows, out / "fusion_strip.png")
    print(markdown)
    print(
        f"wrote {out / 'fusion_eval.json'}, {out / 'fusion_eval.md'}, {out / 'fusion_ranks.png'}, "
        f"{out / 'fusion_strip.png'}"
    )
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="project checkpoint (default: bundled)")
    p.add_argument("--data", default=None, help="VIFB or RoadScene-layout folder")
    p.add_argument("--visible", default=None, help="folder of visible images (with --infrared)")
    p.add_argument("--infrared", default=None, help="folder of infrared images, same names")
    p.add_argument("--out", default="runs/fusion_eval", help="output folder")
    p.add_argument("--limit", type=int, default=None, help="first N pairs only")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--thermal-homography", type=homography_argument, help=HOMOGRAPHY_HELP)
    p.add_argument("--strip-rows", type=int, default=4, help="pairs shown in fusion_strip.png")
    p.add_argument(
        "--published-cache",
        default="runs/vifb_published_vif_scd.json",
        help="JSON cache of the published methods' VIF / SCD (the same for every checkpoint)",
    )
    p.add_argument(
        "--no-published-extra",
        action="store_true",
        help="do not compute VIF / SCD of the published fused images (no rank for them)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, DatasetError) as exc:
        print(f"fusionsam-fusion-eval: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
