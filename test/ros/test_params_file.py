"""A params file is honoured: topic names, publish flags and QoS come from it."""

from __future__ import annotations

import time

import numpy as np
from ros_helpers import make_image, start_fusionsam_node, wait_until, write_params_file


def test_params_file_sets_topics_and_outputs(ros_env, ros_client, tmp_path, tiny_checkpoint):
    params_file = write_params_file(
        tmp_path / "custom.yaml",
        {
            "checkpoint": str(tiny_checkpoint),
            "rgb_topic": "front/color/image_raw",
            "thermal_topic": "front/ir/image_raw",
            "qos": "reliable",
            "publish_overlay": False,
            "publish_fused": False,
        },
    )
    node = start_fusionsam_node(ros_env, tmp_path, params_files=[params_file])
    try:
        assert node.returncode is None, node.output()
        rgb_pub = ros_client.publisher("front/color/image_raw", reliable=True)
        th_pub = ros_client.publisher("front/ir/image_raw", reliable=True)
        semantic = ros_client.subscribe("fusionsam/semantic")
        color = ros_client.subscribe("fusionsam/semantic_color")
        assert ros_client.wait_for_peers(), node.output()
        names = dict(ros_client.node.get_topic_names_and_types())
        assert "/fusionsam/overlay" not in names and "/fusionsam/fused_image" not in names
        assert ros_client.node.count_publishers("/fusionsam/semantic") == 1
        stamp = time.time_ns()
        rgb_pub.publish(make_image(np.zeros((48, 64, 3), np.uint8), "rgb8", stamp, "front"))
        th_pub.publish(make_image(np.zeros((48, 64), np.uint16), "mono16", stamp, "front_ir"))
        assert wait_until(lambda: semantic and color, 20.0), node.output()
        assert semantic[0].header.frame_id == "front" and color[0].encoding == "rgb8"
        assert "inputs /front/color/image_raw + /front/ir/image_raw" in node.output()
    finally:
        assert node.stop() == 0
