"""Same-process A/B of the pre-change code against this tree: predict() calls interleaved.

Other processes on a shared machine change the speed from one second to the next; two
processes run one after the other see different machines. Here both versions run in one
process, call by call (order alternating), so they see the same load. Both get the same
thread policy (this tree's), so the ratio is the code changes alone.

    git worktree add /tmp/base <commit>
    mkdir -p /tmp/basepkg && cp -r /tmp/base/fusionsam_model /tmp/basepkg/fusionsam_base
    grep -rl fusionsam_model /tmp/basepkg/fusionsam_base | xargs sed -i 's/fusionsam_model/fusionsam_base/g'
    python scripts/ab_against_commit.py --base-pkg /tmp/basepkg --threads 1 --height 1080 --width 1920
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import os
import statistics
import sys
import time

import cv2


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-pkg", required=True, help="folder holding the renamed fusionsam_base")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--no-fused", action="store_true", help="this tree skips the fused image")
    args = p.parse_args()
    sys.path.insert(0, args.base_pkg)
    import torch
    from fusionsam_base.runtime.segmenter import Segmenter as BaseSegmenter

    from fusionsam_model.data.synth import render
    from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT, Segmenter

    torch.set_num_threads(args.threads)
    base, new = BaseSegmenter.from_checkpoint(BUNDLED_CHECKPOINT), Segmenter.from_checkpoint()
    rgb, thermal, _ = render(7, 1000)  # a synthetic drive frame, resized to the camera size
    size = (args.width, args.height)
    rgb, thermal = cv2.resize(rgb, size), cv2.resize(thermal, size)
    calls = {
        "base": lambda: base.predict(rgb, thermal),
        "new": lambda: new.predict(rgb, thermal, return_fused=not args.no_fused),
    }
    for _ in range(3):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {"base": [], "new": []}
    agreement = []
    for i in range(args.iters):
        out = {}
        for name in ("base", "new") if i % 2 == 0 else ("new", "base"):
            t0 = time.perf_counter()
            out[name] = calls[name]()
            times[name].append(time.perf_counter() - t0)
        agreement.append(float((out["base"].labels == out["new"].labels).mean()))
    mb, mn = statistics.median(times["base"]), statistics.median(times["new"])
    print(
        f"A/B {args.height}x{args.width} threads={args.threads} fused={not args.no_fused} "
        f"iters={args.iters} load1={os.getloadavg()[0]:.1f}: base {1 / mb:.2f} pairs/s, "
        f"new {1 / mn:.2f} pairs/s, new/base x{mb / mn:.2f} (min-based "
        f"x{min(times['base']) / min(times['new']):.2f}); label agreement min {min(agreement):.7f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
