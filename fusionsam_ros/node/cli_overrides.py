"""``-p name:=value`` from the command line, so it wins over the params file whatever its type.

rcl merges ``--params-file`` and ``-p`` into one table, and when the two values have
different types (``thermal_range: checkpoint`` in the file, ``-p thermal_range:=[0.0,
65535.0]``) the file's value is kept without a word. The node passes the values parsed
here as ``parameter_overrides`` (which rclpy applies last), so a command-line value
either takes effect or fails validation with the parameter's name (exit code 2).
"""

from __future__ import annotations

from typing import Any

import yaml
from rclpy.parameter import Parameter


def command_line_overrides(argv: list[str], node_name: str) -> dict[str, Any]:
    """{name: value} of the ``-p``/``--param`` arguments inside ``--ros-args`` that apply
    to ``node_name`` (``name:=v`` or ``node_name:name:=v``); values parsed as YAML, as rcl does."""
    found: dict[str, Any] = {}
    in_ros_args = False
    items = iter(argv)
    for arg in items:
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif in_ros_args and arg in ("-p", "--param"):
            rule = next(items, "")
            name, sep, text = rule.partition(":=")
            if not sep:
                continue
            node, colon, param = name.rpartition(":")
            if colon and node.lstrip("/").rsplit("/", 1)[-1] != node_name:
                continue
            try:
                found[param if colon else name] = yaml.safe_load(text)
            except yaml.YAMLError:
                found[param if colon else name] = text
    return found


def as_parameters(values: dict[str, Any]) -> list[Parameter]:
    """rclpy Parameters for ``Node(parameter_overrides=...)``; a value rclpy cannot type
    (e.g. a mixed list) is passed as its string so validation reports it by name."""
    out = []
    for name, value in values.items():
        try:
            out.append(Parameter(name, value=value))
        except TypeError:
            out.append(Parameter(name, value=str(value)))
    return out
