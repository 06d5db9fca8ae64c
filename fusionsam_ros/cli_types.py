"""argparse value types shared by the command-line tools.

``type=float`` accepts "nan" and "inf", which then fail deep inside a run with a
traceback; these types refuse them while the arguments are parsed (exit 2, the name
of the option in the message).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


def positive_float(text: str) -> float:
    """A finite number > 0 (rates, periods)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove a file can be written there, so a tool that
    writes its results at the end fails at start instead. Raises OSError with the path."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    probe = out / f".write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
    return out
