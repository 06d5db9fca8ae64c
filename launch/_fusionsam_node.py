"""What both launch files (fusionsam.launch.py, demo.launch.py) share: the fusionsam_node
``Node(...)`` and the Fast DDS profile setting.

Not a launch file: ``ros2 launch`` loads launch files by path, so they put their own
directory on ``sys.path`` (links resolved) and import this module from beside them: the
source tree's launch/ (``make venv`` links share/fusionsam_ros/launch/* to it), or
share/fusionsam_ros/launch/ after a colcon / pip install (setup.py installs this file with
the launch files).
"""

from __future__ import annotations

from launch.actions import SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable
from launch_ros.actions import LifecycleNode, Node

from fusionsam_ros.paths import fastdds_profile_file


def fusionsam_node(*, lifecycle: bool = False, **options) -> Node:
    """fusionsam_node of package fusionsam_ros, its log on the screen; ``options`` are the
    launch_ros ``Node`` arguments of the caller (``ros_arguments``, ``parameters``,
    ``namespace``, ...). ``lifecycle=True``: the managed node (``--lifecycle``)."""
    options = {
        "package": "fusionsam_ros",
        "executable": "fusionsam_node",
        "name": "fusionsam_node",
        "output": "screen",
        **options,
    }
    if lifecycle:
        return LifecycleNode(arguments=["--lifecycle"], **options)
    return Node(**options)


def fastdds_profile() -> SetEnvironmentVariable:
    """Camera-sized SHM segment and UDP buffers (config/fastdds_camera_profile.xml) unless
    the user set FASTDDS_DEFAULT_PROFILES_FILE (their own profile wins)."""
    return SetEnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE",
        EnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE", default_value=str(fastdds_profile_file())
        ),
    )
