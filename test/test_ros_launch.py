"""The launch file, RViz layout and Fast DDS profile, checked as far as this machine allows.

``launch`` / ``launch_ros`` have no pip wheels, so the launch file is checked by parsing
its source (argument names, the node it starts and with what); the test that builds the
real LaunchDescription runs only where ``launch_ros`` is importable (skipped here).
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from fusionsam_ros import paths
from fusionsam_ros.node import OUTPUT_TOPICS

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "fusionsam.launch.py"
ARGUMENTS = {"params_file", "rgb_topic", "thermal_topic", "namespace", "use_sim_time", "rviz"}


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name
    ]


def kwarg(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def test_declares_the_documented_arguments(tree):
    declared = {ast.literal_eval(c.args[0]) for c in calls(tree, "DeclareLaunchArgument")}
    assert declared == ARGUMENTS
    used = {ast.literal_eval(c.args[0]) for c in calls(tree, "LaunchConfiguration")}
    assert ARGUMENTS <= used, f"declared but never used: {ARGUMENTS - used}"


def test_starts_fusionsam_node_with_the_params_file(tree):
    nodes = {ast.literal_eval(kwarg(c, "executable")): c for c in calls(tree, "Node")}
    node = nodes["fusionsam_node"]
    assert ast.literal_eval(kwarg(node, "package")) == "fusionsam_ros"
    params = kwarg(node, "parameters")
    assert isinstance(params, ast.List)
    first = params.elts[0]  # the params file first, so argument overrides win
    assert isinstance(first, ast.Call) and ast.literal_eval(first.args[0]) == "params_file"
    source = ast.unparse(tree)
    for name in ("rgb_topic", "thermal_topic", "use_sim_time", "namespace"):
        assert re.search(rf"LaunchConfiguration\('{name}'\)", source), name


def test_rviz_is_conditional_and_uses_the_shipped_layout(tree):
    rviz = next(
        c for c in calls(tree, "Node") if ast.literal_eval(kwarg(c, "executable")) == "rviz2"
    )
    assert "IfCondition(LaunchConfiguration('rviz'))" in ast.unparse(kwarg(rviz, "condition"))
    assert "fusionsam.rviz" in ast.unparse(kwarg(rviz, "arguments"))


def test_sets_the_fastdds_profile(tree):
    env = calls(tree, "SetEnvironmentVariable")
    assert [ast.literal_eval(c.args[0]) for c in env] == ["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert "fastdds_profile_file()" in ast.unparse(env[0])


def test_files_the_launch_file_needs_resolve():
    assert paths.default_params_file() == ROOT / "config" / "fusionsam.yaml"
    assert paths.config_file("fusionsam.rviz").is_file()
    assert paths.fastdds_profile_file().is_file()
    with pytest.raises(FileNotFoundError, match="looked in"):
        paths.config_file("missing.yaml")


def test_rviz_layout_shows_outputs_and_inputs():
    layout = yaml.safe_load((ROOT / "config" / "fusionsam.rviz").read_text())
    displays = layout["Visualization Manager"]["Displays"]
    images = {d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"}
    wanted = {OUTPUT_TOPICS["overlay"], OUTPUT_TOPICS["color"], OUTPUT_TOPICS["fused"]}
    assert images == wanted | {"rgb/image", "thermal/image"}


def test_fastdds_profile_is_camera_sized_and_default():
    root = ET.parse(ROOT / "config" / "fastdds_camera_profile.xml").getroot()
    ns = {"d": "http://www.eprosima.com"}
    shm = root.find(".//d:transport_descriptor[d:type='SHM']", ns)
    udp = root.find(".//d:transport_descriptor[d:type='UDPv4']", ns)
    assert int(shm.find("d:segment_size", ns).text) == 16 * 1024 * 1024
    assert int(udp.find("d:sendBufferSize", ns).text) == 4 * 1024 * 1024
    assert int(udp.find("d:receiveBufferSize", ns).text) == 4 * 1024 * 1024
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"


def test_launch_description_builds_with_launch_ros():
    pytest.importorskip("launch_ros", reason="launch_ros has no pip wheel; needs a ROS 2 install")
    import importlib.util

    from launch import LaunchDescription

    spec = importlib.util.spec_from_file_location("fusionsam_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    names = {a.name for a in description.get_launch_arguments()}
    assert names == ARGUMENTS
