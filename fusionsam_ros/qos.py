"""QoS profiles by name: one vocabulary for the node, the bag player, the evaluator and tests.

``sensor_data`` is rclpy's sensor-data profile (best effort, volatile) with the caller's
depth; ``reliable`` and ``best_effort`` are keep-last, volatile profiles of that reliability.
A reliable publisher matches both kinds of subscriber; a reliable subscriber does not
match a best-effort publisher. rclpy is imported on use, so the names can be read (for
parameter and CLI choices) without a ROS install.
"""

from __future__ import annotations

from typing import Any

SENSOR_DATA = "sensor_data"
RELIABLE = "reliable"
BEST_EFFORT = "best_effort"
QOS_NAMES = (SENSOR_DATA, RELIABLE, BEST_EFFORT)


def qos_profile(name: str, depth: int) -> Any:
    """The ``rclpy.qos.QoSProfile`` called ``name`` with a keep-last history of ``depth``."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.qos import qos_profile_sensor_data as sensor

    if name == SENSOR_DATA:
        reliability, durability = sensor.reliability, sensor.durability
    elif name == RELIABLE:
        reliability, durability = ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE
    elif name == BEST_EFFORT:
        reliability, durability = ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE
    else:
        raise ValueError(f"QoS must be one of {', '.join(QOS_NAMES)}, got {name!r}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=reliability,
        durability=durability,
    )
