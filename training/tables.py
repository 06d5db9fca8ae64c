"""The paper's Tables 1-4 (and our LSTG study) from run directories, end to end by one command.

    python -m training.tables run --size cpu --out runs/tables     # generate -> train -> evaluate -> tables
    python -m training.tables run --quick --out /tmp/tables        # CI-sized smoke of the same recipe
    python -m training.tables render --out runs/tables             # tables only, from finished runs
    python -m training.tables render --out runs/tables --doc       # ... and into docs/results.md

Every row trains with the same recipe (``training/configs/synth_tiny.yaml`` plus the
size's overrides: input size, batch, steps) and the same number of segmentation steps;
rows that share a stage 1 say so. Checkpoints are chosen on **val**, scored once on
**test** (``training.evaluate``). Peer rows are quoted from the paper and marked
"quoted"; each table names its protocol and split under it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionsam_model.data.classes import MFNET
from fusionsam_model.evaluation.protocols import PROTOCOLS, score

BASE_CONFIG = "training/configs/synth_tiny.yaml"


@dataclass(frozen=True)
class Size:
    """One scale of the whole recipe (data, input size, steps per epoch, epochs)."""

    num: int  # generated pairs (train/val/test = 50/25/25 %)
    input_size: int
    batch_size: int
    steps_per_epoch: int | None  # None: the whole train split
    val_limit: int
    lstg_epochs: int  # stage-1 epochs of the full model (row C)
    seg_epochs: int  # segmentation epochs of every Table 2 / Table 4 row
    layout: str = "mfnet"


SIZES: dict[str, Size] = {
    # CI: minutes on 2 cores; checks the plumbing, not the numbers
    "quick": Size(24, 64, 4, 2, 4, 1, 1),
    # the tables in docs/results.md: 160 train pairs (20 steps per epoch), S = 128, 2 + 16 epochs;
    # about 30 min for all rows on 2 idle CPU cores with --jobs 2
    "cpu": Size(320, 128, 8, None, 16, 2, 16),
    # a GPU: the bundled model's recipe (S = 256, 1000 pairs, 2 + 16 epochs)
    "gpu": Size(1000, 256, 8, None, 150, 2, 16),
}


@dataclass(frozen=True)
class Row:
    """One training run: a key (its run folder), what it is, its overrides, what it needs."""

    key: str
    label: str
    overrides: tuple[str, ...]
    needs: tuple[str, ...] = ()  # rows whose checkpoints this one starts from
    tables: tuple[str, ...] = ()
    note: str = ""


def rows(size: Size, out: Path) -> list[Row]:
    """Table 2, Table 4 and LSTG-study rows for one size (paths under ``out``)."""
    el, es = size.lstg_epochs, size.seg_epochs
    total = el + es  # LSTG study: every row gets the same total epochs (stage 1 + seg)
    stage1 = str(out / "stage1" / "last.pt")
    full = str(out / "full" / "best.pt")
    seg_only = ("train.stage=seg",)
    shared = (*seg_only, f"model.init_lstg_from={stage1}")
    r = [
        Row("stage1", "stage 1 (LSTG VQ autoencoders), shared", ("train.stage=lstg",)),
        Row("full", "(C) FusionSAM (ours, tiny)", shared, ("stage1",), ("t1", "t2", "t3", "t4", "lstg")),
        Row("no_lstg", "(A) without LSTG (conv stem)", (*seg_only, "model.lstg=false"), (), ("t2",)),
        Row(
            "concat_no_hint",
            "(B) concat, no fusion-mask hint (paper)",
            (*shared, "model.fusion=concat", "model.mask_prompt=false", "loss.fusion_mask=0"),
            ("stage1",),
            ("t2",),
            "no dense mask prompt, no points / box; fusion-mask loss off",
        ),
        Row(
            "concat",
            "(B') concat, mask prompt kept (ours)",
            (*shared, "model.fusion=concat"),
            ("stage1",),
            ("t2",),
            "our earlier ablation B: the concat front still predicts the fusion mask that prompts SAM",
        ),
        Row(
            "sam_fused",
            "SAM on FusionSAM's fused image",
            (*seg_only, "model.sam_baseline=true", "model.baseline_input=fused", f"model.init_lstg_from={full}"),
            ("full",),
            ("t4",),
            "front (LSTG + FMP) of row C frozen; SAM encoder + decoder trained, no prompts",
        ),
        Row(
            "sam2_fused",
            "SAM2 (Hiera-t) on FusionSAM's fused image",
            (
                *seg_only,
                "model.sam_baseline=true",
                "model.baseline_input=fused",
                "model.image_encoder=sam2_hiera_t",
                f"model.init_lstg_from={full}",
            ),
            ("full",),
            ("t4",),
            "as above with SAM2's Hiera-tiny + FPN neck (27 M parameters, random init)",
        ),
        Row(
            "sam_pixel",
            "SAM on pixel-level fusion (0.5 RGB + 0.5 T)",
            (*seg_only, "model.sam_baseline=true", "model.baseline_input=pixel_fusion"),
            (),
            ("t4",),
        ),
        # ---- LSTG study: equal total epochs (stage 1 + seg) ----
        Row(
            "lstg_s1_0",
            "stage 1: 0 epochs (VQ learnt in seg only)",
            (*seg_only, f"seg.epochs={total}"),
            (),
            ("lstg",),
        ),
        Row(
            "lstg_s1_2",
            f"stage 1: {2 * el} epochs",
            ("train.stage=both", f"lstg.epochs={2 * el}", f"seg.epochs={max(1, total - 2 * el)}"),
            (),
            ("lstg",),
        ),
        Row(
            "lstg_frozen",
            "VQ frozen in seg (paper), stage 1 shared",
            (*shared, "seg.freeze_lstg=true"),
            ("stage1",),
            ("lstg",),
        ),
        Row("lstg_k64", "codebook K = 64", ("train.stage=both", "model.num_codes=64"), (), ("lstg",)),
        Row("lstg_k1024", "codebook K = 1024", ("train.stage=both", "model.num_codes=1024"), (), ("lstg",)),
        Row(
            "no_lstg_eq",
            "no LSTG, equal total epochs",
            (*seg_only, "model.lstg=false", f"seg.epochs={total}"),
            (),
            ("lstg",),
        ),
    ]  # fmt: skip
    return r


def base_overrides(size: Size, data: Path, out_dir: Path, device: str) -> list[str]:
    """What every row shares: data, size, steps, selection on val, no progress bars."""
    ov = [
        f"data.root={data}",
        "data.generate=null",
        f"data.val_limit={size.val_limit}",
        f"model.input_size={size.input_size}",
        f"train.batch_size={size.batch_size}",
        f"train.out_dir={out_dir}",
        f"train.device={device}",
        "train.val_every=1",
        "train.progress=false",
        "train.tensorboard=false",
        "train.select_split=val",
        f"lstg.epochs={size.lstg_epochs}",
        f"seg.epochs={size.seg_epochs}",
    ]
    if size.steps_per_epoch:
        ov.append(f"train.max_steps_per_epoch={size.steps_per_epoch}")
    return ov


def _run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if proc.returncode:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}); {log}:\n{tail}")


def seed_dir(out: Path, seed: int) -> Path:
    """Run folders of one training seed: ``out`` for seed 0, ``out/seed<N>`` otherwise."""
    return out if seed == 0 else out / f"seed{seed}"


def train_and_evaluate(
    row: Row, size: Size, data: Path, out: Path, device: str, seed: int = 0
) -> dict[str, Any]:
    """Train one row (its own process), score its val-selected checkpoint on test."""
    run_dir = out / row.key
    done = run_dir / "row.json"
    if done.is_file():
        return json.loads(done.read_text())
    py = sys.executable
    t0 = time.perf_counter()
    if not (run_dir / "report.json").is_file():  # a finished training is reused (resume)
        train_cmd = [py, "-m", "training.train", "--config", BASE_CONFIG]
        train_cmd += base_overrides(size, data, run_dir, device) + list(row.overrides)
        train_cmd.append(f"train.seed={seed}")
        _run(train_cmd, run_dir / "train.log")
    report = json.loads((run_dir / "report.json").read_text())
    train_s = sum(report.get("stage_seconds", {}).values()) or time.perf_counter() - t0
    entry: dict[str, Any] = {
        "key": row.key,
        "seed": seed,
        "label": row.label,
        "overrides": list(row.overrides),
        "train_s": train_s,
        "report": report,
    }
    if (run_dir / "best.pt").is_file() and not (run_dir / "test" / "results.json").is_file():
        ev = [py, "-m", "training.evaluate", "--checkpoint", str(run_dir / "best.pt")]
        ev += ["--data", str(data), "--split", "test", "--out", str(run_dir / "test"), "--json"]
        ev += ["--device", "cuda" if device == "cuda" else "cpu"]
        _run(ev, run_dir / "evaluate.log")
    if (run_dir / "test" / "results.json").is_file():
        entry["test"] = json.loads((run_dir / "test" / "results.json").read_text())
    done.write_text(json.dumps(entry, indent=2))
    return entry


def run_all(
    size_name: str,
    out: Path,
    jobs: int,
    device: str,
    only: list[str] | None,
    seeds: tuple[int, ...] = (0,),
) -> None:
    """Generate the data if missing, then every row of every seed in dependency order,
    ``jobs`` at a time. Every seed trains on the same data (the generator's seed is 0)."""
    size = SIZES[size_name]
    data = out / "data"
    if not (data / "train.txt").is_file():
        from fusionsam_model.data import synth

        synth.generate(data, size.num, 0, size.layout, progress=False)
    todo: dict[tuple[int, str], Row] = {}
    for seed in seeds:
        every = {r.key: r for r in rows(size, seed_dir(out, seed))}
        chosen = [k for k in every if only is None or k in only or k == "stage1"]
        for key in chosen:  # with what the chosen rows need
            todo[(seed, key)] = every[key]
            for n in every[key].needs:
                todo.setdefault((seed, n), every[n])
    finished: set[tuple[int, str]] = set()
    failed: dict[tuple[int, str], str] = {}
    running: dict[Future, tuple[int, str]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while todo or running:
            for (seed, key), r in list(todo.items()):
                if len(running) >= jobs:
                    break
                needs = [(seed, n) for n in r.needs]
                if any(n in failed for n in needs):
                    failed[(seed, key)] = "a row it needs failed"
                    del todo[(seed, key)]
                elif all(n in finished for n in needs):
                    print(f"[tables] start {key} (seed {seed})", flush=True)
                    fut = pool.submit(
                        train_and_evaluate, r, size, data, seed_dir(out, seed), device, seed
                    )
                    running[fut] = (seed, key)
                    del todo[(seed, key)]
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                seed, key = running.pop(fut)
                try:
                    entry = fut.result()
                    finished.add((seed, key))
                    miou = entry.get("test", {}).get("overall", {}).get("miou")
                    shown = "-" if miou is None else f"{100 * miou:.1f}"
                    print(
                        f"[tables] done {key} (seed {seed}): {entry['train_s']:.0f} s, "
                        f"test mIoU {shown}",
                        flush=True,
                    )
                except Exception as e:  # one row failing must not lose the others
                    failed[(seed, key)] = str(e).splitlines()[0]
                    print(f"[tables] FAILED {key} (seed {seed}): {e}", flush=True)
    (out / "tables.md").write_text(render(out, size_name))
    print(render(out, size_name))
    if failed:
        print(f"[tables] failed rows: {failed}")


# --------------------------------------------------------------------------- rendering
# Peer rows quoted from the paper (FusionSAM, AAAI 2025 / arXiv 2408.13980, Tables 1-4).
MFNET_COLUMNS = list(MFNET.names)  # the paper's Table 1 columns are our class names
QUOTED_T1 = {
    "EGFNet23": [97.7, 87.6, 69.8, 58.8, 42.8, 33.8, 7.3, 48.3, 47.1, 54.8],
    "SegMiF23": [98.1, 87.8, 71.4, 63.2, 47.5, 31.1, 0.0, 48.9, 50.3, 56.1],
    "EAEFNet23": [97.6, 87.6, 72.6, 63.8, 48.6, 35.0, 14.2, 52.4, 58.3, 58.9],
    "LASNet23": [97.4, 84.2, 67.1, 56.9, 41.1, 39.6, 18.9, 48.8, 40.1, 54.9],
    "SFAF-MA23": [97.0, 88.1, 73.0, 61.3, 45.6, 29.5, 5.5, 45.7, 53.8, 55.5],
    "ECFNet24": [98.0, 85.7, 73.5, 59.7, 45.7, 36.7, 4.0, 47.4, 55.1, 56.2],
    "MRFS24": [98.6, 89.4, 75.4, 65.0, 49.0, 37.2, 5.4, 53.1, 58.8, 59.1],
    "FusionSAM (paper)": [98.8, 89.8, 74.0, 75.8, 69.6, 60.2, 0.0, 37.8, 61.4, 63.0],
}
FMB_COLUMNS = ["Car", "Person", "Truck", "T-Lamp", "T-Sign", "Building", "Vegetation", "Pole"]
QUOTED_T3 = {
    "EGFNet23": [77.4, 63.0, 17.1, 25.2, 66.6, 77.2, 83.5, 41.5, 47.3],
    "SegMiF23": [78.7, 65.5, 42.4, 35.6, 71.7, 80.1, 85.1, 35.7, 58.5],
    "EAEFNet23": [79.7, 61.6, 22.5, 34.3, 74.6, 82.3, 86.6, 46.2, 58.0],
    "LASNet23": [73.2, 58.3, 33.1, 32.6, 68.5, 80.8, 83.4, 41.0, 55.7],
    "SFAF-MA23": [73.0, 55.7, 14.3, 13.6, 54.2, 73.0, 78.9, 38.1, 42.7],
    "ECFNet24": [80.0, 63.1, 12.8, 40.6, 71.9, 81.4, 84.4, 44.6, 52.5],
    "MRFS24": [76.2, 71.3, 34.4, 50.1, 75.8, 85.4, 87.0, 53.6, 61.2],
    "FusionSAM (paper)": [80.1, 52.8, 45.9, 43.7, 46.4, 85.5, 88.4, 50.8, 61.8],
}
QUOTED_T2 = {
    "(A) w/o LSTG": (35.6, 41.4),
    "(B) concat, no fusion-mask hint": (47.3, 57.6),
    "(C) FusionSAM": (63.0, 61.8),
}
QUOTED_T4 = {"SAM": (32.7, 34.6), "SAM2": (43.0, 46.3), "FusionSAM": (63.0, 61.8)}


def _load_rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    """key -> the finished entries of that row, seed 0 (``out/<key>``) first, then
    ``out/seed<N>/<key>``."""
    found: dict[str, list[dict[str, Any]]] = {}
    for p in [*sorted(out.glob("*/row.json")), *sorted(out.glob("seed*/*/row.json"))]:
        entry = json.loads(p.read_text())
        found.setdefault(entry["key"], []).append(entry)
    return found


def _seed_count(got: dict[str, list[dict[str, Any]]]) -> int:
    """The most seeds any row finished (1 when none did)."""
    return max((len(v) for v in got.values()), default=1)


def _mfnet(entry: dict[str, Any]) -> dict[str, Any]:
    test = entry["test"]  # the matrix over all ids (nothing ignored) when evaluate wrote it
    matrix = test.get("confusion_matrix_all_ids", test["confusion_matrix"])
    return score(matrix, test["class_names"], "mfnet")


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and v == v]
    return sum(kept) / len(kept) if kept else None


def _scores(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """mfnet scores of a row, in %, averaged over its seeds (mean of the per-seed values);
    ``sd``: sample standard deviation of the per-seed mIoU (None for one seed)."""
    done = [e for e in entries or [] if "test" in e]
    if not done:
        return None
    per = [_mfnet(e) for e in done]
    mious = [100 * s["miou"] for s in per]
    classes = {c for s in per for c in s["iou"]}
    return {
        "n": len(done),
        "miou": _mean(mious),
        "mious": mious,
        "sd": statistics.stdev(mious) if len(mious) > 1 else None,
        "iou": {
            c: _mean([None if s["iou"].get(c) is None else 100 * s["iou"][c] for s in per])
            for c in classes
        },
        "day": _mean([100 * e["test"].get("day", {}).get("miou", float("nan")) for e in done]),
        "night": _mean([100 * e["test"].get("night", {}).get("miou", float("nan")) for e in done]),
        "entry": done[0],  # seed 0 when it ran: epochs, train time, code usage
    }


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _miou_cell(sc: dict[str, Any]) -> str:
    return _num(sc["miou"]) + (f" ± {sc['sd']:.1f}" if sc["sd"] is not None else "")


def _row_cells(sc: dict[str, Any] | None, columns: list[str]) -> list[str]:
    if sc is None:
        return ["not run"] + [""] * len(columns)
    return [_miou_cell(sc)] + [_num(sc["iou"].get(c)) for c in columns]


def _steps(entry: dict[str, Any]) -> str:
    hist = entry["report"].get("history", [])
    n = {st: sum(1 for h in hist if h["stage"] == st) for st in ("lstg", "seg")}
    if any("stage1/" in o for o in entry.get("overrides", [])):
        return f"shared+{n['seg']}"
    return f"{n['lstg']}+{n['seg']}"


def _train_s(entry: dict[str, Any]) -> float:
    """Seconds in this row's own training stages (not start-up, not a shared stage 1)."""
    return sum(entry["report"].get("stage_seconds", {}).values()) or entry["train_s"]


def _code_usage(entry: dict[str, Any]) -> str:
    """Codebook perplexity (exp of the code-usage entropy) at the last epoch that logged it."""
    if not entry["report"].get("model_config", {}).get("lstg", True):
        return "- (no codebook)"
    for h in reversed(entry["report"].get("history", [])):
        if "perplexity_rgb" in h:
            return f"{h['perplexity_rgb']:.0f} / {h.get('perplexity_thermal', float('nan')):.0f}"
    return "-"


def render(out: Path, size_name: str) -> str:
    """Markdown for Tables 1-4 and the LSTG study from ``out/*/row.json``."""
    size = SIZES[size_name]
    got = _load_rows(out)
    data_note = (
        f"Split: **test** of the generator's data (`fusionsam-synth --num {size.num} --seed 0`, "
        f"{size.num // 2} train / {size.num // 4} val / {size.num // 4} test, half night); "
        "checkpoints selected on **val**; ours measured, peers **quoted** from the paper "
        "(real MFNet / FMB test sets: not comparable with synthetic numbers)."
    )
    recipe = (
        f"Recipe: `{BASE_CONFIG}` at S={size.input_size}, batch {size.batch_size}, "
        f"{size.steps_per_epoch or size.num // 2 // size.batch_size} steps per epoch."
    )
    mf = PROTOCOLS["mfnet"].description
    seeds = _seed_count(got)
    if seeds > 1:
        data_note += (
            f" Measured cells: mean over {seeds} training seeds (`train.seed` 0..{seeds - 1}, same "
            "data); ± is the sample standard deviation of the per-seed mIoU."
        )
    L: list[str] = []
    # Table 1
    L += ["#### Table 1: MFNet-style segmentation (IoU %)", ""]
    cols = MFNET_COLUMNS
    L.append("| method | source | " + " | ".join(cols) + " | mIoU |")
    L.append("|---" * (len(cols) + 3) + "|")
    for name, vals in QUOTED_T1.items():
        L.append(f"| {name} | quoted | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    full = _scores(got.get("full"))
    if full:
        cells = _row_cells(full, cols)
        L.append(
            "| FusionSAM tiny, synthetic | measured | " + " | ".join(cells[1:]) + f" | {cells[0]} |"
        )
    L += ["", f"Protocol: **mfnet** ({mf}). {data_note}", ""]
    # Table 2
    L += ["#### Table 2: ablations (mIoU %)", ""]
    L.append(
        "| row | mIoU | day | night | car_stop | color_cone | bump | stage-1+seg epochs | train s | note |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for key in ("no_lstg", "concat_no_hint", "concat", "full"):
        sc = _scores(got.get(key))
        label = next((r.label for r in rows(size, out) if r.key == key), key)
        note = next((r.note for r in rows(size, out) if r.key == key), "")
        if sc is None:
            L.append(f"| {label} | not run | | | | | | | | {note} |")
            continue
        e = sc["entry"]
        dn = [_num(sc[c]) for c in ("day", "night")]
        ious = [_num(sc["iou"].get(c)) for c in ("car_stop", "color_cone", "bump")]
        L.append(
            f"| {label} | {_miou_cell(sc)} | {' | '.join(dn)} | {' | '.join(ious)} | "
            f"{_steps(e)} | {_train_s(e):.0f} | {note} |"
        )
    L.append(
        "| *paper (A) / (B) / (C), MFNet* | *quoted* | "
        + " / ".join(f"{v[0]:.1f}" for v in QUOTED_T2.values())
        + " | | | | | | | FMB: "
        + " / ".join(f"{v[1]:.1f}" for v in QUOTED_T2.values())
        + " |"
    )
    L += [
        "",
        f"Protocol: **mfnet**. {data_note} {recipe} Rows (B), (B') and (C) share one stage 1.",
        "",
    ]
    # Table 3
    L += ["#### Table 3: FMB (IoU %)", ""]
    L.append("| method | source | " + " | ".join(FMB_COLUMNS) + " | mIoU |")
    L.append("|---" * (len(FMB_COLUMNS) + 3) + "|")
    for name, vals in QUOTED_T3.items():
        L.append(f"| {name} | quoted | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    L += [
        "",
        "Protocol of the quoted rows: the paper does not say; MRFS's released evaluation code "
        "(and FusionSAM's) averages all 15 ids including background, i.e. **fmb15** "
        f"({PROTOCOLS['fmb15'].description}); our default for FMB. `fmb14`: "
        f"{PROTOCOLS['fmb14'].description}. No measured FMB row in this run "
        "(every size of this recipe trains on MFNet-layout data).",
        "",
    ]
    # Table 4
    L += ["#### Table 4: SAM, SAM2 and FusionSAM (mIoU %)", ""]
    L.append("| method | input | mIoU | day | night | seg epochs | train s | note |")
    L.append("|---|---|---|---|---|---|---|---|")
    t4 = (
        ("sam_pixel", "0.5 RGB + 0.5 thermal (fixed)"),
        ("sam_fused", "fused image of row C (frozen front)"),
        ("sam2_fused", "fused image of row C (frozen front)"),
        ("full", "RGB + thermal (LSTG, FMP, mask prompt)"),
    )
    for key, inp in t4:
        sc = _scores(got.get(key))
        r = next(x for x in rows(size, out) if x.key == key)
        if sc is None:
            L.append(f"| {r.label} | {inp} | not run | | | | | {r.note} |")
            continue
        e = sc["entry"]
        dn = [_num(sc[c]) for c in ("day", "night")]
        L.append(
            f"| {r.label} | {inp} | {_miou_cell(sc)} | {' | '.join(dn)} | {_steps(e).split('+')[1]} | {_train_s(e):.0f} | {r.note} |"
        )
    for name, (a, b) in QUOTED_T4.items():
        L.append(
            f"| {name} (paper) | fused feature maps | {a:.1f} (MFNet), {b:.1f} (FMB) | | | | | quoted |"
        )
    L += [
        "",
        f"Protocol: **mfnet**. {data_note} {recipe} The SAM / SAM2 encoders here are trained from random init (no official weights on this machine); the paper's are pretrained.",
        "",
    ]
    # LSTG study
    L += ["#### LSTG study: stage-1 length, codebook size, VQ fine-tuning, equal total epochs", ""]
    L.append("| row | mIoU | stage-1+seg epochs | train s | code perplexity rgb / thermal (of K) |")
    L.append("|---|---|---|---|---|")
    for key in (
        "lstg_s1_0",
        "full",
        "lstg_s1_2",
        "lstg_frozen",
        "lstg_k64",
        "lstg_k1024",
        "no_lstg_eq",
    ):
        sc = _scores(got.get(key))
        r = next(x for x in rows(size, out) if x.key == key)
        k = next((o.split("=")[1] for o in r.overrides if o.startswith("model.num_codes=")), "256")
        label = (
            r.label
            if key != "full"
            else f"stage 1: {size.lstg_epochs} epoch(s), K = 256, VQ fine-tuned (row C)"
        )
        if sc is None:
            L.append(f"| {label} | not run | | | |")
            continue
        e = sc["entry"]
        L.append(
            f"| {label} | {_miou_cell(sc)} | {_steps(e)} | {_train_s(e):.0f} | {_code_usage(e)} (K={k}) |"
        )
    L += ["", f"Protocol: **mfnet**. {data_note} {recipe}", ""]
    return "\n".join(L)


def plot_lstg(out: Path, size_name: str, png: Path) -> Path:
    """LSTG-study figure: test mIoU vs stage-1 epochs (equal total) and vs codebook size K,
    and code usage (perplexity) per epoch of every LSTG row that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = SIZES[size_name]
    got = _load_rows(out)
    seeds = _seed_count(got)

    def miou(key: str) -> float | None:
        sc = _scores(got.get(key))
        return None if sc is None else sc["miou"]

    def sd(key: str) -> float:
        sc = _scores(got.get(key))
        return 0.0 if sc is None or sc["sd"] is None else sc["sd"]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    el = size.lstg_epochs
    pts = [(0, "lstg_s1_0"), (el, "full"), (2 * el, "lstg_s1_2")]
    pts = [(x, miou(k), sd(k)) for x, k in pts if miou(k) is not None]
    if pts:
        xs, ys, es = zip(*pts, strict=True)
        ax.errorbar(xs, ys, yerr=es, fmt="o-", capsize=3, label="LSTG, VQ fine-tuned in seg")
    for key, style, color, lab in (
        ("no_lstg_eq", "--", "grey", "no LSTG, equal total epochs"),
        ("no_lstg", "-.", "black", f"no LSTG, {size.seg_epochs} seg epochs (row A)"),
        ("lstg_frozen", ":", "tab:red", f"VQ frozen in seg, {el} ep stage 1"),
    ):
        if miou(key) is not None:
            ax.axhline(miou(key), linestyle=style, color=color, label=lab)
    ax.set_xlabel(f"stage-1 epochs (of {el + size.seg_epochs} in total)")
    ax.set_ylabel("test mIoU (%)")
    ax.legend(fontsize=7)
    ax = axes[1]
    ks = [(64, "lstg_k64"), (256, "full"), (1024, "lstg_k1024")]
    ks = [(x, miou(k), sd(k)) for x, k in ks if miou(k) is not None]
    if ks:
        xs, ys, es = zip(*ks, strict=True)
        ax.errorbar(xs, ys, yerr=es, fmt="s-", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("codebook size K")
    ax.set_ylabel("test mIoU (%)")
    ax.set_title("rows not run are missing", fontsize=7)
    ax = axes[2]
    s1 = got.get("stage1", [None])[0]
    for key, entries in sorted(got.items()):
        e = entries[0]  # seed 0
        if key == "stage1" or "test" not in e:
            continue
        hist = [h for h in e["report"].get("history", []) if h.get("perplexity_rgb")]
        if not hist:
            continue
        ys = [h["perplexity_rgb"] for h in hist]
        xs = list(range(1, len(ys) + 1))
        shared = s1 is not None and any("stage1" in o for o in e.get("overrides", []))
        if shared:  # the shared stage 1 as epoch 0
            ys = [s1["report"]["history"][-1]["perplexity_rgb"], *ys]
            xs = [0, *xs]
        ax.plot(xs, ys, "o-", label=key)
    ax.set_xlabel("epoch (0 = end of the shared stage 1)")
    ax.set_ylabel("RGB codebook perplexity (codes in use)")
    ax.legend(fontsize=7)
    fig.suptitle(
        f"LSTG study, synthetic MFNet-style data, size '{size_name}' "
        f"({seeds} seed(s); error bars: sample sd over seeds; perplexity: seed 0)",
        fontsize=9,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


DEFAULT_DOC = "docs/results.md"  # the doc that holds the tables (README links to it)
DOC_BEGIN = "<!-- tables:begin (written by python -m training.tables --doc docs/results.md) -->"
DOC_END = "<!-- tables:end -->"


def write_into_doc(path: Path, text: str) -> None:
    """Replace the block between the two markers in the Markdown file ``path`` with ``text``."""
    doc = path.read_text()
    if DOC_BEGIN not in doc or DOC_END not in doc:
        raise SystemExit(f"{path} has no '{DOC_BEGIN}' ... '{DOC_END}' block")
    head, rest = doc.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    path.write_text(f"{head}{DOC_BEGIN}\n{text.strip()}\n{DOC_END}{tail}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "render"))
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument(
        "--quick", action="store_const", const="quick", dest="size", help="= --size quick (CI)"
    )
    p.add_argument("--out", default="runs/tables")
    p.add_argument("--jobs", type=int, default=1, help="rows trained at the same time")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--rows", default=None, help="comma-separated row keys (default: all)")
    p.add_argument(
        "--seeds",
        default="0",
        help="comma-separated training seeds; every row is trained once per seed and the "
        "tables give the mean and standard deviation (seed 0 in OUT, seed N in OUT/seedN)",
    )
    p.add_argument("--plot", default=None, help="write the LSTG-study curve PNG here")
    p.add_argument(
        "--doc",
        "--readme",  # the old name, kept as an alias
        dest="doc",
        nargs="?",
        const=DEFAULT_DOC,
        default=None,
        help=f"also write the tables into this Markdown file's tables:begin/end block "
        f"(--doc alone: {DEFAULT_DOC})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    os.environ.setdefault(
        "OMP_NUM_THREADS", "1" if args.jobs > 1 else os.environ.get("OMP_NUM_THREADS", "")
    )
    if not os.environ["OMP_NUM_THREADS"]:
        del os.environ["OMP_NUM_THREADS"]
    if args.command == "run":
        only = args.rows.split(",") if args.rows else None
        seeds = tuple(int(v) for v in args.seeds.split(","))
        run_all(args.size, out, args.jobs, args.device, only, seeds)
    else:
        text = render(out, args.size)
        (out / "tables.md").write_text(text)
        print(text)
    if args.plot:
        print(f"wrote {plot_lstg(out, args.size, Path(args.plot))}")
    if args.doc:
        write_into_doc(Path(args.doc), (out / "tables.md").read_text())
        print(f"wrote the tables into {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
