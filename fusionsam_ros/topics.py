"""Every default topic name of the pipeline, and image_transport's compressed-topic rule.

The node, the bag tools, the evaluator, the demo and the tests all take their names from
here, so a rename is one edit. Names are relative (no leading ``/``) so that a namespace
or a remap applies. They must match README.md (Topics), config/fusionsam.yaml and the RViz config.
"""

from __future__ import annotations

# camera inputs (what the node subscribes to and the bag player publishes)
RGB_TOPIC = "rgb/image"
THERMAL_TOPIC = "thermal/image"
# ground truth recorded in evaluation bags, read by the stream evaluator
LABEL_TOPIC = "label/image"
NAME_TOPIC = "label/name"  # std_msgs/Header: frame_id is the sample name
# the node's outputs
SEMANTIC_TOPIC = "fusionsam/semantic"
SEMANTIC_COLOR_TOPIC = "fusionsam/semantic_color"
OVERLAY_TOPIC = "fusionsam/overlay"
FUSED_TOPIC = "fusionsam/fused_image"
# vision_msgs/LabelInfo (the class table's ids and names), latched: fusionsam_ros.node.label_info
LABEL_INFO_TOPIC = "fusionsam/label_info"
OUTPUT_TOPICS = {
    "semantic": SEMANTIC_TOPIC,
    "color": SEMANTIC_COLOR_TOPIC,
    "overlay": OVERLAY_TOPIC,
    "fused": FUSED_TOPIC,
}

COMPRESSED_SUFFIX = "compressed"


def compressed_topic(topic: str) -> str:
    """image_transport's compressed transport topic: ``rgb/image`` -> ``rgb/image/compressed``."""
    return f"{topic.rstrip('/')}/{COMPRESSED_SUFFIX}"


def is_compressed_topic(topic: str) -> bool:
    """True for a ``.../compressed`` topic (sensor_msgs/CompressedImage by convention)."""
    return topic.rstrip("/").endswith(f"/{COMPRESSED_SUFFIX}")


RGB_COMPRESSED_TOPIC = compressed_topic(RGB_TOPIC)
THERMAL_COMPRESSED_TOPIC = compressed_topic(THERMAL_TOPIC)
