"""Launch arguments generated from the node's parameter table (``params.PARAMETERS``).

One argument per parameter, default "" = keep the params file's value; a value given is
passed as ``-p name:=value`` (the node's command-line overrides win over the params file
whatever the type, see ``cli_overrides``), plus the launch-level arguments below. Used by
``launch/fusionsam.launch.py`` and ``launch/demo.launch.py``; docs/node.md's table is
checked against ``launch_arguments()`` by a test.
"""

from __future__ import annotations

from typing import Any

from ..paths import default_params_file
from .params import PARAMETERS

NAMES = frozenset(p.name for p in PARAMETERS)
KEEP = ""  # default of every parameter argument: the params file decides
LAUNCH_LEVEL: tuple[tuple[str, str, str], ...] = (
    ("params_file", "", "node parameters (YAML); empty = config/fusionsam.yaml"),
    ("namespace", "", "node namespace (its topics are relative, so they move with it)"),
    ("use_sim_time", "false", "use /clock (bag playback)"),
    ("rviz", "false", "true: open RViz with config/fusionsam.rviz"),
    ("log_level", "info", "node log level: debug | info | warn | error | fatal"),
    ("lifecycle", "false", "true: managed (lifecycle) node"),
    ("autostart", "true", "with lifecycle:=true, configure and activate at start"),
)


def launch_arguments() -> list[tuple[str, str, str]]:
    """(name, default, description) of every launch argument, parameters first."""
    params = [(p.name, KEEP, p.description) for p in PARAMETERS]
    return params + list(LAUNCH_LEVEL)


def declare_arguments() -> list[Any]:
    from launch.actions import DeclareLaunchArgument

    return [
        DeclareLaunchArgument(
            name,
            default_value=default,
            description=f"{description} (empty: the params file's value)"
            if name in NAMES
            else description,
        )
        for name, default, description in launch_arguments()
    ]


def node_ros_arguments(context: Any) -> list[str]:
    """``-p`` for each parameter argument given (non-empty) and the log level."""
    from launch.substitutions import LaunchConfiguration

    out: list[str] = []
    for p in PARAMETERS:
        value = LaunchConfiguration(p.name).perform(context)
        if value != KEEP:
            out += ["-p", f"{p.name}:={value}"]
    out += ["--log-level", LaunchConfiguration("log_level").perform(context)]
    return out


def params_file(context: Any) -> str:
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration("params_file").perform(context) or str(default_params_file())


def is_true(context: Any, name: str) -> bool:
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration(name).perform(context).strip().lower() in ("true", "1", "yes")


def markdown_table() -> str:
    """docs/node.md's launch-argument table (a test checks docs/node.md holds exactly this)."""
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for name, default, description in launch_arguments():
        shown = "params file" if name in NAMES else f"`{default}`" if default else '`""`'
        escaped = description.replace("|", r"\|")
        rows.append(f"| `{name}` | {shown} | {escaped} |")
    return "\n".join(rows)
