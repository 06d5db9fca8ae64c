"""Recorded pairs for calibration from two folders matched by name (a rosbag:
``fusionsam_ros.bags.pairs``, which uses ``spread`` and ``PairsError`` from here).

Why a separate loader: calibration pairs are *not* registered (sizes may differ), and an
unreadable file must become a reported, skipped pair rather than a traceback. Frames are
spread evenly over the recording: neighbouring video frames add little new evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from fusionsam_model.calibration.result import Pair
from fusionsam_model.data.unlabelled import IMAGE_SUFFIXES


class PairsError(ValueError):
    """The input as a whole is unusable (missing folder, no common names, no topic)."""


def spread(count: int, wanted: int | None) -> list[int]:
    """``wanted`` indices evenly spread over ``range(count)`` (all when None or larger)."""
    if wanted is None or wanted >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(wanted - 1, 1)) for i in range(wanted)})


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise PairsError(f"{what} folder {folder} does not exist")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def folder_names(visible: Path, infrared: Path) -> list[tuple[str, Path, Path]]:
    """(name, visible file, infrared file) for every stem present in both folders."""
    vis, ir = _by_stem(Path(visible), "--visible"), _by_stem(Path(infrared), "--infrared")
    names = sorted(set(vis) & set(ir))
    if not names:
        raise PairsError(
            f"no file names in common between {visible} ({len(vis)} images) and "
            f"{infrared} ({len(ir)} images); pairs are matched by name without extension"
        )
    return [(n, vis[n], ir[n]) for n in names]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """cv2-decoded visible image (grey, BGR, BGRA; 8 or 16 bit) -> (H, W, 3) uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)


def as_thermal(image: np.ndarray) -> np.ndarray:
    """Thermal stored as 3 equal channels (RoadScene) -> its grey image; 16-bit kept."""
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def read_pair(name: str, visible: Path, infrared: Path) -> Pair:
    """One pair from files; an unreadable file gives a Pair with ``error`` set."""
    rgb = cv2.imread(str(visible), cv2.IMREAD_UNCHANGED)
    if rgb is None:
        return Pair(name, error=f"cannot read visible image {visible}")
    thermal = cv2.imread(str(infrared), cv2.IMREAD_UNCHANGED)
    if thermal is None:
        return Pair(name, error=f"cannot read infrared image {infrared}")
    return Pair(name, as_rgb(rgb), as_thermal(thermal))


def folder_pairs(visible: Path, infrared: Path, frames: int | None = None) -> list:
    """Lazily read pairs (a list of zero-argument loaders would hide the count from tqdm):
    returns ``_FolderPairs``, an iterable with a length."""
    names = folder_names(visible, infrared)
    return _FolderPairs([names[i] for i in spread(len(names), frames)])


class _FolderPairs:
    def __init__(self, entries: list[tuple[str, Path, Path]]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Pair]:
        for name, vis, ir in self.entries:
            yield read_pair(name, vis, ir)


class PairScreen:
    """What both calibrators do with the incoming pairs: iterate them (with a progress bar),
    pass on the readable ones whose sizes match the first accepted pair's, and keep every
    left-out pair with its reason for the report."""

    def __init__(self) -> None:
        self.rejected: list[tuple[str, str]] = []
        self.sizes: tuple[tuple[int, int], tuple[int, int]] | None = None  # thermal, RGB
        self.total = 0

    def screen(self, pairs: Iterable[Pair], progress: bool = False) -> Iterator[Pair]:
        from tqdm import tqdm

        for pair in tqdm(pairs, desc="frames", unit="pair", disable=not progress):
            self.total += 1
            if pair.error:
                self.reject(pair, pair.error)
                continue
            hw = (pair.thermal.shape[:2], pair.rgb.shape[:2])
            if self.sizes is not None and hw != self.sizes:
                self.reject(pair, f"sizes {hw} differ from the first pair's {self.sizes}")
                continue
            yield pair

    def accept(self, pair: Pair) -> None:
        self.sizes = (pair.thermal.shape[:2], pair.rgb.shape[:2])

    def reject(self, pair: Pair, reason: str) -> None:
        self.rejected.append((pair.name, reason))

    def reasons(self, shown: int = 5) -> str:
        """The first rejections, for an AlignmentError message."""
        why = "; ".join(f"{n}: {r}" for n, r in self.rejected[:shown]) or "no pairs given"
        more = f" (+{len(self.rejected) - shown} more)" if len(self.rejected) > shown else ""
        return why + more
