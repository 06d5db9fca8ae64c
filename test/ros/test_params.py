"""Parameter validation names the bad parameter; config/fusionsam.yaml matches PARAMETERS."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fusionsam_ros.node.params import DEFAULTS, ParameterError, validate

CONFIG = Path(__file__).resolve().parents[2] / "config" / "fusionsam.yaml"


def test_defaults_are_valid() -> None:
    p = validate()
    assert p.backend == "auto" and p.qos == "sensor_data" and p.thermal_range == "checkpoint"


def test_yaml_lists_every_parameter_with_the_default() -> None:
    values = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    assert set(values) == set(DEFAULTS)
    for name, default in DEFAULTS.items():
        assert values[name] == default, name
    validate(values)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("backend", "tflite", "'tflite' is not one of"),
        ("sync_slop_s", -0.01, "must be in [0.0"),
        ("sync_queue_size", 0, "must be in [1"),
        ("sync_queue_size", 2.5, "must be an integer"),
        ("precision", "int4", "'int4' is not one of"),
        ("cpu_threads", -1, "must be in [0"),
        ("device", "gpu0", "not cpu, cuda or cuda:N"),
        ("thermal_range", [100.0, 10.0], "low < high"),
        ("thermal_range", [1.0], "two numbers"),
        ("thermal_range", "hot", "not 'checkpoint', 'auto'"),
        ("thermal_auto_gain", [-5.0, 99.0], "[0, 100]"),
        ("class_table", "cityscapes", "is not one of"),
        ("qos", "best_effort", "is not one of"),
        ("overlay_alpha", 1.5, "must be in [0.0, 1.0]"),
        ("publish_overlay", "yes", "true or false"),
        ("rgb_topic", "bad topic", "not a valid ROS topic"),
        ("diagnostics_period_s", 0.0, "must be in"),
        ("no_such_param", 1, "unknown parameter"),
    ],
)
def test_bad_values_name_the_parameter(name: str, value, fragment: str) -> None:
    with pytest.raises(ParameterError) as err:
        validate({name: value})
    assert err.value.name == name
    assert str(err.value).startswith(f"parameter '{name}'")
    assert fragment in str(err.value)


def test_fixed_thermal_range_and_integers_are_accepted() -> None:
    p = validate({"thermal_range": [0, 65535], "sync_slop_s": 1, "class_table": "fmb"})
    assert p.thermal_range == (0.0, 65535.0) and p.sync_slop_s == 1.0 and p.class_table == "fmb"
