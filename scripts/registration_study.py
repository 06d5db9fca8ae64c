"""Registration study (issue 24): does fusionsam-calibrate recover known homographies on
real pairs, what does the warp cost, and do masks agree with the registered prediction?

    python scripts/registration_study.py [--cases 24] [--frames 30] [--single 24]
        [--agreement-frames 12] [--out runs/registration_study]
    python scripts/registration_study.py --plot RUN [RUN ...] --out DIR   # DIR/recovery.png

Cases are built from registered real pairs (RoadScene ``../shared/data/roadscene``,
msrs_dev ``../shared/data/msrs_dev``): a thermal camera with a narrower field of view
(0.75 of the RGB frame a side) is simulated by resampling the registered infrared image
through a random, seeded homography G (shift up to +-25 px, scale 0.9-1.1, rotation
+-3 deg, perspective up to 3e-5 / px, about the frame centres), so that G is the true
thermal -> RGB homography. The calibration (``targetless.calibrate``, what
fusionsam-calibrate runs) sees only the RGB images and the resampled thermal images.
Error = mean distance (RGB px) between where G and the estimate put the thermal frame's
four corners. Multi-frame cases use a clip of consecutive frames of one sequence
(RoadScene, msrs_dev day, msrs_dev night), as a rig recording would; single-frame cases
one pair each. The mask agreement runs the Segmenter (the node's code path:
``Segmenter.predict`` with ``thermal_homography``) on the warped stream with the
estimated homography and compares with its prediction on the registered pair, over the
RGB pixels the thermal camera sees.
"""

from __future__ import annotations

import fusionsam_model.runtime.threads  # noqa: F401  (first: OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusionsam_model.calibration import targetless
from fusionsam_model.calibration.pairs import folder_names, read_pair
from fusionsam_model.calibration.result import Pair
from fusionsam_model.runtime.registration import Registration

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ROADSCENE_HW = (280, 420)  # common centre crop of the RoadScene pairs (their sizes vary)
THERMAL_FRACTION = 0.75  # thermal frame side / RGB frame side
SHIFT_PX, SCALE, ROTATION_DEG, PERSPECTIVE = 25.0, (0.9, 1.1), 3.0, 3e-5


@dataclass
class Sequence_:
    name: str
    frames: list[tuple[str, np.ndarray, np.ndarray]]  # (name, rgb, registered infrared)


def load_sources() -> list[Sequence_]:
    """RoadScene (centre-cropped to one size), msrs_dev day and night sequences."""
    out = []
    road = DATA / "roadscene"
    if (road / "visible").is_dir():
        frames = []
        for name, vis, ir in folder_names(road / "visible", road / "infrared"):
            pair = read_pair(name, vis, ir)
            if pair.error:
                continue
            h, w = pair.thermal.shape
            ch, cw = ROADSCENE_HW
            if h < ch or w < cw:
                continue
            y, x = (h - ch) // 2, (w - cw) // 2
            frames.append(
                (name, pair.rgb[y : y + ch, x : x + cw], pair.thermal[y : y + ch, x : x + cw])
            )
        out.append(Sequence_("roadscene", frames))
    msrs = DATA / "msrs_dev"
    if (msrs / "vi").is_dir():
        pairs = [read_pair(n, v, i) for n, v, i in folder_names(msrs / "vi", msrs / "ir")]
        for tag, label in (("D", "msrs_day"), ("N", "msrs_night")):
            out.append(
                Sequence_(label, [(p.name, p.rgb, p.thermal) for p in pairs if p.name[-1] == tag])
            )
    return [s for s in out if s.frames]


def random_homography(
    rng: np.random.Generator, thermal_hw: tuple[int, int], rgb_hw: tuple[int, int]
) -> np.ndarray:
    """Thermal -> RGB: the thermal centre to the RGB centre, then a random similarity with
    mild perspective and a shift."""
    (th, tw), (rh, rw) = thermal_hw, rgb_hw
    s = rng.uniform(*SCALE)
    a = np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    dx, dy = rng.uniform(-SHIFT_PX, SHIFT_PX, 2)
    px, py = rng.uniform(-PERSPECTIVE, PERSPECTIVE, 2)
    to_centre = np.array([[1, 0, -(tw - 1) / 2], [0, 1, -(th - 1) / 2], [0, 0, 1]])
    core = np.array(
        [[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [px, py, 1]]
    )
    back = np.array([[1, 0, (rw - 1) / 2 + dx], [0, 1, (rh - 1) / 2 + dy], [0, 0, 1]])
    h = back @ core @ to_centre
    return h / h[2, 2]


def thermal_camera(infrared: np.ndarray, g: np.ndarray, thermal_hw: tuple[int, int]) -> np.ndarray:
    """What a thermal camera with homography ``g`` to the RGB frame records: pixel q shows
    the registered infrared image at g(q)."""
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpPerspective(
        infrared, g, (thermal_hw[1], thermal_hw[0]), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )


def thermal_size(rgb_hw: tuple[int, int]) -> tuple[int, int]:
    return round(rgb_hw[0] * THERMAL_FRACTION), round(rgb_hw[1] * THERMAL_FRACTION)


@dataclass
class CaseResult:
    error_px: float  # against G
    error_vs_residual_px: float  # against G @ R0 (the same frames' no-warp residual removed)
    no_warp_px: float  # the no-warp calibration's distance from the dataset's registration
    correlation: float
    refused: str
    homography: np.ndarray | None


def calibrate_warped(
    frames: list[tuple[str, np.ndarray, np.ndarray]], g: np.ndarray
) -> tuple[np.ndarray | None, float, str]:
    """Calibrate on the RGB images and the thermal images a camera with ``g`` records."""
    t_hw = thermal_size(frames[0][1].shape[:2])
    pairs = [Pair(n, rgb, thermal_camera(ir, g, t_hw)) for n, rgb, ir in frames]
    try:
        cal = targetless.calibrate(pairs, measure_residual=False)
    except targetless.AlignmentError as exc:
        return None, float("nan"), str(exc)
    return cal.homography, cal.correlation, ""


def centred(rgb_hw: tuple[int, int]) -> np.ndarray:
    """The no-warp thermal camera: the central crop, a pure shift."""
    t_hw = thermal_size(rgb_hw)
    return np.array(
        [[1.0, 0, (rgb_hw[1] - t_hw[1]) / 2], [0, 1.0, (rgb_hw[0] - t_hw[0]) / 2], [0, 0, 1]]
    )


def run_case(frames: list[tuple[str, np.ndarray, np.ndarray]], g: np.ndarray) -> CaseResult:
    """One case, and the same frames without a warp (the central crop): where the dataset's
    own registration is not one exact homography, the no-warp estimate already differs
    from it by a residual R0 (in thermal pixels) that the warped case inherits, so the
    estimate is also compared with G @ R0."""
    rgb_hw = frames[0][1].shape[:2]
    t_hw = thermal_size(rgb_hw)
    h, rho, refused = calibrate_warped(frames, g)
    c = centred(rgb_hw)
    h0, _, _ = calibrate_warped(frames, c)
    inf = float("inf")
    err = targetless.corner_error(h, g, t_hw) if h is not None else inf
    no_warp = targetless.corner_error(h0, c, t_hw) if h0 is not None else float("nan")
    err_r0 = float("nan")
    if h is not None and h0 is not None:
        r0 = np.linalg.inv(c) @ h0
        err_r0 = targetless.corner_error(h, g @ r0, t_hw)
    elif h is None:
        err_r0 = inf
    return CaseResult(err, err_r0, no_warp, rho, refused, h)


def distribution(errors: list[float]) -> dict[str, float]:
    e = np.asarray(errors, np.float64)
    finite = e[np.isfinite(e)]
    return {
        "cases": int(e.size),
        "share_le_1px": float(np.mean(e <= 1.0)),
        "share_le_2px": float(np.mean(e <= 2.0)),
        "share_le_5px": float(np.mean(e <= 5.0)),
        "refused": int(np.sum(~np.isfinite(e))),
        "median_px": float(np.median(finite)) if finite.size else float("nan"),
        "p90_px": float(np.percentile(finite, 90)) if finite.size else float("nan"),
        "max_px": float(finite.max()) if finite.size else float("nan"),
    }


def pick_frames(seq: Sequence_, count: int, rng) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``count`` frames spread over the sequence from a random offset: a rig calibration
    records a drive, not one scene (msrs_dev neighbours are 4 video frames apart)."""
    step = max(1, len(seq.frames) // count)
    offset = int(rng.integers(0, step))
    return seq.frames[offset::step][:count]


def record(kind: str, source: str, clip: list, r: CaseResult) -> dict:
    row = {"kind": kind, "source": source, "first": clip[0][0], "frames": len(clip),
           "error_px": r.error_px, "error_vs_G_R0_px": r.error_vs_residual_px,
           "no_warp_px": r.no_warp_px, "correlation": r.correlation, "refused": r.refused}  # fmt: skip
    print(
        f"{kind:6s} {source:10s} {clip[0][0]:>16s} x{len(clip):<2d}: error {r.error_px:6.2f} px "
        f"(vs G@R0 {r.error_vs_residual_px:5.2f} px; no-warp residual {r.no_warp_px:5.2f} px), "
        f"correlation {r.correlation:.3f} {r.refused}",
        flush=True,
    )
    return row


def recovery(sources: list[Sequence_], args: argparse.Namespace, rng) -> dict:
    """Multi-frame and single-frame cases with random homographies."""
    details = []
    seconds = {"multi": 0.0, "single": 0.0}
    pool = [(s.name, f) for s in sources for f in s.frames]
    for kind, count in (("multi", args.cases), ("single", args.single)):
        for k in range(count):
            if kind == "multi":
                seq = sources[k % len(sources)]
                source, clip = seq.name, pick_frames(seq, args.frames, rng)
            else:
                source, frame = pool[int(rng.integers(0, len(pool)))]
                clip = [frame]
            rgb_hw = clip[0][1].shape[:2]
            g = random_homography(rng, thermal_size(rgb_hw), rgb_hw)
            t0 = time.perf_counter()
            details.append(record(kind, source, clip, run_case(clip, g)))
            seconds[kind] += (time.perf_counter() - t0) / 2  # run_case calibrates twice
    out: dict = {}
    for kind in ("multi", "single"):
        rows = [d for d in details if d["kind"] == kind]
        if not rows:
            continue
        out[kind] = distribution([d["error_px"] for d in rows])
        out[f"{kind}_vs_G_R0"] = distribution([d["error_vs_G_R0_px"] for d in rows])
        for src in sorted({d["source"] for d in rows}):
            mine = [d for d in rows if d["source"] == src]
            out[f"{kind} {src}"] = distribution([d["error_px"] for d in mine])
            out[f"{kind} {src} vs_G_R0"] = distribution([d["error_vs_G_R0_px"] for d in mine])
            out[f"{kind} {src} no_warp_median_px"] = float(
                np.nanmedian([d["no_warp_px"] for d in mine])
            )
    out.update(
        seconds_per_calibration={
            k: v / max(c, 1)
            for (k, v), c in zip(seconds.items(), (args.cases, args.single), strict=True)
        },  # fmt: skip
        cases=details,
    )
    return out


def night_checks(sources: list[Sequence_], args: argparse.Namespace, rng) -> dict:
    """One night frame alone, and night frames spread over the night sequence."""
    night = next((s for s in sources if s.name == "msrs_night"), None)
    if night is None:
        return {}
    out = {}
    frame = night.frames[len(night.frames) // 2]
    for label, frames in (
        ("night single frame", [frame]),
        ("night frames", pick_frames(night, args.frames, rng)),
    ):
        rgb_hw = frame[1].shape[:2]
        g = random_homography(rng, thermal_size(rgb_hw), rgb_hw)
        out[label] = record(label.replace(" ", "_")[:6], "msrs_night", frames, run_case(frames, g))
    return out


def unrelated_pairs(sources: list[Sequence_], rng) -> dict:
    """Negative control: RGB of one scene, thermal of another: must be refused."""
    pool = [f for s in sources for f in s.frames if f[1].shape[:2] == (480, 640)]
    refused, correlations = 0, []
    n = 8
    for _ in range(n):
        i, j = rng.choice(len(pool), 2, replace=False)
        rgb, ir = pool[i][1], pool[j][2]
        g = random_homography(rng, thermal_size(rgb.shape[:2]), rgb.shape[:2])
        t = thermal_camera(ir, g, thermal_size(rgb.shape[:2]))
        est = targetless.estimate_frame("x", t, rgb)
        correlations.append(est.correlation)
        refused += est.homography is None
    print(f"unrelated pairs: {refused}/{n} refused, correlations {np.round(correlations, 3)}")
    return {"pairs": n, "refused": refused, "correlations": [float(c) for c in correlations]}


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Mutual information (nats) of two equally shaped intensity patches."""
    joint, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins)
    p = joint / joint.sum()
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / outer[nz])).sum())


def dataset_registration(sources: list[Sequence_], every: int = 3) -> dict:
    """How well are the 'registered' pairs themselves registered? Independent of the
    calibration's edge maps: on a 3 x 5 grid of 96-px patches, the integer shift
    (+-6 px) of the RGB image that maximises the mutual information of the raw
    intensities with the infrared patch, per frame (every ``every``-th), median per patch
    over the frames where the MI peak is clear (> 0.15 nats). A correctly registered set
    gives shifts near 0; a homography fitted to the patch shifts, evaluated at the study's
    thermal-crop corners, says how far the set's own registration is from identity there."""
    radius, half, out = 6, 48, {}
    for seq in sources:
        hgt, wid = seq.frames[0][1].shape[:2]
        xs = np.linspace(half + radius, wid - half - radius, 5).round().astype(int)
        ys = np.linspace(hgt / 4, 3 * hgt / 4, 3).round().astype(int)
        shifts: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for _, rgb, ir in seq.frames[::every]:
            if rgb.shape[:2] != (hgt, wid):
                continue
            g_rgb = cv2.GaussianBlur(targetless.grey(rgb), (0, 0), 1.0)
            g_ir = cv2.GaussianBlur(targetless.grey(ir), (0, 0), 1.0)
            for cy in ys:
                for cx in xs:
                    patch = g_ir[cy - half : cy + half, cx - half : cx + half]
                    best = max(
                        (mutual_information(patch, g_rgb[cy - half + dy : cy + half + dy,
                                                         cx - half + dx : cx + half + dx]), dx, dy)
                        for dy in range(-radius, radius + 1)
                        for dx in range(-radius, radius + 1)
                    )  # fmt: skip
                    if best[0] > 0.15:
                        shifts.setdefault((int(cx), int(cy)), []).append(best[1:])
        cells = {k: np.median(np.asarray(v, np.float64), axis=0) for k, v in shifts.items()
                 if len(v) >= 3}  # fmt: skip
        if len(cells) < 4:
            continue
        src = np.float32(list(cells))
        dst = src + np.float32(list(cells.values()))
        fit, _ = cv2.findHomography(src, dst, 0)
        c = centred((hgt, wid))
        corner_px = targetless.corner_error(fit @ c, c, thermal_size((hgt, wid)))
        mean_shift = float(np.linalg.norm(dst - src, axis=1).mean())
        out[seq.name] = {
            "patches": {f"{x},{y}": [float(d[0]), float(d[1])] for (x, y), d in cells.items()},
            "mean_shift_px": mean_shift,
            "fit_corner_px": corner_px,
        }
        print(f"dataset registration {seq.name}: mean patch shift {mean_shift:.2f} px over "
              f"{len(cells)} patches; best-fit homography {corner_px:.2f} px from identity at "
              "the thermal-crop corners; x shift per column (middle row): "
              + " ".join(f"{cells[(int(x), int(ys[1]))][0]:+.1f}" if (int(x), int(ys[1])) in cells
                         else "--" for x in xs), flush=True)  # fmt: skip
    return out


def recalibrated(sources: list[Sequence_], frames: int) -> list[Sequence_]:
    """Each sequence with its infrared images warped by the homography the calibration
    finds on the sequence itself (``frames`` spread frames, no simulated warp): if the
    calibration corrects a real misregistration rather than adding its own bias, the
    dataset check measures the re-registered sequence closer to identity."""
    out = []
    for seq in sources:
        hw = seq.frames[0][1].shape[:2]
        same = [f for f in seq.frames if f[1].shape[:2] == hw]
        clip = pick_frames(Sequence_(seq.name, same), frames, np.random.default_rng(0))
        try:
            cal = targetless.calibrate([Pair(*f) for f in clip], measure_residual=False)
        except targetless.AlignmentError as exc:
            print(f"{seq.name}: in-place calibration refused: {exc}")
            continue
        reg = Registration(cal.homography)
        offset = targetless.corner_error(cal.homography, np.eye(3), hw)
        print(
            f"{seq.name}: in-place calibration {offset:.2f} px from identity at the frame corners"
        )
        warped = [(n, rgb, reg.warp(ir, hw)) for n, rgb, ir in same]
        out.append(Sequence_(f"{seq.name} after in-place calibration", warped))
    return out


def warp_cost() -> dict:
    """Median time of ``Registration.warp`` per 640x480 frame on one CPU thread."""
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    g = random_homography(rng, (480, 640), (480, 640))
    reg = Registration(g)
    out = {}
    for dtype in (np.uint8, np.uint16, np.float32):
        t = rng.integers(0, 255 if dtype == np.uint8 else 60000, (480, 640)).astype(dtype)
        reg.warp(t, (480, 640))  # first call computes the coverage mask (once per size)
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            reg.warp(t, (480, 640))
            times.append(time.perf_counter() - t0)
        out[np.dtype(dtype).name] = 1e3 * float(np.median(times))
    t0 = time.perf_counter()
    Registration(g).coverage((480, 640), (480, 640))
    out["first_frame_mask_ms"] = 1e3 * (time.perf_counter() - t0)
    print("warp per 640x480 frame, 1 thread (median of 200): " + ", ".join(
        f"{k} {v:.2f} ms" for k, v in out.items()))  # fmt: skip
    return out


def agreement(sources: list[Sequence_], args: argparse.Namespace, rng) -> dict:
    """Segmenter with the estimated homography on the warped stream vs on the registered
    pair: share of equal labels over the RGB pixels the thermal camera sees. The same with
    the true G ("oracle") separates the calibration's part from that of the resampling and
    of the narrower view (the model sees no thermal context outside it)."""
    from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT, Segmenter

    checkpoint = Path(args.checkpoint) if args.checkpoint else BUNDLED_CHECKPOINT
    registered = Segmenter.from_checkpoint(checkpoint)
    rows = []
    for seq in sources:
        for c in range(args.agreement_cases):
            clip = pick_frames(seq, args.frames, rng)
            rgb_hw = clip[0][1].shape[:2]
            t_hw = thermal_size(rgb_hw)
            g = random_homography(rng, t_hw, rgb_hw)
            h, _, refused = calibrate_warped(clip, g)
            if h is None:
                rows.append({"source": seq.name, "case": c, "refused": refused})
                continue
            err = targetless.corner_error(h, g, t_hw)
            streams = {
                "estimated": Segmenter.from_checkpoint(checkpoint, thermal_homography=h),
                "oracle": Segmenter.from_checkpoint(checkpoint, thermal_homography=g),
            }
            for name, rgb, ir in clip[: args.agreement_frames]:
                references = {"full": registered.predict(rgb, ir, return_fused=False).labels}
                thermal = thermal_camera(ir, g, t_hw)
                row = {"source": seq.name, "case": c, "name": name, "error_px": err}
                for key, segmenter in streams.items():
                    unseen = segmenter.registration.layout(t_hw, rgb_hw).uncovered
                    seen = np.ones(rgb_hw, bool) if unseen is None else ~unseen
                    labels = segmenter.predict(rgb, thermal, return_fused=False).labels
                    for ref, reference in references.items():
                        row[f"{key} vs {ref}"] = float(np.mean(labels[seen] == reference[seen]))
                    row[f"{key}_seen_share"] = float(seen.mean())
                rows.append(row)
                print(
                    f"agreement {seq.name} case {c} {name} (calibration error {err:.2f} px): "
                    + ", ".join(f"{k} {100 * v:.2f} %" for k, v in row.items() if " vs " in k),
                    flush=True,
                )
    summary: dict = {"checkpoint": str(checkpoint), "rows": rows}
    for src in [None, *sorted({r["source"] for r in rows})]:
        mine = [r for r in rows if "error_px" in r and (src is None or r["source"] == src)]
        keys = [k for k in (mine[0] if mine else {}) if " vs " in k]
        for key in keys:
            values = np.asarray([r[key] for r in mine])
            label = f"{src or 'all'} {key}"
            summary[label] = {
                "frames": int(values.size),
                "mean": float(values.mean()) if values.size else float("nan"),
                "min": float(values.min()) if values.size else float("nan"),
                "share_ge_97": float(np.mean(values >= 0.97)) if values.size else float("nan"),
            }
            d = summary[label]
            print(
                f"mask agreement, {label}: {d['frames']} frames, mean {100 * d['mean']:.2f} %, "
                f"min {100 * d['min']:.2f} %, frames >= 97 %: {100 * d['share_ge_97']:.0f} %"
            )
    return summary


def markdown(result: dict) -> str:
    rows = ["| cases | truth | n | <= 1 px | <= 2 px | <= 5 px | refused | median | p90 | max |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    rec = result["recovery"]
    for key, d in rec.items():
        if not isinstance(d, dict) or "cases" not in d:
            continue
        truth = "G @ R0" if key.endswith("vs_G_R0") else "G"
        label = key.removesuffix("_vs_G_R0").removesuffix(" vs_G_R0")
        rows.append(
            f"| {label} | {truth} | {d['cases']} | {100 * d['share_le_1px']:.0f} % | "
            f"{100 * d['share_le_2px']:.0f} % | {100 * d['share_le_5px']:.0f} % | {d['refused']} | "
            f"{d['median_px']:.2f} px | {d['p90_px']:.2f} px | {d['max_px']:.2f} px |"
        )
    return "\n".join(rows) + "\n"


CURVES = (  # (label, kind, sources, error key) of the recovery picture
    ("RoadScene, 30 frames", "multi", ("roadscene",), "error_px"),
    ("msrs_dev day, 30 frames", "multi", ("msrs_day",), "error_px"),
    ("msrs_dev night, 30 frames", "multi", ("msrs_night",), "error_px"),
    (
        "msrs_dev day + night, against G∘R0 (the set's own misregistration R0 removed)",
        "multi",
        ("msrs_day", "msrs_night"),
        "error_vs_G_R0_px",
    ),
    ("single frames, all sources", "single", ("roadscene", "msrs_day", "msrs_night"), "error_px"),
)


def plot_recovery(runs: list[Path], png: Path) -> None:
    """The share of cases recovered within x px, per kind of case, pooled over the given
    study runs (their registration_study.json): the distribution the bar is read from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for r in runs
             for c in json.loads((r / "registration_study.json").read_text())["recovery"]["cases"]]  # fmt: skip
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=110)
    x = np.geomspace(0.2, 100, 400)
    for label, kind, sources, key in CURVES:
        errors = np.asarray([c[key] for c in cases if c["kind"] == kind and c["source"] in sources],
                            np.float64)  # fmt: skip
        errors = np.where(np.isnan(errors), np.inf, errors)  # refused: never within x
        if errors.size:
            share = (errors[None, :] <= x[:, None]).mean(axis=1)
            within = 100 * np.mean(errors <= 2.0)
            ax.step(x, 100 * share, where="post",
                    label=f"{label} (n={errors.size}, ≤ 2 px: {within:.0f} %)")  # fmt: skip
    ax.axvline(2.0, color="grey", ls="--", lw=1)
    ax.axhline(90.0, color="grey", ls=":", lw=1)
    ax.text(2.3, 91.5, "bar: ≤ 2 px in ≥ 90 % of the cases", color="grey", fontsize=8)
    ax.set(xscale="log", xlim=(0.2, 100), ylim=(0, 101), xlabel="mean corner error (RGB px)",
           ylabel="cases within (%)",
           title="fusionsam-calibrate on real pairs warped by known homographies")  # fmt: skip
    ticks = [0.5, 1, 2, 5, 10, 20, 50, 100]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    print(f"wrote {png} from {len(cases)} cases")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=24, help="multi-frame cases")
    p.add_argument(
        "--frames",
        type=int,
        default=30,
        help="frames per multi-frame case (fusionsam-calibrate's default)",
    )
    p.add_argument("--single", type=int, default=24, help="single-frame cases")
    p.add_argument("--agreement-cases", type=int, default=2, help="cases per msrs sequence")
    p.add_argument("--agreement-frames", type=int, default=4, help="frames scored per case")
    p.add_argument("--checkpoint", default=None, help="model for the agreement (bundled)")
    p.add_argument("--skip", default="", help="comma list of: cost,dataset,"
                   "recovery,night,unrelated,agreement")  # fmt: skip
    p.add_argument("--sources", default="", help="comma list of roadscene,msrs_day,"
                   "msrs_night (default: all there are)")  # fmt: skip
    p.add_argument("--thermal-fraction", type=float, default=THERMAL_FRACTION,
                   help="simulated thermal frame side / RGB frame side (1.0: the same "
                   "size, i.e. the registered image warped in place)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/registration_study")
    p.add_argument("--plot", nargs="+", type=Path, metavar="RUN",
                   help="only draw the recovery distribution of these study runs (their --out "
                   "folders) into --out/recovery.png")  # fmt: skip
    args = p.parse_args(argv)
    if args.plot:
        missing = [str(r) for r in args.plot if not (r / "registration_study.json").is_file()]
        if missing:
            print(f"no registration_study.json in: {', '.join(missing)}", file=sys.stderr)
            return 2
        plot_recovery(args.plot, Path(args.out) / "recovery.png")
        return 0
    globals()["THERMAL_FRACTION"] = args.thermal_fraction
    cv2.setNumThreads(1)  # one core: the figures do not depend on the machine's load as much
    skip = set(filter(None, args.skip.split(",")))
    sources = load_sources()
    wanted = set(filter(None, args.sources.split(",")))
    sources = [s for s in sources if not wanted or s.name in wanted]
    if not sources:
        print(f"no data under {DATA} (roadscene/, msrs_dev/)", file=sys.stderr)
        return 2
    print("sources: " + ", ".join(f"{s.name} {len(s.frames)} pairs" for s in sources))
    rng = np.random.default_rng(args.seed)
    result: dict = {"args": vars(args)}
    steps = (
        ("cost", lambda: warp_cost()),
        ("dataset", lambda: dataset_registration(sources + recalibrated(sources, args.frames))),
        ("recovery", lambda: recovery(sources, args, rng)),
        ("night", lambda: night_checks(sources, args, rng)),
        ("unrelated", lambda: unrelated_pairs(sources, rng)),
        ("agreement", lambda: agreement(sources, args, rng)),
    )
    for name, step in steps:
        if name not in skip:
            result[name] = step()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "registration_study.json").write_text(json.dumps(result, indent=1, default=float))
    if "recovery" in result:
        table = markdown(result)
        (out / "registration_study.md").write_text(table)
        print(table)
    print(f"wrote {out / 'registration_study.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
