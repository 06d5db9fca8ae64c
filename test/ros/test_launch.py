"""Launch arguments, RViz layout and Fast DDS profile, checked without starting processes.

The launch file itself runs for real in test_ros_tools.py (ros2 launch); here: its
arguments are generated from the parameter table, docs/node.md's table is that table, and
the LaunchDescription builds with the real launch_ros (skipped where it is not installed).
RViz cannot run on our machines: config/fusionsam.rviz is checked statically.
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from fusionsam_ros import paths
from fusionsam_ros.node.launch_args import LAUNCH_LEVEL, launch_arguments, markdown_table
from fusionsam_ros.node.node import OUTPUT_TOPICS
from fusionsam_ros.node.params import PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "fusionsam.launch.py"


def test_one_launch_argument_per_parameter_plus_the_launch_level_ones():
    names = [name for name, _, _ in launch_arguments()]
    assert names == [p.name for p in PARAMETERS] + [n for n, _, _ in LAUNCH_LEVEL]
    assert {"params_file", "namespace", "use_sim_time", "rviz", "log_level", "lifecycle"} <= set(
        names
    )
    defaults = {name: default for name, default, _ in launch_arguments()}
    assert all(defaults[p.name] == "" for p in PARAMETERS)  # keep the params file's value


def test_node_doc_launch_argument_table_is_the_generated_one():
    node_doc = (ROOT / "docs" / "node.md").read_text()
    assert markdown_table() in node_doc


def test_launch_description_declares_the_generated_arguments():
    pytest.importorskip("launch_ros", reason="launch_ros not installed (../shared/ros2-wheels)")
    from launch import LaunchDescription

    spec = importlib.util.spec_from_file_location("fusionsam_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = [a.name for a in description.get_launch_arguments()]
    assert declared == [name for name, _, _ in launch_arguments()]


def test_demo_launch_description_builds():
    pytest.importorskip("launch_ros", reason="launch_ros not installed (../shared/ros2-wheels)")
    spec = importlib.util.spec_from_file_location("demo_launch", ROOT / "launch" / "demo.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    declared = {a.name for a in module.generate_launch_description().get_launch_arguments()}
    assert {"bag", "out", "count", "rate", "checkpoint", "node_params"} <= declared


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
    assert int(shm.find("d:segment_size", ns).text) == 64 * 1024 * 1024
    # one port-queue entry per 64 KB fragment: a 4000x3000 rgb8 frame is ~550
    assert int(shm.find("d:port_queue_capacity", ns).text) >= 4096
    assert int(udp.find("d:sendBufferSize", ns).text) == 4 * 1024 * 1024
    assert int(udp.find("d:receiveBufferSize", ns).text) == 4 * 1024 * 1024
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"


def test_setup_installs_every_launch_file_and_their_shared_helper(monkeypatch):
    """The launch files import launch/_fusionsam_node.py from beside them: colcon / pip
    must put it in share/fusionsam_ros/launch with them."""
    import runpy

    import setuptools

    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    installed = dict(captured["data_files"])["share/fusionsam_ros/launch"]
    assert sorted(installed) == sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "launch").glob("*.py")
    )
    for name in ("fusionsam.launch.py", "demo.launch.py"):
        assert "from _fusionsam_node import" in (ROOT / "launch" / name).read_text()
