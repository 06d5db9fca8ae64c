"""Day / night of a sample from its name: MFNet's naming rule, kept in one place.

MFNet names a pair by a 5-digit number and a D (day) or N (night) suffix, e.g.
``00001D``; the generator writes names by this rule and every scorer splits results by
it, so they cannot drift apart. Names without the suffix (FMB) have no condition.
"""

from __future__ import annotations

from pathlib import Path

DAY, NIGHT = "day", "night"
CONDITIONS = (DAY, NIGHT)
_SUFFIX = {DAY: "D", NIGHT: "N"}
_CONDITION = {s: c for c, s in _SUFFIX.items()}


def mfnet_name(number: int, condition: str) -> str:
    """``mfnet_name(1, "night") == "00001N"``."""
    return f"{number:05d}{_SUFFIX[condition]}"


def condition_of(name: str) -> str | None:
    """ "day" / "night" for MFNet-style names (file extension allowed), else None."""
    return _CONDITION.get(Path(name).stem[-1:].upper())


def is_night(name: str) -> bool:
    return condition_of(name) == NIGHT
