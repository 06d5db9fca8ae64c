"""Thermal-to-RGB registration by a homography: parsing, checks, warp and coverage.

Why: the model expects each thermal pixel to show the same scene point as the RGB pixel
at the same place (MFNet's co-axial rig). Two separate cameras need the thermal image
warped into the RGB frame first. ``thermal_homography`` is the row-major 3x3 matrix that
maps a thermal pixel (u, v, 1) to RGB pixel coordinates; the node, ``Segmenter``,
``training/evaluate.py``, ``fusionsam-fusion-eval`` and ``fusionsam-calibrate`` all use
this one module, so offline numbers match the node.

RGB pixels the thermal camera does not see repeat the nearest edge pixel of the thermal
image (``BORDER_REPLICATE``): a cold 0 would read as a cold object and pull the per-frame
auto gain, and a flat fill (the median of the seen pixels, the first version) changes the
model's labels *inside* the seen area near its border more than a continuation does
(``scripts/registration_study.py``, agreement with the registered pair: 96.8 % with the
median fill, 97.8 % with the edge continued; docs/registration.md). The continuation is no
information: the Segmenter shows the visible image alone there in the fused image, and the
share of such pixels is reported (``Registration.uncovered_share``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

PARAMETER = "thermal_homography"
# Without the image sizes (the node learns them from the first pair) a homography is only
# refused at start when it maps every thermal frame up to this size outside every RGB
# frame up to this size; the exact test runs on the first pair (RegistrationError).
MAX_FRAME_PX = 16384
NOMINAL_PX = 1000.0  # pixel scale at which the singularity test is made (unit-free)
MAX_CONDITION = 1e8
# dtypes cv2.warpPerspective keeps as they are; others (int32, float16) warp as float32
WARP_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


class HomographyError(ValueError):
    """A homography that cannot be a thermal-to-RGB registration; the text says why."""


class RegistrationError(HomographyError):
    """The homography does not fit these image sizes (found on a frame, not at start)."""


def parse_homography(values: Any) -> np.ndarray | None:
    """9 finite numbers (row-major) -> 3x3 float64 scaled to h33 = 1; None or empty -> None
    (the thermal image is already registered). Raises HomographyError with the reason."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        hint = " (write every element as a float: 1.0, not 1)" if isinstance(values, str) else ""
        raise HomographyError(f"must be a list of 9 numbers (row-major 3x3), got {values!r}{hint}")
    items = (
        np.asarray(values).reshape(-1).tolist() if isinstance(values, np.ndarray) else list(values)
    )
    if not items:
        return None
    if len(items) != 9:
        raise HomographyError(f"needs 9 numbers (row-major 3x3), got {len(items)}")
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, (int, float, np.number))]
    if bad:
        raise HomographyError(f"needs 9 numbers, got {bad[0]!r} among them")
    h = np.array([float(v) for v in items], dtype=np.float64).reshape(3, 3)
    if not np.isfinite(h).all():
        raise HomographyError(f"needs 9 finite numbers, got {h.reshape(-1).tolist()}")
    check_invertible(h)
    if abs(h[2, 2]) <= 1e-12 * float(np.abs(h).max()):
        raise HomographyError("h33 is 0: the thermal pixel (0, 0) would map to infinity")
    h = h / h[2, 2]
    check_can_overlap(h)
    return h


def check_invertible(h: np.ndarray) -> None:
    """Refuse a singular matrix; measured at a 1000 px pixel scale so that an ordinary
    translation of hundreds of pixels does not look ill-conditioned."""
    t = np.diag([NOMINAL_PX, NOMINAL_PX, 1.0])
    scaled = np.linalg.inv(t) @ h @ t
    if not scaled.any():
        raise HomographyError("is singular (not invertible): all zeros")
    cond = float(np.linalg.cond(scaled))
    if not math.isfinite(cond) or cond > MAX_CONDITION:
        raise HomographyError(
            f"is singular (not invertible): determinant {np.linalg.det(h):.3g}, "
            f"condition number {cond:.3g} at a 1000 px scale"
        )


def check_can_overlap(h: np.ndarray) -> None:
    """Refuse a homography that maps every thermal frame (up to MAX_FRAME_PX) entirely
    outside every RGB frame (up to MAX_FRAME_PX): wrong whatever the cameras."""
    if overlap_area(h, (MAX_FRAME_PX, MAX_FRAME_PX), (MAX_FRAME_PX, MAX_FRAME_PX)) <= 0.0:
        raise HomographyError(
            f"maps the thermal image entirely outside the RGB frame (for any image size up to "
            f"{MAX_FRAME_PX} px): thermal (0, 0) goes to {_fmt(project(h, [[0.0, 0.0]])[0])}"
        )


def _fmt(point: np.ndarray) -> str:
    return f"({point[0]:.1f}, {point[1]:.1f})"


def project(h: np.ndarray, points: Any) -> np.ndarray:
    """(N, 2) thermal points -> (N, 2) RGB points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    q = np.c_[p, np.ones(len(p))] @ h.T
    return q[:, :2] / q[:, 2:3]


def frame_corners(hw: tuple[int, int]) -> np.ndarray:
    """The four outer corners of an H x W image in pixel-centre coordinates."""
    hgt, wid = hw
    return np.array(
        [[-0.5, -0.5], [wid - 0.5, -0.5], [wid - 0.5, hgt - 0.5], [-0.5, hgt - 0.5]], np.float64
    )


def _in_front(h: np.ndarray, polygon: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """``polygon`` clipped to the half-plane w > 0 (points there map to finite, unmirrored
    places; w is linear, so one Sutherland-Hodgman pass)."""
    w = polygon @ h[2, :2] + h[2, 2]
    out = []
    for i in range(len(polygon)):
        a, b, wa, wb = polygon[i], polygon[(i + 1) % len(polygon)], w[i], w[(i + 1) % len(w)]
        if wa > eps:
            out.append(a)
        if (wa > eps) != (wb > eps):
            t = (eps - wa) / (wb - wa)
            out.append(a + t * (b - a))
    return np.array(out, np.float64).reshape(-1, 2)


def overlap_area(h: np.ndarray, thermal_hw: tuple[int, int], rgb_hw: tuple[int, int]) -> float:
    """Area (RGB px^2) of the warped thermal frame inside the RGB frame."""
    front = _in_front(h, frame_corners(thermal_hw))
    if len(front) < 3:
        return 0.0
    quad = project(h, front).astype(np.float32)
    if not np.isfinite(quad).all():
        return 0.0
    hull = cv2.convexHull(quad)
    area, _ = cv2.intersectConvexConvex(hull, frame_corners(rgb_hw).astype(np.float32))
    return float(max(area, 0.0))


@dataclass(frozen=True)
class _Layout:
    """What one (thermal size, RGB size) needs, computed once and reused per frame."""

    uncovered: np.ndarray | None  # (H, W) bool, True where the thermal camera sees nothing
    uncovered_share: float
    identity: bool


class Registration:
    """Warps thermal frames into the RGB frame with one homography (thread-safe to read:
    the per-size layout cache only grows, and the last figures are plain floats)."""

    def __init__(self, homography: np.ndarray) -> None:
        self.homography = np.asarray(homography, np.float64).reshape(3, 3)
        self._layouts: dict[tuple[tuple[int, int], tuple[int, int]], _Layout] = {}
        self.uncovered_share: float | None = None  # of the last frame warped
        self.frames = 0

    @classmethod
    def from_values(cls, values: Any) -> Registration | None:
        """``parse_homography`` then a Registration; None when empty (already registered)."""
        h = parse_homography(values)
        return None if h is None else cls(h)

    def as_list(self) -> list[float]:
        return [float(v) for v in self.homography.reshape(-1)]

    def layout(self, thermal_hw: tuple[int, int], rgb_hw: tuple[int, int]) -> _Layout:
        """Coverage of this size pair; RegistrationError if the homography does not fit it."""
        key = (tuple(thermal_hw[:2]), tuple(rgb_hw[:2]))
        found = self._layouts.get(key)
        if found is not None:
            return found
        (th, tw), (rh, rw) = key
        corners = frame_corners((th, tw))
        w = corners @ self.homography[2, :2] + self.homography[2, 2]
        if (w <= 0).any():
            raise RegistrationError(
                f"{PARAMETER} sends part of the {tw}x{th} thermal image through infinity "
                "(its horizon line crosses the image): not a camera-to-camera homography "
                "for this size"
            )
        identity = key[0] == key[1] and np.allclose(self.homography, np.eye(3), atol=1e-12)
        if identity:
            mask = None
            share = 0.0
        else:
            ones = np.ones((th, tw), np.uint8)
            seen = cv2.warpPerspective(
                ones, self.homography, (rw, rh), flags=cv2.INTER_NEAREST, borderValue=0
            )
            covered = seen > 0
            share = 1.0 - float(covered.mean())
            if not covered.any():
                raise RegistrationError(
                    f"{PARAMETER} maps the {tw}x{th} thermal image entirely outside the "
                    f"{rw}x{rh} RGB frame (its corners go to "
                    f"{', '.join(_fmt(p) for p in project(self.homography, corners))})"
                )
            mask = None if share == 0.0 else ~covered
        layout = _Layout(mask, share, identity)
        self._layouts[key] = layout
        return layout

    def coverage(self, thermal_hw: tuple[int, int], rgb_hw: tuple[int, int]) -> float:
        """Share of the RGB frame the warped thermal image covers (0..1)."""
        return 1.0 - self.layout(thermal_hw, rgb_hw).uncovered_share

    def warp(self, thermal: np.ndarray, rgb_hw: tuple[int, int]) -> np.ndarray:
        """Thermal (h, w) of any dtype -> (H, W) in the RGB frame, same dtype (bilinear;
        uint16 and float keep their precision); unseen pixels continue the image's edge."""
        t = np.asarray(thermal)
        if t.ndim == 3 and t.shape[2] == 1:
            t = t[:, :, 0]
        if t.ndim != 2:
            raise ValueError(f"thermal image must be (H, W), got shape {t.shape}")
        rh, rw = int(rgb_hw[0]), int(rgb_hw[1])
        layout = self.layout(t.shape[:2], (rh, rw))
        self.uncovered_share = layout.uncovered_share
        self.frames += 1
        if layout.identity:
            return t
        src = t if t.dtype in WARP_DTYPES else t.astype(np.float32)
        return cv2.warpPerspective(
            src,
            self.homography,
            (rw, rh),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )  # unseen pixels continue the nearest edge pixel (module docstring)


def load_homography(text: str) -> np.ndarray:
    """``--thermal-homography``: 9 numbers ("1,0,5,0,1,-3,0,0,1" or space-separated) or a
    params YAML with ``thermal_homography`` (what ``fusionsam-calibrate`` writes).
    Raises HomographyError naming the problem."""
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        values = read_params_file(path)
    else:
        try:
            values = [float(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise HomographyError(
                f"{text!r} is neither 9 numbers nor a params file (.yaml) that exists"
            ) from None
    h = parse_homography(values)
    if h is None:
        raise HomographyError("is empty: give 9 numbers or leave the option out")
    return h


def homography_argument(text: str) -> np.ndarray:
    """argparse ``type=`` of ``--thermal-homography`` (a bad value: exit 2 with the reason)."""
    import argparse

    try:
        return load_homography(text)
    except HomographyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


HOMOGRAPHY_HELP = (
    "thermal -> RGB homography: 9 numbers, row-major (e.g. --thermal-homography=1,0,5,0,1,-3,0,0,1)"
    " or a params file written by fusionsam-calibrate; the thermal image is warped into the "
    "RGB frame as the node does"
)


def read_params_file(path: Path) -> Any:
    """``thermal_homography`` from a ROS params file (any node key, or ``/**``)."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise HomographyError(f"cannot read params file {path}: {exc}") from exc
    for section in (doc or {}).values() if isinstance(doc, dict) else []:
        params = section.get("ros__parameters") if isinstance(section, dict) else None
        if isinstance(params, dict) and PARAMETER in params:
            values = params[PARAMETER]
            if isinstance(values, list):  # "1e-05": a float for rcl, a string for PyYAML
                values = [_number_or_text(v) for v in values]
            return values
    raise HomographyError(f"params file {path} has no {PARAMETER} under <node>: ros__parameters")


def yaml_float(value: float) -> str:
    """Full precision, and a float for YAML 1.1 too (PyYAML reads "1e-05" as a string)."""
    text = repr(float(value))
    if "e" in text and "." not in text.split("e")[0]:
        text = text.replace("e", ".0e")
    return text if any(c in text for c in ".en") else f"{text}.0"


def _number_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def params_yaml(h: np.ndarray, node_name: str = "fusionsam_node", comment: str = "") -> str:
    """The params file text the node loads with ``--params-file``; every value written as a
    float (rcl refuses a list that mixes integers and floats)."""
    values = ", ".join(yaml_float(v) for v in np.asarray(h, np.float64).reshape(-1))
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return f"{head}{node_name}:\n  ros__parameters:\n    {PARAMETER}: [{values}]\n"
