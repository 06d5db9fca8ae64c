"""The picture to look at: thermal edges drawn over the RGB image, before and after.

Why: a residual in pixels says how consistent the estimate is, not whether it is right;
edges of the same objects on top of each other (or not) show it at a glance. "Before" is
what the node does without a homography (the thermal image stretched onto the RGB frame).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fusionsam_model.calibration.targetless import grey, initial_guesses

EDGE_COLOUR = (255, 0, 255)  # magenta: visible on road, sky and foliage


def thermal_edges(thermal: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(grey(thermal).astype(np.uint8), (0, 0), 1.5)
    hi = float(
        np.percentile(cv2.Sobel(g, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(g, cv2.CV_32F, 0, 1) ** 2, 92)
    )
    hi = max(20.0, min(200.0, np.sqrt(hi)))
    return cv2.Canny(g, hi / 2, hi)


def draw(rgb: np.ndarray, thermal: np.ndarray, h: np.ndarray, label: str) -> np.ndarray:
    """RGB dimmed, thermal edges warped by ``h`` in magenta, the label in the corner."""
    rh, rw = rgb.shape[:2]
    edges = cv2.warpPerspective(thermal_edges(thermal), h, (rw, rh), flags=cv2.INTER_NEAREST)
    out = (rgb.astype(np.float32) * 0.75).astype(np.uint8)
    out[edges > 0] = EDGE_COLOUR
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, width)
    return out


def save(path: Path, pairs: list[tuple[np.ndarray, np.ndarray]], h: np.ndarray) -> Path:
    """One row per pair: before | after; written as PNG (RGB converted to OpenCV's BGR)."""
    rows = []
    for rgb, thermal in pairs:
        before = initial_guesses(thermal.shape[:2], rgb.shape[:2])[0]
        gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
        rows.append(
            np.hstack([draw(rgb, thermal, before, "before (stretched)"), gap,
                       draw(rgb, thermal, h, "after (thermal_homography)")])
        )  # fmt: skip
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return path
