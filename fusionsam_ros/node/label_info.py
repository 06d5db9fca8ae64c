"""``fusionsam/label_info``: the class table as ``vision_msgs/msg/LabelInfo``, latched.

The ROS way to say what the ids of a label image mean (vision_msgs README): a LabelInfo
beside the mask, reliable + transient local with depth 1, so a subscriber that joins later
(with transient local durability) still gets it. vision_msgs comes from a sourced ROS 2
install or, in the venv, from ``interfaces/vision_msgs`` built by
``scripts/build_vision_msgs.sh``; where it does not import, the node runs without this
topic and says so once.
"""

from __future__ import annotations

from typing import Any

from ..topics import LABEL_INFO_TOPIC

THRESHOLD = 0.0  # the mask is an argmax: no confidence threshold is applied
MISSING_HINT = "run `bash scripts/build_vision_msgs.sh .venv` or source a ROS 2 install"


def label_info_types() -> tuple[Any, Any, str]:
    """(LabelInfo, VisionClass, "") or (None, None, why vision_msgs is not usable)."""
    try:
        from rclpy.type_support import check_for_type_support
        from vision_msgs.msg import LabelInfo, VisionClass

        check_for_type_support(LabelInfo)  # the generated C typesupport loads
    except Exception as exc:  # noqa: BLE001  (ImportError, or a typesupport library missing)
        return None, None, f"{type(exc).__name__}: {exc}"
    return LabelInfo, VisionClass, ""


def label_info_qos() -> Any:
    """Reliable, transient local, keep last 1: the latest LabelInfo waits for late joiners."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def label_info_message(names: tuple[str, ...], stamp: Any, types: tuple[Any, Any]) -> Any:
    """LabelInfo whose ``class_map`` lists ``(id, name)`` with ids = positions in ``names``."""
    label_info, vision_class = types
    msg = label_info(threshold=THRESHOLD)
    msg.header.stamp = stamp
    msg.class_map = [vision_class(class_id=i, class_name=n) for i, n in enumerate(names)]
    return msg


class LabelInfoPublisher:
    """The node's latched LabelInfo publisher; a no-op (logged once) without vision_msgs."""

    def __init__(self, node: Any, topic: str = LABEL_INFO_TOPIC) -> None:
        self.node = node
        label_info, vision_class, why = label_info_types()
        self.types = (label_info, vision_class)
        self.publisher = None
        if label_info is None:
            node.get_logger().warning(
                f"{topic} not published: vision_msgs is not available ({why}); {MISSING_HINT}"
            )
            return
        self.publisher = node.create_publisher(label_info, topic, label_info_qos())

    def publish(self, names: tuple[str, ...]) -> Any:
        """Publish the class names (latched); returns the message, or None without vision_msgs."""
        if self.publisher is None:
            return None
        msg = label_info_message(names, self.node.get_clock().now().to_msg(), self.types)
        self.publisher.publish(msg)
        return msg
