"""Helpers for the tests that run ROS 2 (imported by them; the fixtures are in conftest.py).

- ``start_fusionsam_node(env, log_dir, checkpoint=..., params=..., params_files=...)``
  -> ``NodeProcess`` once the node logged "ready" (or exited, see ``returncode``).
- ``NodeProcess.stop()`` sends SIGINT and returns the exit code (kills after a timeout).
- ``RosClient``: a test node spinning in a background thread that publishes, collects
  messages by topic and waits for DDS matching.
- ``make_image(pixels, encoding, stamp_ns, frame_id, row_padding=0, bigendian=False)``
  builds a sensor_msgs/Image independently of the code under test.
- ``in_graph(client, {topic: (publishing node, subscribing node)})``: those endpoints are
  announced, as ``client`` sees the ROS graph.
- ``wait_until(predicate, timeout_s)``; ``reserve_domain_id()``: a ROS_DOMAIN_ID no other
  test process on this machine holds (a lock file per id under the temp dir).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fusionsam_ros.processes import LoggedProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds_camera_profile.xml"
DOMAIN_RANGE = range(20, 100)  # within the default port mapping; 0 (the default) avoided
DISCOVERY_TIMEOUT_S = 15.0
_RESERVATIONS = itertools.count()  # reserve_domain_id calls of this process
# what every ROS process of the tests gets, the pytest process included (set by the
# ros_isolation fixture before its first rclpy participant, not at import)
ROS_ISOLATION_ENV = {
    "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE),
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
}


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def in_graph(client: RosClient, endpoints: dict[str, tuple[str, str]]) -> bool:
    """Every ``topic: (publishing node, subscribing node)`` is in the ROS graph as this
    process sees it (an empty publishing node: any); waited on before playback, so it
    does not start while discovery is still under way on a loaded machine."""
    for topic, (pub_node, sub_node) in endpoints.items():
        pubs = {i.node_name for i in client.node.get_publishers_info_by_topic(topic)}
        subs = {i.node_name for i in client.node.get_subscriptions_info_by_topic(topic)}
        if (pub_node and pub_node not in pubs) or sub_node not in subs:
            return False
    return True


def reserve_domain_id() -> tuple[int, Any]:
    """(id, open lock file); the id stays reserved until the file is closed.

    Each call of this process starts one id further: a module never reuses the domain of
    an earlier one, so what a killed process of that module left in shared memory (Fast
    DDS ports of its domain) cannot reach a later module's participants."""
    start = (os.getpid() + next(_RESERVATIONS)) % len(DOMAIN_RANGE)
    lock_dir = Path(tempfile.gettempdir())
    for k in range(len(DOMAIN_RANGE)):
        domain = DOMAIN_RANGE[(start + k) % len(DOMAIN_RANGE)]
        handle = open(lock_dir / f"fusionsam_ros_domain_{domain}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return domain, handle
        except OSError:
            handle.close()
    raise RuntimeError(f"no free ROS_DOMAIN_ID in {DOMAIN_RANGE}")


class RosClient:
    """A node spinning in a background thread; collects every message per subscribed topic."""

    def __init__(self, context: Any, name: str = "fusionsam_test_client") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self.messages: dict[str, list[Any]] = {}
        self._publishers: dict[str, Any] = {}
        self._subscriptions: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except (ExternalShutdownException, Exception):
            pass

    def publisher(self, topic: str, msg_type: Any = None, reliable: bool = False) -> Any:
        from sensor_msgs.msg import Image

        from fusionsam_ros.qos import BEST_EFFORT, RELIABLE, qos_profile

        if topic not in self._publishers:
            qos = qos_profile(RELIABLE if reliable else BEST_EFFORT, 10)
            self._publishers[topic] = self.node.create_publisher(msg_type or Image, topic, qos)
        return self._publishers[topic]

    def subscribe(self, topic: str, msg_type: Any = None) -> list[Any]:
        from sensor_msgs.msg import Image

        from fusionsam_ros.qos import RELIABLE, qos_profile

        if topic not in self._subscriptions:
            self.messages[topic] = []

            def store(msg: Any, topic: str = topic) -> None:
                with self._lock:
                    self.messages[topic].append(msg)

            qos = qos_profile(RELIABLE, 50)
            self._subscriptions[topic] = self.node.create_subscription(
                msg_type or Image, topic, store, qos
            )
        return self.messages[topic]

    def received(self, topic: str) -> list[Any]:
        with self._lock:
            return list(self.messages.get(topic, []))

    def stamped(self, topic: str, stamp_ns: int) -> Any:
        """The first message received on ``topic`` whose header stamp is ``stamp_ns``, or None."""
        from fusionsam_ros.ros_time import stamp_ns as stamp_of

        return next((m for m in self.received(topic) if stamp_of(m) == stamp_ns), None)

    def clear(self) -> None:
        with self._lock:
            for msgs in self.messages.values():
                msgs.clear()

    def wait_for_peers(self, timeout_s: float = DISCOVERY_TIMEOUT_S) -> bool:
        """Every publisher has a subscriber and every subscription a publisher."""

        def matched() -> bool:
            return all(p.get_subscription_count() > 0 for p in self._publishers.values()) and all(
                s.get_publisher_count() > 0 for s in self._subscriptions.values()
            )

        return wait_until(matched, timeout_s)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


class NodeProcess(LoggedProcess):
    """A ROS process run from the repository root; a hang on SIGINT fails the test."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        super().__init__(cmd, env, log_path, cwd=REPO_ROOT)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGINT (what Ctrl-C and launch send); SIGKILL and an error if it hangs."""
        code = super().stop(timeout_s)
        if self.killed:
            raise AssertionError(f"{self.cmd} ignored SIGINT for {timeout_s} s:\n{self.output()}")
        return code


def write_params_file(path: Path, params: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


def start_fusionsam_node(
    env: dict[str, str],
    log_dir: Path,
    checkpoint: Path | str | None = None,
    params: dict[str, Any] | None = None,
    params_files: list[Path] | None = None,
    ready_timeout_s: float = 90.0,
    name: str = "node",
) -> NodeProcess:
    """Run ``python -m fusionsam_ros.node.node`` with the given parameters; wait for "ready".

    Returns once the node logged ready or exited (check ``returncode``), so a test of a
    start-up failure can read ``output()`` right away.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    overrides = dict(params or {})
    if checkpoint is not None:
        overrides["checkpoint"] = str(checkpoint)
    cmd = [sys.executable, "-m", "fusionsam_ros.node.node", "--ros-args"]
    for f in params_files or []:
        cmd += ["--params-file", str(f)]
    if overrides:
        cmd += ["--params-file", str(write_params_file(log_dir / f"{name}_params.yaml", overrides))]
    process = NodeProcess(cmd, env, log_dir / f"{name}.log")
    process.wait_for_output("ready:", ready_timeout_s)
    return process


def make_image(
    pixels: np.ndarray,
    encoding: str,
    stamp_ns: int,
    frame_id: str = "camera",
    row_padding: int = 0,
    bigendian: bool = False,
) -> Any:
    """sensor_msgs/Image with optional padding bytes after every row and a chosen byte order."""
    from sensor_msgs.msg import Image

    from fusionsam_ros.ros_time import set_stamp

    a = np.ascontiguousarray(pixels)
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">" if bigendian else "<"))
    h, w = a.shape[:2]
    rows = a.reshape(h, -1).view(np.uint8)
    if row_padding:
        rows = np.concatenate([rows, np.full((h, row_padding), 0xAB, np.uint8)], axis=1)
    msg = set_stamp(Image(), stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = h, w
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    msg.step = rows.shape[1]
    msg.data = rows.tobytes()
    return msg
