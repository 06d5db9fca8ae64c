"""SAM2-tiny FusionSAM end to end on CPU: parameters and per-pair cost at 480x640.

Why CPU time as well as wall time: on a shared machine the wall clock measures the
other processes; process CPU time with one thread is what one dedicated core would take.
    python scripts/sam2_cpu_cost.py [--preset sam2_hiera_t] [--size 1024] [--iters 2]
    python scripts/sam2_cpu_cost.py --preset tiny --image-encoder sam2_hiera_t --size 320
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: thread policy before torch loads)

# isort: split
import argparse
import time

import numpy as np
import torch

from fusionsam_model.runtime.segmenter import Segmenter


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="sam2_hiera_t")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument(
        "--image-encoder", default=None, help="override, e.g. sam2_hiera_t on --preset tiny"
    )
    a = p.parse_args()
    torch.set_num_threads(1)
    extra = {"image_encoder": a.image_encoder} if a.image_encoder else {}
    seg = Segmenter.from_preset(a.preset, "mfnet", input_size=a.size, **extra)
    model = seg.model if hasattr(seg, "model") else seg.backend.model
    parts = {k: sum(q.numel() for q in m.parameters()) for k, m in model.parts().items()}
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    th = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    seg.predict(rgb, th)  # warm-up
    cpu, wall = [], []
    for _ in range(a.iters):
        c0, w0 = time.process_time(), time.perf_counter()
        pred = seg.predict(rgb, th)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    c, w = float(np.median(cpu)), float(np.median(wall))
    print(
        f"preset {a.preset} ({model.config.image_encoder}), S={model.config.input_size}, 480x640 pair, torch fp32, 1 thread"
    )
    print(
        f"parameters: {sum(parts.values()) / 1e6:.2f} M total; "
        + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in parts.items())
    )
    print(f"CPU time per pair: {c:.2f} s -> {1 / c:.3f} pairs/s on one dedicated core")
    print(f"wall time per pair: {w:.2f} s ({1 / w:.3f} pairs/s on this shared machine)")
    print("stages (ms, last pair): " + ", ".join(f"{k} {v:.0f}" for k, v in pred.timings.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
