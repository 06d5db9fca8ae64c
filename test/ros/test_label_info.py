"""fusionsam/label_info: the class table as vision_msgs/LabelInfo, latched (reliable +
transient local, depth 1), so a subscriber that joins after the node started still gets it;
re-sent on lifecycle activation. The type must be upstream vision_msgs' (same type hash),
or an upstream subscriber would not match. Skipped where vision_msgs does not import
(no ROS 2 install sourced and ``scripts/build_vision_msgs.sh`` not run)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest
from ros_helpers import NodeProcess, start_fusionsam_node, wait_until

from fusionsam_model.data.classes import MFNET
from fusionsam_ros.node.label_info import LabelInfoPublisher, label_info_qos, label_info_types
from fusionsam_ros.node.node import NODE_NAME
from fusionsam_ros.topics import LABEL_INFO_TOPIC

LABEL_INFO, VISION_CLASS, WHY_MISSING = label_info_types()
needs_vision_msgs = pytest.mark.skipif(
    LABEL_INFO is None,
    reason=f"vision_msgs not available ({WHY_MISSING}): run scripts/build_vision_msgs.sh .venv",
)
# Upstream type hashes (ROS 2 Jazzy and later), from the rosidl generators' output for
# ros-perception/vision_msgs: build/vision_msgs/rosidl_generator_type_description/
# vision_msgs/msg/LabelInfo.json (and label_info__description.c) in the public repository
# borednuna/ipm-ws, commit 1d768272c24114f1004e19d0ef8118b73b9a2b68.
UPSTREAM_HASHES = {
    "LabelInfo": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "VisionClass": "RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
}
TIMEOUT_S = 30.0


class LatchedSubscriber:
    """A transient-local subscription on the test client's node (created when called)."""

    def __init__(self, client: Any, topic: str = LABEL_INFO_TOPIC) -> None:
        self.node = client.node
        self._lock = threading.Lock()
        self._messages: list[Any] = []
        self.subscription = self.node.create_subscription(
            LABEL_INFO, topic, self._store, label_info_qos()
        )

    def _store(self, msg: Any) -> None:
        with self._lock:
            self._messages.append(msg)

    def messages(self) -> list[Any]:
        with self._lock:
            return list(self._messages)

    def close(self) -> None:
        self.node.destroy_subscription(self.subscription)


def class_map(msg: Any) -> list[tuple[int, str]]:
    return [(c.class_id, c.class_name) for c in msg.class_map]


EXPECTED_MAP = list(enumerate(MFNET.names))  # the tiny checkpoint's table: ids 0..8


@needs_vision_msgs
@pytest.mark.parametrize("name", list(UPSTREAM_HASHES))
def test_type_hash_is_upstream(ros_client, name):
    """The hash the middleware advertises (what an upstream subscriber compares)."""
    msg_type = {"LabelInfo": LABEL_INFO, "VisionClass": VISION_CLASS}[name]
    topic = f"label_info_hash_check/{name}"
    publisher = ros_client.node.create_publisher(msg_type, topic, label_info_qos())
    try:
        infos = ros_client.node.get_publishers_info_by_topic(topic)
        assert len(infos) == 1
        type_hash = str(infos[0].topic_type_hash)
        print(f"vision_msgs/msg/{name} type hash: {type_hash}")
        assert type_hash == UPSTREAM_HASHES[name]
    finally:
        ros_client.node.destroy_publisher(publisher)


@needs_vision_msgs
def test_late_subscriber_receives_the_class_table(ros_env, ros_client, tmp_path, tiny_checkpoint):
    node = start_fusionsam_node(ros_env, tmp_path, checkpoint=tiny_checkpoint)
    subscriber = None
    try:
        assert node.returncode is None, node.output()  # "ready": label_info was published
        subscriber = LatchedSubscriber(ros_client)  # joins after the node started
        assert wait_until(subscriber.messages, TIMEOUT_S), node.output()
        (msg,) = subscriber.messages()
        assert class_map(msg) == EXPECTED_MAP
        assert msg.threshold == 0.0
        assert msg.header.stamp.sec > 0
        infos = ros_client.node.get_publishers_info_by_topic(LABEL_INFO_TOPIC)
        assert [str(i.topic_type_hash) for i in infos] == [UPSTREAM_HASHES["LabelInfo"]]
    finally:
        if subscriber is not None:
            subscriber.close()
        assert node.stop() == 0, node.output()


def change_state(client: Any, transition_id: int) -> bool:
    """Ask the managed node for a transition; True when it succeeded."""
    from lifecycle_msgs.srv import ChangeState

    service = client.node.create_client(ChangeState, f"/{NODE_NAME}/change_state")
    try:
        assert service.wait_for_service(timeout_sec=TIMEOUT_S)
        request = ChangeState.Request()
        request.transition.id = transition_id
        future = service.call_async(request)
        assert wait_until(future.done, 120.0)  # configure loads the model
        return bool(future.result().success)
    finally:
        client.node.destroy_client(service)


@needs_vision_msgs
def test_lifecycle_activation_publishes_label_info(ros_env, ros_client, tmp_path, tiny_checkpoint):
    from lifecycle_msgs.msg import Transition

    cmd = [sys.executable, "-m", "fusionsam_ros.node.node", "--lifecycle", "--ros-args"]
    cmd += ["-p", f"checkpoint:={tiny_checkpoint}"]
    node = NodeProcess(cmd, ros_env, tmp_path / "lifecycle.log")
    subscriber = LatchedSubscriber(ros_client)
    try:
        assert node.wait_for_output("managed node: unconfigured", 90.0), node.output()
        assert change_state(ros_client, Transition.TRANSITION_CONFIGURE), node.output()
        assert subscriber.messages() == []  # configured, not active: nothing published yet
        assert change_state(ros_client, Transition.TRANSITION_ACTIVATE), node.output()
        assert wait_until(subscriber.messages, TIMEOUT_S), node.output()
        assert class_map(subscriber.messages()[0]) == EXPECTED_MAP
        # deactivate + activate: sent again
        assert change_state(ros_client, Transition.TRANSITION_DEACTIVATE), node.output()
        assert change_state(ros_client, Transition.TRANSITION_ACTIVATE), node.output()
        assert wait_until(lambda: len(subscriber.messages()) == 2, TIMEOUT_S), node.output()
        assert class_map(subscriber.messages()[1]) == EXPECTED_MAP
    finally:
        subscriber.close()
        assert node.stop() == 0, node.output()


class FakeNode:
    """Records warnings and publishers; enough of a Node for LabelInfoPublisher."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.created: list[tuple] = []

    def get_logger(self) -> Any:
        return self

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def create_publisher(self, *args: Any) -> Any:
        self.created.append(args)
        return None


def test_without_vision_msgs_the_node_says_so_once(monkeypatch):
    from fusionsam_ros.node import label_info

    monkeypatch.setattr(
        label_info,
        "label_info_types",
        lambda: (None, None, "ModuleNotFoundError: No module named 'vision_msgs'"),
    )
    node = FakeNode()
    publisher = LabelInfoPublisher(node)
    assert publisher.publish(MFNET.names) is None
    assert publisher.publish(MFNET.names) is None  # each activation: silent
    assert node.created == []
    assert len(node.warnings) == 1
    assert "fusionsam/label_info not published" in node.warnings[0]
    assert "No module named 'vision_msgs'" in node.warnings[0]
