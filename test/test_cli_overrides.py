"""``-p`` parsing for the node's command-line overrides and the live-parameter rules."""

from __future__ import annotations

import pytest

from fusionsam_ros.node.cli_overrides import as_parameters, command_line_overrides
from fusionsam_ros.node.params import ParameterError, results_summary, validate, with_changes


def test_p_values_inside_ros_args_are_parsed_as_yaml():
    argv = ["fusionsam_node", "-p", "x:=1", "--ros-args", "--params-file", "f.yaml"]
    argv += ["-p", "thermal_range:=[0.0,65535.0]", "--param", "publish_semantic:=maybe"]
    argv += ["-p", "fusionsam_node:overlay_alpha:=0.3", "-p", "other_node:qos:=reliable"]
    assert command_line_overrides(argv, "fusionsam_node") == {
        "thermal_range": [0.0, 65535.0],
        "publish_semantic": "maybe",
        "overlay_alpha": 0.3,
    }


def test_parameters_keep_the_given_types():
    params = {p.name: p.value for p in as_parameters({"a": [0.0, 1.0], "b": True, "c": "x"})}
    assert params == {"a": [0.0, 1.0], "b": True, "c": "x"}


def test_live_changes_are_validated_and_read_only_ones_refused():
    p = validate()
    q = with_changes(p, {"overlay_alpha": 0.3, "thermal_range": [0.0, 100.0]})
    assert (q.overlay_alpha, q.thermal_range) == (0.3, (0.0, 100.0))
    assert "thermal_range=[0.0, 100.0]" in results_summary(q)
    with pytest.raises(ParameterError, match="overlay_alpha"):
        with_changes(p, {"overlay_alpha": 1.5})
    with pytest.raises(ParameterError, match="checkpoint.*read-only"):
        with_changes(p, {"checkpoint": "/x.pt"})
