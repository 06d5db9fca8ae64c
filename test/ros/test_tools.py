"""The documented start commands with the real ROS 2 tools: ``ros2 launch`` (namespace,
topic arguments, parameter arguments), ``ros2 run``, ``ros2 param get/set``, ``ros2 topic
hz``, ``ros2 lifecycle set`` and a ``colcon build`` whose ``install/`` is launched.

Skipped with the reason when the tools are not installed (``make venv`` installs them from
../shared/ros2-wheels; a sourced ROS 2 install has them). The ros2 commands that look up a
node are retried until they succeed (discovery takes 1-2 s), each bounded by a timeout.
RViz cannot run here: config/fusionsam.rviz is checked statically in test_ros_launch.py.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import REPO_ROOT, NodeProcess, make_image, wait_until

from fusionsam_ros.node.image_conversion import image_to_array

ROS2 = shutil.which("ros2", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
TOOLS = ROS2 is not None and all(
    importlib.util.find_spec(m) for m in ("ros2cli", "launch_ros", "ros2lifecycle")
)
pytestmark = pytest.mark.skipif(
    not TOOLS, reason="ros2 launch/CLI tools not installed (make venv with ../shared/ros2-wheels)"
)
READY_TIMEOUT_S = 180.0
NS = "robot1"


def tools_env(ros_env: dict[str, str], prefix: str = sys.prefix) -> dict[str, str]:
    env = dict(ros_env)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(
        p for p in (prefix, ros_env.get("AMENT_PREFIX_PATH", "")) if p
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def ros2(env: dict[str, str], *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ROS2, *args], env=env, capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT
    )


def ros2_until(
    env: dict[str, str],
    args: list[str],
    ok: Callable[[subprocess.CompletedProcess], bool],
    timeout_s: float = 40.0,
    call_timeout_s: float = 30.0,
) -> subprocess.CompletedProcess:
    """Repeat a ros2 command until ``ok`` (the node may not be discovered yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = ros2(env, *args, timeout_s=call_timeout_s)
        if ok(result) or time.monotonic() > deadline:
            print("$ ros2", " ".join(args), "\n", result.stdout, result.stderr)
            return result


def matched(client, publish: list[str], subscribe: list[str], timeout_s: float = 30.0) -> bool:
    """These publishers have a subscriber and these topics a publisher (only these: the
    client keeps publishers of nodes that earlier tests stopped)."""
    return wait_until(
        lambda: (
            all(client.publisher(t).get_subscription_count() > 0 for t in publish)
            and all(client.node.count_publishers(t) > 0 for t in subscribe)
        ),
        timeout_s,
    )


def publish_pair(client, ns: str, rgb: np.ndarray, thermal: np.ndarray) -> int:
    stamp = time.time_ns()
    client.publisher(f"/{ns}/cam/rgb").publish(make_image(rgb, "rgb8", stamp))
    client.publisher(f"/{ns}/cam/thermal").publish(make_image(thermal, "mono16", stamp))
    return stamp


def output_for(client, topic: str, stamp: int, timeout_s: float = 30.0):
    def find():
        return next(
            (
                m
                for m in client.received(topic)
                if m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp
            ),
            None,
        )

    wait_until(find, timeout_s)
    return find()


def stop_launch(proc: NodeProcess) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.proc.send_signal(signal.SIGINT)
    code = proc.proc.wait(30)
    return code, time.monotonic() - t0


RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
THERMAL = RNG.integers(0, 65535, (48, 64), dtype=np.uint16)


# --- ros2 launch (plain node) ------------------------------------------------------------
@pytest.fixture(scope="module")
def launched(ros_env, tmp_path_factory, tiny_checkpoint):
    env = tools_env(ros_env)
    cmd = [ROS2, "launch", "fusionsam_ros", "fusionsam.launch.py", f"namespace:={NS}"]
    cmd += ["rgb_topic:=cam/rgb", "thermal_topic:=cam/thermal", f"checkpoint:={tiny_checkpoint}"]
    cmd += ["cpu_threads:=1", "overlay_alpha:=1.0", "sync_slop_s:=0.02"]
    # started the way a script's background job starts it (SIGINT ignored, inherited): the
    # SIGINT test below must still stop it (processes.LoggedProcess resets SIGINT to default)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = NodeProcess(cmd, env, tmp_path_factory.mktemp("launch") / "launch.log")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.wait_for_output("ready:", READY_TIMEOUT_S), proc.output()
    yield proc, env
    if proc.returncode is None:
        stop_launch(proc)


@pytest.fixture(scope="module")
def client(ros_client, launched):
    for what in ("rgb", "thermal"):
        ros_client.publisher(f"/{NS}/cam/{what}")
    for out in ("semantic", "overlay"):
        ros_client.subscribe(f"/{NS}/fusionsam/{out}")
    assert ros_client.wait_for_peers(), launched[0].output()
    return ros_client


def test_ros2_launch_with_namespace_and_topic_arguments_serves_masks(launched, client):
    proc, _ = launched
    assert f"inputs /{NS}/cam/rgb + /{NS}/cam/thermal" in proc.output()
    assert "overlay_alpha=1.0" in proc.output()  # a parameter argument
    mask = None
    for _ in range(4):  # best-effort input QoS: a pair sent right after matching can be lost
        stamp = publish_pair(client, NS, RGB, THERMAL)
        mask = output_for(client, f"/{NS}/fusionsam/semantic", stamp, timeout_s=15.0)
        if mask is not None:
            break
    assert mask is not None, proc.output()
    assert (mask.height, mask.width, mask.encoding) == (48, 64, "mono8")


def test_ros2_param_set_changes_the_overlay_and_refuses_read_only_and_bad_values(launched, client):
    proc, env = launched
    node = f"/{NS}/fusionsam_node"
    got = ros2_until(env, ["param", "get", node, "overlay_alpha"], lambda r: "1.0" in r.stdout)
    assert "Double value is: 1.0" in got.stdout
    stamp = publish_pair(client, NS, RGB, THERMAL)
    labels = image_to_array(output_for(client, f"/{NS}/fusionsam/semantic", stamp))
    before = image_to_array(output_for(client, f"/{NS}/fusionsam/overlay", stamp))
    assert (labels != 0).any(), "the test model labels every pixel 0: overlay cannot differ"

    done = ros2_until(
        env, ["param", "set", node, "overlay_alpha", "0.0"], lambda r: "successful" in r.stdout
    )
    assert "Set parameter successful" in done.stdout
    stamp = publish_pair(client, NS, RGB, THERMAL)
    after = image_to_array(output_for(client, f"/{NS}/fusionsam/overlay", stamp))
    assert np.array_equal(after, RGB)  # alpha 0: the camera image itself
    assert not np.array_equal(before, after)

    refused = ros2(env, "param", "set", node, "checkpoint", "/tmp/other.pt")
    assert "read-only" in refused.stdout + refused.stderr
    bad = ros2(env, "param", "set", node, "overlay_alpha", "1.5")
    said = bad.stdout + bad.stderr  # ros2param prints the refusal on stderr
    assert "Setting parameter failed: parameter 'overlay_alpha': must be in [0.0, 1.0]" in said
    kept = ros2(env, "param", "get", node, "overlay_alpha")
    assert "Double value is: 0.0" in kept.stdout
    live = ros2(env, "param", "set", node, "thermal_range", "[0.0, 65535.0]")
    assert "Set parameter successful" in live.stdout, live.stdout + live.stderr
    assert wait_until(lambda: "thermal_range=[0.0, 65535.0]" in proc.output(), 10.0)


def test_ros2_topic_hz_reports_a_rate(launched, client):
    proc, env = launched
    stop = threading.Event()

    def flow() -> None:
        while not stop.is_set():
            publish_pair(client, NS, RGB, THERMAL)
            time.sleep(0.2)

    thread = threading.Thread(target=flow, daemon=True)
    thread.start()
    hz = subprocess.Popen(
        [ROS2, "topic", "hz", f"/{NS}/fusionsam/semantic", "--window", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(hz.stdout), daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: any("average rate" in ln for ln in lines), 60.0), lines
    finally:
        stop.set()
        hz.send_signal(signal.SIGINT)
        hz.wait(10)
        thread.join(5)
    rate = float(next(ln for ln in lines if "average rate" in ln).split(":")[1])
    print("ros2 topic hz:", "".join(lines[:4]))
    assert 0.5 < rate < 20.0


def test_sigint_to_ros2_launch_stops_node_and_launch_with_exit_0(launched):
    proc, _ = launched
    code, seconds = stop_launch(proc)
    print(f"ros2 launch exit {code} after {seconds:.2f} s")
    assert code == 0, proc.output()
    assert "stopped" in proc.output() and "process has finished cleanly" in proc.output()
    assert "Traceback" not in proc.output()
    assert seconds < 5.0  # launch escalates to SIGTERM after 5 s


# --- ros2 run + ros2 lifecycle -------------------------------------------------------------
def test_ros2_run_managed_node_driven_by_ros2_lifecycle(
    ros_env, ros_client, tmp_path, tiny_checkpoint
):
    env = tools_env(ros_env)
    ns = "managed"
    cmd = [ROS2, "run", "fusionsam_ros", "fusionsam_node", "--lifecycle", "--ros-args"]
    cmd += ["-r", f"__ns:=/{ns}", "-p", "rgb_topic:=cam/rgb", "-p", "thermal_topic:=cam/thermal"]
    cmd += ["-p", f"checkpoint:={tiny_checkpoint}", "-p", "cpu_threads:=1"]
    proc = NodeProcess(cmd, env, tmp_path / "run.log")
    node = f"/{ns}/fusionsam_node"
    try:
        assert proc.wait_for_output("managed node: unconfigured", 120.0), proc.output()
        ros2(env, "daemon", "start")
        for what in ("rgb", "thermal"):
            ros_client.publisher(f"/{ns}/cam/{what}")
        mask_topic = f"/{ns}/fusionsam/semantic"
        ros_client.subscribe(mask_topic)

        def transition(name: str) -> None:
            r = ros2_until(
                env,
                ["lifecycle", "set", node, name],
                lambda r: "Transitioning successful" in r.stdout,
                timeout_s=60.0,
                call_timeout_s=READY_TIMEOUT_S,  # configure loads the model (torch import)
            )
            assert "Transitioning successful" in r.stdout, r.stdout + r.stderr + proc.output()

        transition("configure")
        assert "configured: model" in proc.output()
        assert "inactive" in ros2(env, "lifecycle", "get", node).stdout
        transition("activate")
        cams = [f"/{ns}/cam/rgb", f"/{ns}/cam/thermal"]
        assert matched(ros_client, cams, [mask_topic]), proc.output()
        stamp = publish_pair(ros_client, ns, RGB, THERMAL)
        assert output_for(ros_client, mask_topic, stamp) is not None, proc.output()
        transition("deactivate")
        assert "inactive" in ros2(env, "lifecycle", "get", node).stdout
        assert "deactivated: not processing (model still loaded)" in proc.output()
        stamp = publish_pair(ros_client, ns, RGB, THERMAL)
        assert output_for(ros_client, mask_topic, stamp, timeout_s=3.0) is None
        transition("activate")  # the model was kept: no reload
        assert proc.output().count("configured: model") == 1
        stamp = publish_pair(ros_client, ns, RGB, THERMAL)
        assert output_for(ros_client, mask_topic, stamp) is not None, proc.output()
    finally:
        ros2(env, "daemon", "stop")
        t0 = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.proc.wait(15)
        print(
            f"ros2 run (managed, active): SIGTERM -> exit {code} in {time.monotonic() - t0:.2f} s"
        )
    assert code == 0, proc.output()
    assert "Traceback" not in proc.output()


# --- colcon build, then ros2 launch from install/ ---------------------------------------------
@pytest.mark.skipif(
    shutil.which("colcon", path=str(Path(sys.executable).parent)) is None,
    reason="colcon not installed in the venv (requirements-ros.txt)",
)
def test_colcon_build_then_ros2_launch_from_install(ros_env, ros_client, tmp_path, tiny_checkpoint):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent))
    build = subprocess.run(
        [
            colcon,
            "--log-base",
            str(tmp_path / "log"),
            "build",
            "--packages-select",
            "fusionsam_ros",
            "--paths",
            str(REPO_ROOT),
            "--build-base",
            str(tmp_path / "build"),
            "--install-base",
            str(tmp_path / "install"),
        ],
        cwd=tmp_path,
        env=tools_env(ros_env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(build.stdout[-2000:], build.stderr[-2000:])
    assert build.returncode == 0, build.stdout + build.stderr
    assert "Finished <<< fusionsam_ros" in build.stdout
    install = tmp_path / "install"
    assert (install / "fusionsam_ros" / "lib" / "fusionsam_ros" / "fusionsam_node").is_file()
    assert (
        install / "fusionsam_ros" / "share" / "fusionsam_ros" / "launch" / "fusionsam.launch.py"
    ).is_file()
    ns = "colcon"
    script = (
        f"source {install}/setup.bash && ros2 pkg prefix fusionsam_ros && "
        f"exec ros2 launch fusionsam_ros fusionsam.launch.py lifecycle:=true namespace:={ns} "
        f"rgb_topic:=cam/rgb thermal_topic:=cam/thermal cpu_threads:=1"
    )
    env = dict(ros_env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{ros_env['PATH']}")
    env.pop("AMENT_PREFIX_PATH", None)
    env["AMENT_PREFIX_PATH"] = sys.prefix  # the ROS packages (rclpy, messages) live in the venv
    proc = NodeProcess(["bash", "-c", script], env, tmp_path / "launch.log")
    try:
        assert proc.wait_for_output("ready:", READY_TIMEOUT_S), proc.output()
        out = proc.output()
        assert f"{install}/fusionsam_ros" in out.splitlines()[0]  # ros2 pkg prefix
        # the bundled model from the installed copy, configured + activated by the launch file
        assert f"ready: model {install}/fusionsam_ros/lib/python" in out, out
        for what in ("rgb", "thermal"):
            ros_client.publisher(f"/{ns}/cam/{what}")
        ros_client.subscribe(f"/{ns}/fusionsam/semantic")
        cams = [f"/{ns}/cam/rgb", f"/{ns}/cam/thermal"]
        assert matched(ros_client, cams, [f"/{ns}/fusionsam/semantic"]), proc.output()
        stamp = publish_pair(ros_client, ns, RGB, THERMAL)
        assert output_for(ros_client, f"/{ns}/fusionsam/semantic", stamp) is not None, out
    finally:
        code, seconds = stop_launch(proc)
    assert code == 0, proc.output()
