"""``fusionsam-bench``: per-stage latency, throughput, parameters and peak memory.

Runs the same ``Segmenter`` the node uses (shared pre/post-processing + a backend) on
a fixed synthetic pair, so the numbers are what a deployment sees end to end.

    fusionsam-bench --preset tiny --device cpu --threads 2
    fusionsam-bench --checkpoint model.pt --device cuda --precision fp16
    fusionsam-bench --checkpoint model.pt --threads 2 --load 1      # beside a busy process
    fusionsam-bench --checkpoint model.pt --compare                 # backends, interleaved
    fusionsam-bench --checkpoint model.pt --peers                   # vs torchvision models
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from fusionsam_model.runtime.segmenter import STAGES, Segmenter
from fusionsam_model.runtime.threads import passive_wait_policy, set_torch_threads


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
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (torch.set_num_threads and onnxruntime intra-op); default: one per "
        "core; 0: chosen while running by measurement, as the node's cpu_threads=0 (torch)",
    )
    p.add_argument(
        "--no-fused",
        action="store_true",
        help="do not resize the fused image to the camera size (a node not publishing it)",
    )
    p.add_argument(
        "--load",
        type=int,
        default=0,
        help="run this many CPU-bound processes beside the benchmark (a shared machine)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--compare",
        action="store_true",
        help="every available backend x precision, same threads, interleaved; torch fp32 is "
        "the reference",
    )
    mode.add_argument(
        "--peers",
        action="store_true",
        help="this model vs torchvision LR-ASPP / DeepLabV3 MobileNetV3 (4-channel input, "
        "random weights) at the same input resolution, interleaved",
    )
    return p.parse_args(argv)


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    # torch's threads are process-wide (set_torch_threads); onnxruntime's are per session
    kw = {} if args.backend == "torch" else {"threads": args.threads or torch.get_num_threads()}
    if args.checkpoint:
        return Segmenter.from_checkpoint(
            args.checkpoint,
            device=args.device,
            precision=args.precision,
            backend=args.backend,
            **kw,
        )
    if kw:  # a preset is exported through its model: the factory gets the threads directly
        seg = Segmenter.from_preset(
            args.preset,
            class_table=args.class_table,
            input_size=args.size,
            device=args.device,
            precision=args.precision,
        )
        from fusionsam_model.runtime.backends import make_backend

        seg.backend = make_backend(
            args.backend, seg.backend.model, device=args.device, precision=args.precision, **kw
        )
        return seg
    return Segmenter.from_preset(
        args.preset,
        class_table=args.class_table,
        input_size=args.size,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
    )


@contextlib.contextmanager
def background_load(processes: int) -> Iterator[None]:
    """``processes`` busy-looping Python processes for the duration (ended on exit)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        if procs:
            time.sleep(0.5)  # let them start before the first timed call
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def header_line(args: argparse.Namespace, what: str) -> str:
    return (
        f"fusionsam-bench: {what} device={args.device} input={args.height}x{args.width} "
        f"batch={args.batch} iters={args.iters} "
        f"threads={'auto' if args.threads == 0 else torch.get_num_threads()} "
        f"fused={'no' if args.no_fused else 'yes'} omp_wait_policy={os.environ.get('OMP_WAIT_POLICY')} (passive: {passive_wait_policy()}) "
        f"load_processes={args.load} cpus={os.cpu_count()} load1={os.getloadavg()[0]:.2f}"
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
    set_torch_threads(args.threads)
    seg = build_segmenter(args)
    if args.threads == 0:
        seg.set_cpu_threads(0)
    rgb, thermal = synthetic_pair(args.height, args.width)
    rgbs, thermals = [rgb] * args.batch, [thermal] * args.batch
    if args.device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        seg.predict_batch(rgbs, thermals, return_fused=not args.no_fused)
    samples: dict[str, list[float]] = {k: [] for k in (*STAGES, "total")}
    wall0 = time.perf_counter()
    for _ in range(args.iters):
        t = seg.predict_batch(rgbs, thermals, return_fused=not args.no_fused)[0].timings
        for k in samples:
            samples[k].append(t.get(k, float("nan")))
    wall = time.perf_counter() - wall0

    print(
        header_line(
            args,
            f"backend={seg.backend_name} precision={args.precision} S={seg.input_size} "
            f"classes={seg.class_table.num_classes}",
        )
    )
    print(f"{'stage':<15}{'min ms':>10}{'mean ms':>10}{'p50 ms':>10}{'p90 ms':>10}")
    for k, v in samples.items():
        a = np.asarray(v)
        if np.isnan(a).all():  # stage this backend does not have (exported graphs: "front")
            continue
        print(
            f"{k:<15}{a.min():>10.2f}{a.mean():>10.2f}{np.percentile(a, 50):>10.2f}"
            f"{np.percentile(a, 90):>10.2f}"
        )
    pairs = args.iters * args.batch / wall
    print(f"end to end: {pairs:.2f} pairs/s ({1e3 / pairs:.1f} ms per pair, wall clock)")
    print(f"threads: {seg.threads_info()}")
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


def interleave(
    calls: dict[str, Callable[[], dict[str, float] | None]], rounds: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Each call once per round, the order rotated every round, so that a change in the
    machine's load (other processes) hits every candidate alike. A call returns its
    stage timings (ms) or None to be timed here as a whole ("total")."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            timings = calls[name]()
            elapsed = (time.perf_counter() - t0) * 1e3
            for k, v in (timings or {"total": elapsed}).items():
                samples[name].setdefault(k, []).append(v)
    return samples


def compare(args: argparse.Namespace) -> list[tuple[str, str, float, float, dict[str, float]]]:
    """Every backend x precision that works here, with the same threads, interleaved; min
    and median relative to torch fp32."""
    set_torch_threads(args.threads)
    threads = torch.get_num_threads()
    rgb, thermal = synthetic_pair(args.height, args.width)
    rgbs, thermals = [rgb] * args.batch, [thermal] * args.batch
    fused = not args.no_fused
    calls: dict[str, Callable[[], dict[str, float]]] = {}
    for backend, precisions in COMPARE.items():
        for precision in precisions:
            if backend == "torch" and precision != "fp32" and not args.device.startswith("cuda"):
                continue
            one = argparse.Namespace(
                **{**vars(args), "backend": backend, "precision": precision, "threads": threads}
            )
            try:
                seg = build_segmenter(one)
            except Exception as exc:  # e.g. TensorRT not installed: say so, go on
                print(
                    f"fusionsam-bench: {backend} {precision} skipped: {type(exc).__name__}: {exc}"
                )
                continue
            calls[f"{backend} {precision}"] = lambda seg=seg: (
                seg.predict_batch(rgbs, thermals, return_fused=fused)[0].timings
            )
    samples = interleave(calls, args.iters, args.warmup)
    print(header_line(args, "--compare (interleaved)"))
    results = []
    for name, stages in samples.items():
        backend, precision = name.split()
        p50 = {k: float(np.nanmedian(v)) for k, v in stages.items() if not np.isnan(v).all()}
        results.append((backend, precision, float(np.min(stages["total"])), p50["total"], p50))
    ref = next((r[3] for r in results if r[:2] == ("torch", "fp32")), float("nan"))
    cols = STAGES
    print(
        f"\n{'backend':<13}{'precision':<10}{'min ms':>8}{'p50 ms':>8}{'pairs/s':>9}"
        f"{'x torch fp32':>13}" + "".join(f"{c:>14}" for c in cols) + "   (stage p50 ms)"
    )
    for backend, precision, best, total, p50 in results:
        cells = "".join(f"{p50.get(c, float('nan')):>14.2f}" for c in cols)
        print(
            f"{backend:<13}{precision:<10}{best:>8.2f}{total:>8.2f}{1e3 * args.batch / total:>9.2f}"
            f"{ref / total:>13.2f}{cells}"
        )
    return results


PEERS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")


def peer_model(name: str, num_classes: int) -> torch.nn.Module:
    """A torchvision segmentation model with random weights and a 4-channel (RGB + thermal)
    first convolution, in eval mode."""
    from torchvision.models import segmentation

    model = getattr(segmentation, name)(
        weights=None, weights_backbone=None, num_classes=num_classes
    )
    first = model.backbone["0"][0]
    model.backbone["0"][0] = torch.nn.Conv2d(
        4, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False
    )
    return model.eval()


def peers(args: argparse.Namespace) -> dict[str, float]:
    """Network time of this model vs the torchvision peers at the same input (S x S, the
    size this model runs at), interleaved in one process, as ratios (> 1: peer is slower)."""
    set_torch_threads(args.threads)
    seg = build_segmenter(args)
    s, classes = seg.input_size, seg.class_table.num_classes
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(args.batch, 3, s, s, generator=gen)
    thermal = torch.rand(args.batch, 1, s, s, generator=gen)
    four = torch.cat([rgb, thermal], 1)

    def ours() -> None:
        seg.backend.infer(rgb, thermal)  # timed as a whole, like the peers

    calls: dict[str, Callable[[], None]] = {"fusionsam": ours}
    for name in PEERS:
        model = peer_model(name, classes)

        def forward(model: torch.nn.Module = model) -> None:
            with torch.inference_mode():
                model(four)["out"]

        calls[name] = forward
    samples = interleave(calls, args.iters, args.warmup)
    print(header_line(args, f"--peers (network only, input {s}x{s}, interleaved)"))
    ours = float(np.median(samples["fusionsam"]["total"]))
    print(f"{'model':<32}{'min ms':>9}{'p50 ms':>9}{'x fusionsam time':>18}")
    ratios = {}
    for name, stages in samples.items():
        p50 = float(np.median(stages["total"]))
        ratios[name] = p50 / ours
        print(f"{name:<32}{np.min(stages['total']):>9.2f}{p50:>9.2f}{p50 / ours:>18.2f}")
    return ratios


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with background_load(args.load):
        if args.compare:
            compare(args)
        elif args.peers:
            peers(args)
        else:
            run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
