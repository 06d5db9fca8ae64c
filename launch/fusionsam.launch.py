"""ros2 launch fusionsam_ros fusionsam.launch.py [params_file:=...] [rgb_topic:=...]
[thermal_topic:=...] [namespace:=...] [use_sim_time:=true] [rviz:=true]

Starts fusionsam_node with the params file (topic arguments, when given, override it)
under the camera-sized Fast DDS profile, and optionally RViz with config/fusionsam.rviz.
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from fusionsam_ros.paths import config_file, default_params_file, fastdds_profile_file
from launch import LaunchDescription


def _fusionsam_node(context, *args, **kwargs) -> list[Node]:
    """Topic overrides only when given, so an empty argument keeps the params file's value."""
    overrides: dict[str, object] = {
        "use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    }
    rgb_topic = LaunchConfiguration("rgb_topic").perform(context)
    thermal_topic = LaunchConfiguration("thermal_topic").perform(context)
    if rgb_topic:
        overrides["rgb_topic"] = rgb_topic
    if thermal_topic:
        overrides["thermal_topic"] = thermal_topic
    return [
        Node(
            package="fusionsam_ros",
            executable="fusionsam_node",
            name="fusionsam_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=str(default_params_file()),
                description="node parameters (YAML); default config/fusionsam.yaml",
            ),
            DeclareLaunchArgument(
                "rgb_topic", default_value="", description="RGB image topic; empty = params file"
            ),
            DeclareLaunchArgument(
                "thermal_topic",
                default_value="",
                description="thermal image topic; empty = params file",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="use /clock (bag playback)"
            ),
            DeclareLaunchArgument(
                "rviz", default_value="false", description="true: open config/fusionsam.rviz"
            ),
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
