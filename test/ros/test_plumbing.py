"""The shared ROS plumbing keeps the profiles, names and stamps the tools relied on before."""

from __future__ import annotations

import pytest

rclpy_qos = pytest.importorskip("rclpy.qos", reason="rclpy is not installed")

from fusionsam_ros import topics  # noqa: E402
from fusionsam_ros.node import compressed_image, params  # noqa: E402
from fusionsam_ros.qos import QOS_NAMES, qos_profile  # noqa: E402
from fusionsam_ros.ros_time import NS_PER_S, header_ns, set_stamp, stamp_ns  # noqa: E402


def test_sensor_data_is_rclpys_profile_and_reliable_is_keep_last() -> None:
    q = rclpy_qos
    assert qos_profile("sensor_data", 5) == q.qos_profile_sensor_data
    reliable = qos_profile("reliable", 7)
    assert reliable == q.QoSProfile(depth=7, reliability=q.ReliabilityPolicy.RELIABLE)
    best = qos_profile("best_effort", 100)
    assert best.reliability == q.ReliabilityPolicy.BEST_EFFORT and best.depth == 100
    assert best.durability == q.DurabilityPolicy.VOLATILE
    assert best.history == q.HistoryPolicy.KEEP_LAST


def test_unknown_qos_name_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="sensor_data, reliable, best_effort"):
        qos_profile("fast", 5)
    assert set(params.QOS_CHOICES) <= set(QOS_NAMES)


def test_stamps_round_trip_in_nanoseconds() -> None:
    from sensor_msgs.msg import Image

    ns = 1_700_000_000 * NS_PER_S + 123_456_789
    msg = set_stamp(Image(), ns)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert stamp_ns(msg) == header_ns(msg.header) == ns


def test_node_defaults_use_the_shared_topic_names() -> None:
    assert params.DEFAULTS["rgb_topic"] == topics.RGB_TOPIC == "rgb/image"
    assert params.DEFAULTS["thermal_topic"] == topics.THERMAL_TOPIC == "thermal/image"
    assert topics.OUTPUT_TOPICS["semantic"] == "fusionsam/semantic"
    assert topics.compressed_topic("rgb/image/") == topics.RGB_COMPRESSED_TOPIC
    assert compressed_image.transport_topic("rgb/image", "compressed") == "rgb/image/compressed"
    assert topics.is_compressed_topic("/cam/compressed") and not topics.is_compressed_topic("a/b")
