"""ros2 launch fusionsam_ros fusionsam.launch.py [<parameter>:=<value> ...] [params_file:=...]
[namespace:=...] [use_sim_time:=true] [rviz:=true] [log_level:=debug] [lifecycle:=true]

Starts fusionsam_node with the params file; every node parameter is also a launch argument
(generated from fusionsam_ros/node/params.py; empty = keep the params file's value). With
lifecycle:=true the node is managed and, unless autostart:=false, configured and activated
here. Runs under the camera-sized Fast DDS profile; RViz optional.
"""

from __future__ import annotations

import sys
from pathlib import Path

from launch.actions import EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from fusionsam_ros.node.launch_args import (
    declare_arguments,
    is_true,
    node_ros_arguments,
    params_file,
)
from fusionsam_ros.paths import config_file
from launch import LaunchDescription

HERE = str(Path(__file__).resolve().parent)  # loaded by path: _fusionsam_node.py is beside it
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from _fusionsam_node import fastdds_profile, fusionsam_node  # noqa: E402


def _node_actions(context, *args, **kwargs) -> list:
    """The node (plain or managed) with the parameter arguments that were given."""
    lifecycle = is_true(context, "lifecycle")
    node = fusionsam_node(
        lifecycle=lifecycle,
        namespace=LaunchConfiguration("namespace"),
        parameters=[params_file(context), {"use_sim_time": is_true(context, "use_sim_time")}],
        ros_arguments=node_ros_arguments(context),
        emulate_tty=True,
    )
    if not lifecycle or not is_true(context, "autostart"):
        return [node]
    activate = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            goal_state="inactive",
            entities=[
                EmitEvent(
                    event=ChangeState(
                        lifecycle_node_matcher=matches_action(node),
                        transition_id=Transition.TRANSITION_ACTIVATE,
                    )
                )
            ],
        )
    )
    configure = EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=Transition.TRANSITION_CONFIGURE,
        )
    )
    return [node, activate, configure]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            *declare_arguments(),
            fastdds_profile(),  # camera-sized SHM and UDP buffers (a user's own profile wins)
            OpaqueFunction(function=_node_actions),
            Node(
                package="rviz2",
                executable="rviz2",
                name="fusionsam_rviz",
                namespace=LaunchConfiguration("namespace"),
                arguments=["-d", str(config_file("fusionsam.rviz"))],
                condition=IfCondition(LaunchConfiguration("rviz")),
                output="screen",
            ),
        ]
    )
