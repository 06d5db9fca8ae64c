"""ros2 launch fusionsam_ros fusionsam.launch.py [<parameter>:=<value> ...] [params_file:=...]
[namespace:=...] [use_sim_time:=true] [rviz:=true] [log_level:=debug] [lifecycle:=true]

Starts fusionsam_node with the params file; every node parameter is also a launch argument
(generated from fusionsam_ros/params.py; empty = keep the params file's value). With
lifecycle:=true the node is managed and, unless autostart:=false, configured and activated
here. Runs under the camera-sized Fast DDS profile; RViz optional.
"""

from __future__ import annotations

from launch.actions import (
    EmitEvent,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from fusionsam_ros.launch_args import declare_arguments, is_true, node_ros_arguments, params_file
from fusionsam_ros.paths import config_file, fastdds_profile_file
from launch import LaunchDescription


def _fusionsam_node(context, *args, **kwargs) -> list:
    """The node (plain or managed) with the parameter arguments that were given."""
    common = dict(
        package="fusionsam_ros",
        executable="fusionsam_node",
        name="fusionsam_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[params_file(context), {"use_sim_time": is_true(context, "use_sim_time")}],
        ros_arguments=node_ros_arguments(context),
        output="screen",
        emulate_tty=True,
    )
    if not is_true(context, "lifecycle"):
        return [Node(**common)]
    node = LifecycleNode(arguments=["--lifecycle"], **common)
    if not is_true(context, "autostart"):
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
            # Camera-sized SHM segment and UDP buffers (a user's own profile wins).
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                EnvironmentVariable(
                    "FASTDDS_DEFAULT_PROFILES_FILE", default_value=str(fastdds_profile_file())
                ),
            ),
            OpaqueFunction(function=_fusionsam_node),
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
