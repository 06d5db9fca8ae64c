"""ros2 launch fusionsam_ros demo.launch.py bag:=DIR out:=DIR count:=N rate:=X [checkpoint:=...]
[overlays:=N] [node_params:="name:=value ..."] [evaluator_args:="..."]

What `make demo` runs when the launch tools are installed: fusionsam_node (reliable
inputs, as the bag offers them), then -- once the node logged "ready" -- the streaming
evaluator, then -- once it waits for frames -- the bag player; the launch ends when the
evaluator has written its report.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

HERE = str(Path(__file__).resolve().parent)  # loaded by path: _fusionsam_node.py is beside it
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from _fusionsam_node import fastdds_profile, fusionsam_node  # noqa: E402

ARGUMENTS = (
    ("bag", "", "rosbag2 directory to replay"),
    ("out", "runs/demo", "evaluator output directory (report.json, report.md, plots)"),
    ("count", "0", "frames the evaluator scores before it stops (0: until the timeout)"),
    ("rate", "1.0", "playback rate (x recorded speed)"),
    ("checkpoint", "", "model checkpoint; empty = the bundled one"),
    ("overlays", "8", "overlay frames the evaluator keeps"),
    ("node_params", "", "extra node parameters, 'name:=value ...'"),
    ("evaluator_args", "", "extra fusionsam-evaluate arguments"),
)


def _when_output(target, text: str, start: list):
    """Start ``start`` the first time ``target`` prints ``text`` (stdout or stderr)."""
    started = []

    def check(event):
        if not started and text in event.text.decode(errors="replace"):
            started.append(True)
            return start
        return None

    return RegisterEventHandler(OnProcessIO(target_action=target, on_stdout=check, on_stderr=check))


def _pipeline(context, *args, **kwargs) -> list:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    node_params = ["qos:=reliable", *shlex.split(arg("node_params"))]
    if arg("checkpoint"):
        node_params.insert(0, f"checkpoint:={arg('checkpoint')}")
    node = fusionsam_node(ros_arguments=[a for p in node_params for a in ("-p", p)])
    evaluator = Node(
        package="fusionsam_ros",
        executable="fusionsam-evaluate",
        arguments=["--out", arg("out"), "--count", arg("count"), "--timeout", "10"]
        + ["--overlays", arg("overlays"), *shlex.split(arg("evaluator_args"))],
        output="screen",
    )
    player = Node(
        package="fusionsam_ros",
        executable="fusionsam-play",
        arguments=[arg("bag"), "--rate", arg("rate"), "--wait-for-subscribers", "60"],
        output="screen",
    )
    return [
        node,
        _when_output(node, "ready: model", [evaluator]),
        _when_output(evaluator, "waiting for frames", [player]),
        RegisterEventHandler(
            OnProcessExit(
                target_action=evaluator,
                on_exit=[EmitEvent(event=Shutdown(reason="evaluator finished"))],
            )
        ),
        RegisterEventHandler(
            OnProcessExit(
                target_action=node,
                on_exit=[EmitEvent(event=Shutdown(reason="fusionsam_node exited"))],
            )
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            *(DeclareLaunchArgument(n, default_value=d, description=t) for n, d, t in ARGUMENTS),
            fastdds_profile(),
            SetEnvironmentVariable("PYTHONUNBUFFERED", "1"),  # the "ready" lines gate the steps
            OpaqueFunction(function=_pipeline),
        ]
    )
