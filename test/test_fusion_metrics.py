"""Fusion metrics reproduce the VIFB benchmark's own values on its published fused images.

Golden values: ``../shared/data/vifb/metrics.csv`` (computed by the benchmark's MATLAB code).
By default a covering subset runs (every one of the 25 methods and every one of the 21
images at least once: 25 fused images, about a minute on 2 cores); set
``FUSIONSAM_VIFB_ALL=1`` for all 525 fused images (~15 CPU-minutes).

Tolerances (relative error, per metric): the CSV keeps 5 significant digits (so ~1e-5
is the floor), and our JPEG decoder (libjpeg-turbo via OpenCV) is not MATLAB's, which
moves a few grey levels on some images; the SwinFusion / YDTR files differ most (their
histogram metrics move by up to ~2 %, everything else stays below ~1e-3). Each metric
therefore has (a) a max tolerance over every image, set with margin from a run over every
5th of the 525 fused images (105; the all-525 run did not finish on the shared CPU this
session), and (b) a median tolerance of 1e-4, which only an exact re-implementation meets.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from fusionsam_model.evaluation import fusion_metrics as fm

VIFB = Path(__file__).resolve().parents[2] / "shared" / "data" / "vifb"
pytestmark = pytest.mark.skipif(
    not (VIFB / "metrics.csv").is_file(), reason=f"VIFB benchmark data not found at {VIFB}"
)

MAX_REL_TOL = {
    "Avg_gradient": 2e-3,
    "Cross_entropy": 3e-2,
    "Edge_intensity": 3e-3,
    "Entropy": 2e-3,
    "Mutinf": 1.5e-2,
    "Psnr": 2e-4,
    "Qabf": 6e-3,
    "Qcb": 1e-2,
    "Qcv": 1.2e-2,
    "Rmse": 2e-3,
    "Spatial_frequency": 2e-3,
    "Ssim": 1.5e-3,
    "Variance": 2e-3,
}
MEDIAN_REL_TOL = 1e-4


def _golden() -> dict[tuple[str, str], dict[str, float]]:
    values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    with open(VIFB / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            values[(row["image"], row["method"])][row["metric"]] = float(row["value"])
    return values


@pytest.fixture(scope="module")
def relative_errors() -> dict[str, list[tuple[float, str]]]:
    golden = _golden()
    pairs = sorted(k for k in golden if (VIFB / "fused" / f"{k[0]}_{k[1]}.jpg").is_file())
    if not os.environ.get("FUSIONSAM_VIFB_ALL"):
        images = sorted({i for i, _ in pairs})
        methods = sorted({m for _, m in pairs})
        pairs = [(images[i % len(images)], m) for i, m in enumerate(methods)]
    errors: dict[str, list[tuple[float, str]]] = defaultdict(list)
    sources: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for image, method in pairs:
        if image not in sources:
            sources = {
                image: (
                    fm.load_image(VIFB / "input" / "VI" / f"{image}.jpg"),
                    fm.load_image(VIFB / "input" / "IR" / f"{image}.jpg"),
                )
            }
        fused = fm.load_image(VIFB / "fused" / f"{image}_{method}.jpg")
        ours = fm.compute(*sources[image], fused, fm.VIFB_METRICS)
        for name in fm.VIFB_METRICS:
            ref = golden[(image, method)][name]
            errors[name].append((abs(ours[name] - ref) / abs(ref), f"{image}/{method}"))
    return errors


def test_reproduces_vifb_values(relative_errors, capsys) -> None:
    n = len(next(iter(relative_errors.values())))
    lines = [f"VIFB reproduction over {n} fused images: per-metric relative error"]
    failures = []
    for name in fm.VIFB_METRICS:
        errs = sorted(relative_errors[name])
        worst, where = errs[-1]
        median = errs[len(errs) // 2][0]
        lines.append(
            f"  {name:18s} max {worst:.2e} ({where})  median {median:.1e}  "
            f"tol max {MAX_REL_TOL[name]:.0e} median {MEDIAN_REL_TOL:.0e}"
        )
        if worst > MAX_REL_TOL[name] or median > MEDIAN_REL_TOL:
            failures.append(name)
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not failures, "\n".join(lines)


def test_scd_and_vif_definitions() -> None:
    """No golden values exist for VIF / SCD; check identities their definitions imply."""
    rng = np.random.default_rng(0)
    vi = rng.integers(0, 256, (64, 80)).astype(np.float64)
    ir = rng.integers(0, 256, (64, 80)).astype(np.float64)
    # F = vi + ir: F - ir = vi and F - vi = ir, so both correlations are exactly 1
    assert fm.compute(vi, ir, vi + ir, ["SCD"])["SCD"] == pytest.approx(2.0, abs=1e-9)
    # an image carries all of its own visual information: VIF(x, x) = 1
    stack = vi[None]
    assert fm._vif_pixel(stack, stack)[0] == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(vi + rng.normal(0, 40, vi.shape), 0, 255)[None]
    assert 0.0 < fm._vif_pixel(stack, noisy)[0] < 0.9


def test_no_reference_subset_and_validation() -> None:
    rng = np.random.default_rng(1)
    vi = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    fused = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    full = fm.compute(vi, ir, fused)
    assert set(full) == set(fm.METRICS)
    assert all(np.isfinite(v) for v in full.values())
    assert fm.compute_no_reference(fused) == {k: full[k] for k in fm.NO_REFERENCE_METRICS}
    with pytest.raises(ValueError, match="sizes differ"):
        fm.compute(vi, ir[:-1], fused)
    with pytest.raises(ValueError, match="unknown fusion metrics"):
        fm.compute(vi, ir, fused, ["Sharpness"])
