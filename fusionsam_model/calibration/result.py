"""What a calibration found, whichever method: the homography and the figures to trust it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fusionsam_model.runtime.registration import Registration


@dataclass(frozen=True)
class Pair:
    """One recorded pair: RGB (H, W, 3) uint8 in RGB order, thermal (h, w) any dtype;
    or the reason it could not be read (``error``)."""

    name: str
    rgb: np.ndarray | None = None
    thermal: np.ndarray | None = None
    error: str = ""


@dataclass
class Calibration:
    homography: np.ndarray  # thermal pixel -> RGB pixel, h33 = 1
    method: str  # "targetless" | "checkerboard"
    thermal_hw: tuple[int, int]
    rgb_hw: tuple[int, int]
    frames_total: int
    frames_used: list[str]
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    residual_px: float = float("nan")  # see residual_kind
    residual_kind: str = ""
    correlation: float = float("nan")  # ECC correlation of the edge maps (targetless)
    notes: list[str] = field(default_factory=list)
    # a few (rgb, thermal) pairs for the overlay picture, kept by the command line
    overlay_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def coverage(self) -> float:
        """Share of the RGB frame the warped thermal image covers."""
        return Registration(self.homography).coverage(self.thermal_hw, self.rgb_hw)

    def summary(self) -> str:
        lines = [
            f"method: {self.method}; frames used {len(self.frames_used)} of {self.frames_total}"
            f" (thermal {self.thermal_hw[1]}x{self.thermal_hw[0]}, "
            f"RGB {self.rgb_hw[1]}x{self.rgb_hw[0]})",
            f"residual: {self.residual_px:.2f} px ({self.residual_kind})",
        ]
        if np.isfinite(self.correlation):
            lines.append(f"ECC correlation of the edge maps: {self.correlation:.3f}")
        lines.append(f"coverage: {100 * self.coverage:.1f} % of the RGB frame sees thermal")
        lines += [f"rejected {name}: {why}" for name, why in self.rejected]
        lines += self.notes
        return "\n".join(lines)
