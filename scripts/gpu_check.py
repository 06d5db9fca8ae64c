"""GPU check for issue 7: torch fp32 / bf16 / fp16 / compiled latency and Segmenter pairs/s.

Run through ``scripts/gpu_check.sh`` (which installs missing wheels first). Random
weights; batch 1; S = 1024 for the vit_b and vit_h presets; end-to-end pairs/s of
``Segmenter`` on a 480x640 pair (pre- and post-processing included). Goals on one
H100/H200: vit_h >= 20 pairs/s, vit_b >= 60 pairs/s. The TensorRT path runs only when
``import tensorrt`` works. ``--dry-run`` runs every path on the CPU with the tiny preset
at S=64 so the script itself can be checked on a machine without a GPU.

Sized for < 8 minutes on one H100/H200: a deadline skips what no longer fits.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fusionsam_model.data.classes import MFNET
from fusionsam_model.modeling.config import build_config
from fusionsam_model.modeling.model import FusionSAM
from fusionsam_model.runtime.backends.torch_backend import TorchBackend
from fusionsam_model.runtime.bench import synthetic_pair
from fusionsam_model.runtime.segmenter import Segmenter

GOALS = {"vit_h": 20.0, "vit_b": 60.0}
STAGES = ("lstg", "fmp", "front", "image_encoder", "decoder")


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_backend(backend, device: torch.device, size: int, warmup: int, iters: int) -> dict:
    """Median per-stage ms (stage-synchronised) and median end-to-end ms of ``infer``."""
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, 3, size, size, generator=gen).to(device)
    thermal = torch.rand(1, 1, size, size, generator=gen).to(device)
    t0 = time.perf_counter()
    for _ in range(warmup):  # includes torch.compile's compilation on the first call
        backend.infer(rgb, thermal)
    sync(device)
    warmup_s = time.perf_counter() - t0
    stages: dict[str, list[float]] = {}
    totals = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        out = backend.infer(rgb, thermal)
        sync(device)
        totals.append((time.perf_counter() - t0) * 1e3)
        for k, v in out.timings.items():
            stages.setdefault(k, []).append(v)
    return {
        "stages_ms": {k: statistics.median(v) for k, v in stages.items()},
        "e2e_ms": statistics.median(totals),
        "warmup_s": warmup_s,
    }


def time_segmenter(seg: Segmenter, batch: int, warmup: int, iters: int) -> dict:
    """Pairs/s of Segmenter.predict_batch on a 480x640 pair: what the node sees per pair."""
    rgb, thermal = synthetic_pair(480, 640)
    rgbs, thermals = [rgb] * batch, [thermal] * batch
    for _ in range(warmup):
        seg.predict_batch(rgbs, thermals)
    t0 = time.perf_counter()
    stage_samples: dict[str, list[float]] = {}
    for _ in range(iters):
        t = seg.predict_batch(rgbs, thermals)[0].timings
        for k, v in t.items():
            stage_samples.setdefault(k, []).append(v)
    wall = time.perf_counter() - t0
    return {
        "pairs_per_s": iters * batch / wall,
        "stages_ms": {k: statistics.median(v) for k, v in stage_samples.items()},
    }


def tensorrt_row(
    model: FusionSAM, device: torch.device, size: int, warmup: int, iters: int
) -> dict:
    """Export fp32 ONNX, build (or load) fp16 engines, time the TensorRT backend."""
    from fusionsam_model.deploy.export import export_model
    from fusionsam_model.runtime.backends.tensorrt_backend import TensorRTBackend

    work = Path(tempfile.mkdtemp(prefix="fusionsam_trt_"))
    t0 = time.perf_counter()
    export_model(model.float().cpu(), work, MFNET, size)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend = TensorRTBackend(work, device, "fp16")
    build_s = time.perf_counter() - t0
    row = time_backend(backend, device, size, warmup, iters)
    row.update(export_s=export_s, build_s=build_s)
    t0 = time.perf_counter()
    TensorRTBackend(work, device, "fp16")  # a restart must load, not rebuild
    row["reload_s"] = time.perf_counter() - t0
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny preset, S=64, few iterations")
    p.add_argument("--presets", default="vit_b,vit_h")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--compile-mode", default="default", help="torch.compile mode of the compiled row"
    )
    p.add_argument("--no-compile", action="store_true")
    p.add_argument(
        "--budget-s", type=float, default=330.0, help="stop starting new rows after this"
    )
    p.add_argument(
        "--json", default=None, help="write all figures here (default: $OUT/gpu_check.json)"
    )
    args = p.parse_args(argv)
    if args.dry_run:
        args.presets, args.size, args.iters, args.warmup = "tiny", 64, 2, 1
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible (use --dry-run on a CPU machine)", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 row is real fp32
    deadline = Deadline(args.budget_s)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    have_trt = importlib.util.find_spec("tensorrt") is not None
    print(
        f"gpu_check: torch {torch.__version__}, device {gpu}, TensorRT "
        f"{'present' if have_trt else 'absent'}, {time.strftime('%Y-%m-%d %H:%M')}",
        flush=True,
    )
    rows: list[dict] = []
    e2e: list[dict] = []
    for preset in args.presets.split(","):
        torch.manual_seed(0)
        with torch.device(device):  # random init straight on the GPU: seconds, not minutes
            master = FusionSAM(
                build_config(preset, input_size=args.size, num_classes=MFNET.num_classes)
            )
        master.eval()
        variants = [("fp32", None), ("bf16", None), ("fp16", None)]
        if not args.no_compile:
            variants.append(("bf16", args.compile_mode))
        best = None
        for precision, mode in variants:
            if deadline.left() < 0:
                print(f"  skip {preset} {precision} {mode}: over budget", flush=True)
                continue
            backend = TorchBackend(copy.deepcopy(master), device, precision, compile=mode)
            try:
                r = time_backend(backend, device, args.size, args.warmup, args.iters)
            except Exception as exc:  # one failing variant must not hide the others
                print(f"  {preset} {precision} compile={mode}: FAILED {type(exc).__name__}: {exc}")
                continue
            r.update(preset=preset, precision=precision, compile=mode or "-")
            rows.append(r)
            print(
                f"  {preset} {precision} compile={mode or '-'}: {r['e2e_ms']:.2f} ms "
                f"(warm-up {r['warmup_s']:.1f} s) "
                f"{ {k: round(v, 2) for k, v in r['stages_ms'].items()} }",
                flush=True,
            )
            if precision != "fp32" and (best is None or r["e2e_ms"] < best[1]["e2e_ms"]):
                best = ((precision, mode), r, backend)
            else:
                del backend
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if best is not None and deadline.left() > 0:
            (precision, mode), _, backend = best
            seg = Segmenter(backend, MFNET)
            for batch in (1, 4):
                if batch > 1 and deadline.left() < 120:  # a compiled model recompiles for B=4
                    continue
                s = time_segmenter(
                    seg, batch, args.warmup, max(args.iters, 10) if batch == 1 else args.iters
                )
                s.update(preset=preset, precision=precision, compile=mode or "-", batch=batch)
                e2e.append(s)
                print(
                    f"  Segmenter {preset} {precision} compile={mode or '-'} batch {batch}: "
                    f"{s['pairs_per_s']:.1f} pairs/s",
                    flush=True,
                )
        del best, master
        if device.type == "cuda":
            torch.cuda.empty_cache()
    trt = None
    if have_trt and device.type == "cuda" and deadline.left() > 60:
        try:
            torch.manual_seed(0)
            trt = tensorrt_row(
                FusionSAM(build_config("vit_b", input_size=args.size)).eval(),
                device,
                args.size,
                args.warmup,
                args.iters,
            )
        except Exception as exc:
            trt = {"error": f"{type(exc).__name__}: {exc}"}

    # ---- the table -------------------------------------------------------------------
    print(
        f"\n== FusionSAM GPU check: {gpu}, torch {torch.__version__}, S={args.size}, batch 1, random weights =="
    )
    print(
        f"{'preset':<7}{'precision':<10}{'compile':<16}{'e2e ms':>8}{'encoder':>9}{'decoder':>9}"
        f"{'front':>8}{'x fp32':>8}"
    )
    ref = {
        r["preset"]: r["e2e_ms"] for r in rows if r["precision"] == "fp32" and r["compile"] == "-"
    }
    for r in rows:
        st = r["stages_ms"]
        front = st.get("front", st.get("lstg", 0.0) + st.get("fmp", 0.0))
        ratio = ref.get(r["preset"], float("nan")) / r["e2e_ms"]
        print(
            f"{r['preset']:<7}{r['precision']:<10}{r['compile']:<16}{r['e2e_ms']:>8.2f}"
            f"{st.get('image_encoder', 0):>9.2f}{st.get('decoder', 0):>9.2f}{front:>8.2f}{ratio:>8.2f}"
        )
    print(
        f"\n{'Segmenter 480x640':<20}{'config':<26}{'batch':>6}{'pairs/s':>9}{'goal':>7}  verdict"
    )
    for s in e2e:
        goal = GOALS.get(s["preset"])
        verdict = "-" if goal is None else ("MET" if s["pairs_per_s"] >= goal else "missed")
        cfg = f"{s['precision']} compile={s['compile']}"
        print(
            f"{s['preset']:<20}{cfg:<26}{s['batch']:>6}{s['pairs_per_s']:>9.1f}"
            f"{goal if goal else '-':>7}  {verdict}"
        )
    if trt is not None:
        if "error" in trt:
            print(f"\nTensorRT vit_b: FAILED {trt['error']}")
        else:
            print(
                f"\nTensorRT vit_b fp16: {trt['e2e_ms']:.2f} ms e2e "
                f"{ {k: round(v, 2) for k, v in trt['stages_ms'].items()} }; export {trt['export_s']:.0f} s, "
                f"build {trt['build_s']:.0f} s, cached reload {trt['reload_s']:.1f} s"
            )
    else:
        print(
            "\nTensorRT: not installed here (path not measured)"
            if not have_trt
            else "\nTensorRT: skipped"
        )
    out = args.json or (
        os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None
    )
    if out:
        Path(out).write_text(
            json.dumps(
                {
                    "gpu": gpu,
                    "torch": torch.__version__,
                    "size": args.size,
                    "rows": rows,
                    "segmenter": e2e,
                    "tensorrt": trt,
                },
                indent=2,
            )
        )
        print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
