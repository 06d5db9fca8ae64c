"""Decode cost per frame of compressed camera input at 640x480 (prints figures; not a test).

What the node's worker pays per pair before inference when the inputs come through
image_transport's compressed transport: ``compressed_image.rgb_from_message`` (end-marker
check + decode + BGR->RGB view) and ``thermal_from_message``, against the raw-Image
conversion. Content matters for PNG, so 16-bit thermal is timed twice: a synthetic scene
widened v*257 (smooth) and the same scene at 14 bits with sensor noise in the low 6 bits
(closer to a radiometric camera). A RoadScene pair resized to 640x480 is timed too when
../shared is present. Run: ``nice .venv/bin/python scripts/bench_decode.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from fusionsam_model.data.synth import render
from fusionsam_ros.node import compressed_image as ci
from fusionsam_ros.node import image_conversion as conv

ROADSCENE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "roadscene"


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (first-call allocations)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def row(label: str, pixels: np.ndarray, encoding: str, codec: str, decode, repeat: int) -> None:
    msg = ci.compressed_message(pixels, encoding, codec, jpeg_quality=90)
    msg.header.stamp.sec = 1
    ms = median_ms(lambda: decode(msg), repeat)
    print(f"{label:<44} {len(msg.data) / 1024:8.0f} KiB {ms:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(
        f"cv2 {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads, decoder "
        f"{'cv_bridge' if conv._BRIDGE is not None else 'cv2.imdecode'}"
    )  # noqa: SLF001
    rgb, thermal8, _ = render(seed=0, index=0)  # 480x640 synthetic day scene
    assert rgb.shape == (480, 640, 3)
    rng = np.random.default_rng(0)
    smooth16 = thermal8.astype(np.uint16) * np.uint16(257)
    noisy16 = (thermal8.astype(np.uint16) << 6) + rng.integers(0, 64, thermal8.shape, np.uint16)
    print(f"{'640x480 frame':<44} {'payload':>12} {'median':>11}")
    raw = conv.array_to_image(rgb, "rgb8")
    raw.header.stamp.sec = 1
    print(
        f"{'raw rgb8 Image (reference)':<44} {len(raw.data) / 1024:8.0f} KiB "
        f"{median_ms(lambda: conv.rgb_from_image(raw), args.repeat):8.3f} ms"
    )
    row("RGB JPEG q90 (synthetic scene)", rgb, "rgb8", "jpeg", ci.rgb_from_message, args.repeat)
    row("RGB PNG (synthetic scene)", rgb, "rgb8", "png", ci.rgb_from_message, args.repeat)
    row(
        "thermal 16-bit PNG, smooth (v*257)",
        smooth16,
        "mono16",
        "png",
        ci.thermal_from_message,
        args.repeat,
    )
    row(
        "thermal 16-bit PNG, 14 bit + 6-bit noise",
        noisy16,
        "mono16",
        "png",
        ci.thermal_from_message,
        args.repeat,
    )
    row(
        "thermal 8-bit PNG (synthetic scene)",
        thermal8,
        "mono8",
        "png",
        ci.thermal_from_message,
        args.repeat,
    )
    visible = sorted((ROADSCENE / "visible").glob("*.jpg"))[:1]
    if visible:
        real = cv2.resize(cv2.imread(str(visible[0]))[..., ::-1], (640, 480))
        infrared = cv2.imread(str(ROADSCENE / "infrared" / visible[0].name), cv2.IMREAD_GRAYSCALE)
        ir16 = cv2.resize(infrared, (640, 480)).astype(np.uint16) * np.uint16(257)
        row(
            f"RGB JPEG q90 (RoadScene {visible[0].stem}, resized)",
            real,
            "rgb8",
            "jpeg",
            ci.rgb_from_message,
            args.repeat,
        )
        row(
            "thermal 16-bit PNG (RoadScene, v*257)",
            ir16,
            "mono16",
            "png",
            ci.thermal_from_message,
            args.repeat,
        )
    else:
        print(f"RoadScene rows skipped: {ROADSCENE} is absent")


if __name__ == "__main__":
    main()
