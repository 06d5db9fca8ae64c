"""Where the package's data files live: the source tree or an installed share/fusionsam_ros.

colcon (and ``pip install``) copy ``config/`` and ``launch/`` to ``share/fusionsam_ros``;
an editable checkout uses them in place. Code asks here instead of guessing.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "fusionsam_ros"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _candidate_share_dirs() -> list[Path]:
    dirs = [SOURCE_ROOT]  # the source tree first: an editable checkout sees its own edits
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            dirs.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, OSError, ValueError):  # not installed / no AMENT_PREFIX_PATH
            pass
    except ImportError:
        pass
    dirs.append(Path(sys.prefix) / "share" / PACKAGE)
    return dirs


def share_file(relative: str) -> Path:
    """First existing ``config/...`` or ``launch/...`` file; error lists every place tried."""
    tried = []
    for base in _candidate_share_dirs():
        path = base / relative
        if path.is_file():
            return path
        tried.append(str(path))
    raise FileNotFoundError(f"{relative} not found; looked in: {', '.join(tried)}")


def config_file(name: str) -> Path:
    return share_file(f"config/{name}")


def default_params_file() -> Path:
    return config_file("fusionsam.yaml")


def fastdds_profile_file() -> Path:
    return config_file("fastdds_camera_profile.xml")
