"""PNG figures for the streaming evaluation report (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def iou_bars(splits: dict[str, dict[str, float | None]], path: Path, title: str) -> Path:
    """Grouped bars: per-class IoU (%) for each split (overall, day, night); absent = no bar."""
    plt = _pyplot()
    names = list(next(iter(splits.values())))
    x = np.arange(len(names))
    width = 0.8 / max(1, len(splits))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(names) + 2), 3.6), dpi=100)
    for k, (split, per_class) in enumerate(splits.items()):
        values = [
            100 * v if v is not None and not math.isnan(v) else 0.0 for v in per_class.values()
        ]
        ax.bar(x + (k - (len(splits) - 1) / 2) * width, values, width, label=split)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def latency_histogram(latencies_ms: list[float], path: Path, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=100)
    if latencies_ms:
        ax.hist(latencies_ms, bins=min(30, max(5, len(latencies_ms) // 2)), color="tab:blue")
        for q, style in ((50, "--"), (99, ":")):
            value = float(np.percentile(latencies_ms, q))
            ax.axvline(value, color="k", linestyle=style, label=f"p{q} {value:.0f} ms")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no matched frames", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def horizontal_strip(images: list[np.ndarray], height: int = 240, gap: int = 4) -> np.ndarray:
    """RGB images scaled to one height and laid side by side on a white background."""
    import cv2

    tiles = []
    for image in images:
        scale = height / image.shape[0]
        width = max(1, round(image.shape[1] * scale))
        tiles.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    total = sum(t.shape[1] for t in tiles) + gap * max(0, len(tiles) - 1)
    strip = np.full((height, max(total, 1), 3), 255, dtype=np.uint8)
    x = 0
    for tile in tiles:
        strip[:, x : x + tile.shape[1]] = tile
        x += tile.shape[1] + gap
    return strip


def save_rgb_png(image: np.ndarray, path: Path) -> Path:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"could not write {path}")
    return path
