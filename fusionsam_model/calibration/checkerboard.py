"""Registration from a heated checkerboard seen by both cameras.

Why: where a target can be shown, its corners are exact correspondences, better than any
edge statistics. A heated board shows in the thermal image as a pattern of warm and cool
squares whose polarity may be the inverse of the visible one, so both polarities are
tried. Corners of every frame found in both images go into one RANSAC homography.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from fusionsam_model.calibration.pairs import PairScreen
from fusionsam_model.calibration.result import Calibration, Pair
from fusionsam_model.calibration.targetless import AlignmentError, grey

RANSAC_PX = 2.0  # reprojection threshold of an inlier corner


def parse_size(text: str) -> tuple[int, int]:
    """``COLSxROWS`` of inner corners, e.g. ``9x6``."""
    cols, sep, rows = text.lower().partition("x")
    if not sep or not cols.isdigit() or not rows.isdigit() or int(cols) < 2 or int(rows) < 2:
        raise ValueError(f"--checkerboard expects COLSxROWS inner corners (e.g. 9x6), got {text!r}")
    return int(cols), int(rows)


def find_corners(image: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """(N, 2) sub-pixel inner corners in a fixed order, or None; either polarity."""
    g = grey(image).astype(np.uint8)
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 50, 0.01)
    for candidate in (g, 255 - g):
        found, corners = cv2.findChessboardCorners(candidate, size, flags=flags)
        if found:
            corners = cv2.cornerSubPix(candidate, corners, (5, 5), (-1, -1), criteria)
            return canonical(corners.reshape(-1, 2), size)
    return None


def canonical(corners: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Corner order independent of where OpenCV started: first corner top-left-most, rows
    left to right. (An inverted board in one image would otherwise pair corners wrongly.)"""
    cols, rows = size
    grid = corners.reshape(rows, cols, 2)
    if grid[0, 0].sum() > grid[-1, -1].sum():  # started at the bottom right: reverse
        grid = grid[::-1, ::-1]
    if cols == rows and grid[0, -1, 0] < grid[-1, 0, 0]:  # square board read column-wise
        grid = grid.transpose(1, 0, 2)
    return grid.reshape(-1, 2)


def calibrate(pairs: Iterable[Pair], size: tuple[int, int], progress: bool = False) -> Calibration:
    """Corners of every pair where the board is found in both images -> RANSAC homography;
    AlignmentError when no pair shows it in both."""
    screen = PairScreen()
    thermal_pts, rgb_pts, used = [], [], []
    for pair in screen.screen(pairs, progress):
        t = find_corners(pair.thermal, size)
        r = find_corners(pair.rgb, size)
        if t is None or r is None:
            where = " and ".join(w for w, c in (("thermal", t), ("RGB", r)) if c is None)
            screen.reject(pair, f"no {size[0]}x{size[1]} checkerboard found in {where}")
            continue
        screen.accept(pair)
        thermal_pts.append(t)
        rgb_pts.append(r)
        used.append(pair.name)
    if not used:
        raise AlignmentError(f"the checkerboard is in no pair's both images: {screen.reasons()}")
    sizes, total, rejected = screen.sizes, screen.total, screen.rejected
    src, dst = np.concatenate(thermal_pts), np.concatenate(rgb_pts)
    h, inliers = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PX)
    if h is None:
        raise AlignmentError("cv2.findHomography found no homography for the corners")
    keep = inliers.ravel().astype(bool)
    proj = cv2.perspectiveTransform(src[keep].reshape(-1, 1, 2), h).reshape(-1, 2)
    rms = float(np.sqrt(np.mean(np.sum((proj - dst[keep]) ** 2, axis=1))))
    return Calibration(
        homography=h / h[2, 2],
        method=f"checkerboard {size[0]}x{size[1]} (RANSAC)",
        thermal_hw=sizes[0],
        rgb_hw=sizes[1],
        frames_total=total,
        frames_used=used,
        rejected=rejected,
        residual_px=rms,
        residual_kind=f"RMS reprojection error of {int(keep.sum())} of {len(keep)} corners (inliers)",
    )
