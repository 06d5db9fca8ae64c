"""Pairs/s of this tree vs another checkout (e.g. the commit before a change), interleaved.

    git worktree add /tmp/base <commit>
    python scripts/bench_against_commit.py --base /tmp/base --load 1 --rounds 3

Each round runs ``fusionsam-bench`` once per (camera size, threads, tree), alternating
which tree goes first, with ``--load`` busy processes beside the whole run (a shared
machine); the summary gives the median pairs/s of each and their ratio. The base tree
runs with its own code and its own thread policy (what it shipped with).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CHECKPOINT = "fusionsam_model/weights/fusionsam_tiny_synth.pt"


def bench(tree: Path, h: int, w: int, threads: int, iters: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "fusionsam_model.runtime.bench", "--checkpoint", CHECKPOINT]
    cmd += ["--height", str(h), "--width", str(w), "--threads", str(threads)]
    cmd += ["--iters", str(iters), "--warmup", "3", *extra]
    out = subprocess.run(
        cmd,
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"end to end: ([0-9.]+) pairs/s", out).group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, type=Path, help="the other checkout")
    p.add_argument("--load", type=int, default=1, help="busy processes beside the run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--sizes", default="480x640,1080x1920")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--new-args", default="", help="extra fusionsam-bench options for this tree")
    args = p.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    trees = {"base": (args.base.resolve(), []), "new": (HERE, args.new_args.split())}
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    results: dict[tuple, list[float]] = {}
    try:
        time.sleep(0.5)
        for r in range(args.rounds):
            for h, w in sizes:
                for t in threads:
                    order = ["base", "new"] if (r + t) % 2 == 0 else ["new", "base"]
                    for name in order:
                        tree, extra = trees[name]
                        rate = bench(tree, h, w, t, args.iters, extra)
                        results.setdefault((h, w, t, name), []).append(rate)
                        print(
                            f"round {r} {h}x{w} threads={t} {name}: {rate:.2f} pairs/s", flush=True
                        )
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    print(f"\nmedian pairs/s over {args.rounds} rounds, {args.load} busy process(es) beside")
    print(f"{'input':<11}{'threads':>8}{'base':>8}{'new':>8}{'new/base':>10}")
    for h, w in sizes:
        for t in threads:
            b = statistics.median(results[(h, w, t, "base")])
            n = statistics.median(results[(h, w, t, "new")])
            print(f"{f'{h}x{w}':<11}{t:>8}{b:>8.2f}{n:>8.2f}{n / b:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
