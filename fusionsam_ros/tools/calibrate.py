"""``fusionsam-calibrate``: estimate ``thermal_homography`` from recorded pairs.

    fusionsam-calibrate --visible DIR --infrared DIR [--frames 30] [--out runs/calibration]
    fusionsam-calibrate --bag BAG [--rgb-topic rgb/image] [--thermal-topic thermal/image]
    fusionsam-calibrate ... --checkerboard 9x6      # a heated board visible in both cameras

Writes ``thermal_homography.yaml`` (load it with ``fusionsam_node --ros-args --params-file``),
``overlay.png`` (thermal edges over RGB, before | after) and ``calibration.json``. Prints the
residual, the ECC correlation and the coverage. Exit codes: 0 written; 1 the pairs cannot be
aligned (no overlap, no edges, not converging, low correlation: nothing written); 2 bad
arguments or unreadable input.

The tool lives on the ROS side because of ``--bag`` (read by ``fusionsam_ros.bags.pairs``,
imported only then: the folder input works without rclpy); the algorithms are
``fusionsam_model.calibration``'s (targetless, checkerboard, overlay) and the model package
never imports this one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from fusionsam_model.calibration import checkerboard, targetless
from fusionsam_model.calibration.pairs import PairsError, folder_pairs
from fusionsam_model.calibration.result import Calibration, Pair
from fusionsam_model.runtime.registration import HomographyError, load_homography, params_yaml

EXIT_CANNOT_ALIGN = 1
EXIT_BAD_INPUT = 2
MIN_COVERAGE = 0.05  # share of the RGB frame; below, the cameras hardly overlap
OVERLAY_PAIRS = 3


class _Keep:
    """Passes pairs through, keeping the first few readable ones for the overlay picture."""

    def __init__(self, pairs: Iterable[Pair], count: int) -> None:
        self.pairs, self.count, self.kept = pairs, count, []

    def __len__(self) -> int:
        return len(self.pairs)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Pair]:
        for pair in self.pairs:
            if not pair.error and len(self.kept) < self.count:
                self.kept.append(pair)
            yield pair


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fusionsam-calibrate",
        description="Estimate thermal_homography (thermal pixel -> RGB pixel) from recorded "
        "pairs; writes a params file for fusionsam_node and an overlay picture.",
    )
    src = p.add_argument_group("input (two folders matched by file name, or a bag)")
    src.add_argument("--visible", help="folder of RGB images")
    src.add_argument("--infrared", help="folder of thermal images (same names)")
    src.add_argument("--bag", help="rosbag2 with the node's camera topics (raw or compressed)")
    src.add_argument("--rgb-topic", default="rgb/image", help="(--bag) RGB topic")
    src.add_argument("--thermal-topic", default="thermal/image", help="(--bag) thermal topic")
    src.add_argument("--slop", type=float, default=0.05, help="(--bag) pairing slop, seconds")
    p.add_argument("--frames", type=int, default=30, help="pairs used, spread evenly (0 = all)")
    p.add_argument("--checkerboard", metavar="COLSxROWS", help="inner corners of a heated board")
    p.add_argument(
        "--min-correlation",
        type=float,
        default=targetless.MIN_CORRELATION,
        help="ECC correlation below which a frame (or the result) is refused",
    )
    p.add_argument("--min-coverage", type=float, default=MIN_COVERAGE, help="of the RGB frame")
    p.add_argument("--init", help="starting homography: 9 numbers or a params file (targetless)")
    p.add_argument("--out", default="runs/calibration", help="output folder")
    p.add_argument("--node-name", default="fusionsam_node", help="node key in the params file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def bag_pairs(
    bag: Path, rgb_topic: str, thermal_topic: str, frames: int | None, slop_s: float
) -> Iterable[Pair]:
    """Pairs from a rosbag2 (raw or compressed topics), decoded as the node decodes them;
    needs rclpy (``fusionsam_ros.bags.pairs``)."""
    try:
        from ..bags.pairs import BagPairs
    except ImportError as exc:  # rclpy / sensor_msgs missing: the folder input still works
        raise PairsError(f"reading a bag needs the ROS 2 Python packages: {exc}") from exc
    return BagPairs(bag, rgb_topic, thermal_topic, frames, slop_s)


def open_pairs(args: argparse.Namespace) -> Iterable[Pair]:
    frames = args.frames or None
    if args.bag and (args.visible or args.infrared):
        raise PairsError("give either --bag or --visible and --infrared, not both")
    if args.bag:
        return bag_pairs(Path(args.bag), args.rgb_topic, args.thermal_topic, frames, args.slop)
    if not (args.visible and args.infrared):
        raise PairsError("give --visible DIR and --infrared DIR, or --bag BAG")
    return folder_pairs(Path(args.visible), Path(args.infrared), frames)


def run(args: argparse.Namespace) -> Calibration:
    """Calibrate; raises PairsError / ValueError (bad input) or AlignmentError."""
    pairs = _Keep(open_pairs(args), OVERLAY_PAIRS)
    progress = not args.no_progress
    if args.checkerboard:
        cal = checkerboard.calibrate(pairs, checkerboard.parse_size(args.checkerboard), progress)
    else:
        inits = [load_homography(args.init)] if args.init else None
        cal = targetless.calibrate(pairs, args.min_correlation, inits, progress)
    if not math.isfinite(cal.coverage) or cal.coverage < args.min_coverage:
        raise targetless.AlignmentError(
            f"the estimate covers {100 * cal.coverage:.1f} % of the RGB frame "
            f"(< {100 * args.min_coverage:.0f} %): the cameras do not overlap"
        )
    cal.overlay_pairs = [(p.rgb, p.thermal) for p in pairs.kept]
    return cal


def write(cal: Calibration, out: Path, node_name: str, source: str) -> list[Path]:
    from fusionsam_model.calibration import overlay

    out.mkdir(parents=True, exist_ok=True)
    params = out / "thermal_homography.yaml"
    comment = (
        f"fusionsam-calibrate ({cal.method}) from {source}: residual {cal.residual_px:.2f} px, "
        f"coverage {100 * cal.coverage:.1f} %, thermal {cal.thermal_hw[1]}x{cal.thermal_hw[0]} "
        f"-> RGB {cal.rgb_hw[1]}x{cal.rgb_hw[0]}"
    )
    params.write_text(params_yaml(cal.homography, node_name, comment))
    report = out / "calibration.json"
    report.write_text(
        json.dumps(
            {
                "source": source,
                "method": cal.method,
                "thermal_homography": cal.homography.reshape(-1).tolist(),
                "thermal_size": [cal.thermal_hw[1], cal.thermal_hw[0]],
                "rgb_size": [cal.rgb_hw[1], cal.rgb_hw[0]],
                "residual_px": cal.residual_px,
                "residual_kind": cal.residual_kind,
                "correlation": cal.correlation,
                "coverage": cal.coverage,
                "frames_total": cal.frames_total,
                "frames_used": cal.frames_used,
                "rejected": [{"name": n, "why": w} for n, w in cal.rejected],
            },
            indent=1,
        )
    )
    picture = overlay.save(out / "overlay.png", cal.overlay_pairs, cal.homography)
    return [params, picture, report]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    source = args.bag or f"{args.visible} + {args.infrared}"
    try:
        cal = run(args)
    except (PairsError, HomographyError, ValueError) as exc:
        if isinstance(exc, targetless.AlignmentError):
            print(f"fusionsam-calibrate: cannot align: {exc}; nothing written", file=sys.stderr)
            return EXIT_CANNOT_ALIGN
        print(f"fusionsam-calibrate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(cal.summary())
    print("thermal_homography: [" + ", ".join(f"{v:.8g}" for v in cal.homography.reshape(-1)) + "]")
    try:
        paths = write(cal, Path(args.out), args.node_name, source)
    except OSError as exc:
        print(f"fusionsam-calibrate: cannot write to {args.out}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("wrote " + ", ".join(str(p) for p in paths))
    print(f"use: fusionsam_node --ros-args --params-file {paths[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
