"""``fusionsam-bench``: per-stage latency, throughput, parameters and peak memory.

Runs the same ``Segmenter`` the node uses (shared pre/post-processing + a backend) on
a fixed synthetic pair, so the numbers are what a deployment sees end to end.

    fusionsam-bench --preset tiny --device cpu --threads 2
    fusionsam-bench --checkpoint model.pt --device cuda --precision fp16
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import os
import resource
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

from fusionsam_model.runtime.segmenter import STAGES, Segmenter


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fusionsam-bench", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", help="untrained preset: tiny, vit_b, vit_l, vit_h")
    src.add_argument("--checkpoint", help="project checkpoint (.pt) instead of a preset")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", default="torch", help="torch | onnxruntime | tensorrt")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--size", type=int, default=None, help="model input size S (preset only)")
    p.add_argument("--class-table", default="mfnet", help="class table for a preset")
    p.add_argument("--height", type=int, default=480, help="camera image height")
    p.add_argument("--width", type=int, default=640, help="camera image width")
    p.add_argument("--batch", type=int, default=1, help="pairs per network call")
    p.add_argument("--iters", type=int, default=30, help="timed iterations")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="every available backend x precision, torch fp32 first as the reference",
    )
    return p.parse_args(argv)


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    if args.checkpoint:
        return Segmenter.from_checkpoint(
            args.checkpoint, device=args.device, precision=args.precision, backend=args.backend
        )
    return Segmenter.from_preset(
        args.preset,
        class_table=args.class_table,
        input_size=args.size,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
    )


def synthetic_pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random scene (not noise, so the fusion mask has real peaks)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack(
        [127 + 100 * np.sin(xx / (20 + 10 * c) + rng.uniform(0, 6)) for c in range(3)], -1
    )
    thermal = 127 + 100 * np.cos(yy / 30.0) * np.sin(xx / 45.0)
    return rgb.astype(np.uint8), thermal.astype(np.uint8)


def parameter_table(seg: Segmenter) -> list[tuple[str, int, int]]:
    model = getattr(seg.backend, "model", None)
    if model is None or not hasattr(model, "parts"):
        return []
    rows = []
    for name, part in model.parts().items():
        params = list(part.parameters())
        rows.append(
            (
                name,
                sum(p.numel() for p in params),
                sum(p.numel() for p in params if p.requires_grad),
            )
        )
    rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows)))
    return rows


def peak_memory(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.max_memory_allocated(torch.device(device)) / 2**20:.1f} MiB (CUDA max allocated)"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"{rss_kib / 1024:.1f} MiB (process max RSS)"


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    if args.threads:
        torch.set_num_threads(args.threads)
    seg = build_segmenter(args)
    rgb, thermal = synthetic_pair(args.height, args.width)
    rgbs, thermals = [rgb] * args.batch, [thermal] * args.batch
    if args.device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        seg.predict_batch(rgbs, thermals)
    samples: dict[str, list[float]] = {k: [] for k in (*STAGES, "front", "total")}
    wall0 = time.perf_counter()
    for _ in range(args.iters):
        t = seg.predict_batch(rgbs, thermals)[0].timings
        for k in samples:
            samples[k].append(t.get(k, float("nan")))
    wall = time.perf_counter() - wall0

    print(
        f"fusionsam-bench: backend={seg.backend_name} device={args.device} precision={args.precision} "
        f"S={seg.input_size} classes={seg.class_table.num_classes} input={args.height}x{args.width} "
        f"batch={args.batch} iters={args.iters} threads={torch.get_num_threads()} "
        f"cpus={os.cpu_count()} load1={os.getloadavg()[0]:.2f}"
    )
    print(f"{'stage':<15}{'mean ms':>10}{'p50 ms':>10}{'p90 ms':>10}")
    for k, v in samples.items():
        a = np.asarray(v)
        if np.isnan(a).all():  # stage this backend does not have (exported graphs: "front")
            continue
        print(f"{k:<15}{a.mean():>10.2f}{np.percentile(a, 50):>10.2f}{np.percentile(a, 90):>10.2f}")
    pairs = args.iters * args.batch / wall
    print(f"end to end: {pairs:.2f} pairs/s ({1e3 / pairs:.1f} ms per pair, wall clock)")
    rows = parameter_table(seg)
    if rows:
        print(f"{'part':<15}{'params':>12}{'trainable':>12}")
        for name, total, trainable in rows:
            print(f"{name:<15}{total:>12,}{trainable:>12,}")
    print(f"peak memory: {peak_memory(args.device)}")
    return samples


# precisions tried per backend by --compare; CPU runs torch in fp32 only (half is emulated there)
COMPARE = {
    "torch": ("fp32", "bf16", "fp16"),
    "onnxruntime": ("fp32", "fp16"),
    "tensorrt": ("fp16", "fp32"),
}


def compare(args: argparse.Namespace) -> list[tuple[str, str, float, dict[str, float]]]:
    """Run every backend x precision that works here; a summary relative to torch fp32."""
    results = []
    for backend, precisions in COMPARE.items():
        for precision in precisions:
            if backend == "torch" and precision != "fp32" and not args.device.startswith("cuda"):
                continue
            one = argparse.Namespace(**{**vars(args), "backend": backend, "precision": precision})
            try:
                samples = run(one)
            except Exception as exc:  # e.g. TensorRT not installed: say so, go on
                print(
                    f"fusionsam-bench: {backend} {precision} skipped: {type(exc).__name__}: {exc}"
                )
                continue
            p50 = {k: float(np.nanmedian(v)) for k, v in samples.items() if not np.isnan(v).all()}
            results.append((backend, precision, p50["total"], p50))
    ref = next((r[2] for r in results if r[:2] == ("torch", "fp32")), float("nan"))
    stages = ("lstg", "fmp", "front", "image_encoder", "decoder")
    print(
        f"\n{'backend':<13}{'precision':<10}{'total p50':>10}{'pairs/s':>9}{'x torch fp32':>13}"
        + "".join(f"{s:>14}" for s in stages)
    )
    for backend, precision, total, p50 in results:
        cells = "".join(f"{p50.get(s, float('nan')):>14.2f}" for s in stages)
        print(
            f"{backend:<13}{precision:<10}{total:>10.2f}{1e3 * args.batch / total:>9.2f}"
            f"{ref / total:>13.2f}{cells}"
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        compare(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
