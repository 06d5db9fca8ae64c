"""thermal_homography in the running node: the thermal image is warped into the RGB frame,
/diagnostics reports the share of the frame without thermal, live changes are validated
(a bad one refused with the reason), a homography that misses these image sizes skips the
pair with a counted, logged error, and a bad value at start exits with code 2."""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_helpers import make_image, start_fusionsam_node, wait_until

from fusionsam_model.runtime.registration import params_yaml
from fusionsam_ros.node.diagnostics import diagnostics_values
from fusionsam_ros.node.node import DIAGNOSTIC_NAME, EXIT_BAD_PARAMETER, OUTPUT_TOPICS

RGB_HW = (96, 128)
THERMAL_HW = (80, 100)
SHIFT = (10.0, 6.0)  # thermal pixel (u, v) -> RGB (u + 10, v + 6): 100 x 80 RGB pixels seen
SHIFTED = [1.0, 0.0, SHIFT[0], 0.0, 1.0, SHIFT[1], 0.0, 0.0, 1.0]
UNCOVERED = 1.0 - THERMAL_HW[0] * THERMAL_HW[1] / (RGB_HW[0] * RGB_HW[1])
TIMEOUT_S = 20.0
_stamps = iter(range(1, 1_000_000))


@pytest.fixture(scope="module")
def node(ros_env, tmp_path_factory, tiny_checkpoint):
    proc = start_fusionsam_node(
        ros_env,
        tmp_path_factory.mktemp("registration"),
        checkpoint=tiny_checkpoint,
        params={"thermal_homography": SHIFTED, "diagnostics_period_s": 0.2},
    )
    assert proc.returncode is None, proc.output()
    yield proc
    if proc.returncode is None:
        assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="module")
def client(ros_client, node):
    ros_client.publisher("rgb/image")
    ros_client.publisher("thermal/image")
    ros_client.subscribe(OUTPUT_TOPICS["semantic"])
    ros_client.subscribe("/diagnostics", DiagnosticArray)
    assert ros_client.wait_for_peers(), node.output()
    return ros_client


def send(client, thermal_hw=THERMAL_HW) -> int:
    """One pair with a fresh stamp; returns the stamp (ns)."""
    stamp = time.time_ns() + next(_stamps) * 1000
    rng = np.random.default_rng(stamp % 1000)
    rgb = rng.integers(0, 256, (*RGB_HW, 3), dtype=np.uint8)
    thermal = rng.integers(20000, 40000, thermal_hw, dtype=np.uint16)
    client.publisher("rgb/image").publish(make_image(rgb, "rgb8", stamp))
    client.publisher("thermal/image").publish(make_image(thermal, "mono16", stamp))
    return stamp


def mask_for(client, stamp: int):
    return client.stamped(OUTPUT_TOPICS["semantic"], stamp)


def diagnostics_when(client, predicate) -> dict[str, str]:
    """The first /diagnostics values (from now on) that satisfy ``predicate``."""
    start = len(client.received("/diagnostics"))
    found: dict[str, str] = {}

    def match() -> bool:
        for msg in client.received("/diagnostics")[start:]:
            values = diagnostics_values(msg, DIAGNOSTIC_NAME) or {}
            if predicate(values):
                found.update(values)
                return True
        return False

    assert wait_until(match, TIMEOUT_S), client.received("/diagnostics")[-1:]
    return found


def uncovered(values: dict[str, str]) -> float:
    """thermal_uncovered_share as a number; NaN while absent or "n/a" (no frame yet)."""
    try:
        return float(values.get("thermal_uncovered_share", "nan"))
    except ValueError:
        return float("nan")


def set_homography(client, values) -> tuple[bool, str]:
    service = client.node.create_client(SetParameters, "/fusionsam_node/set_parameters")
    try:
        assert service.wait_for_service(timeout_sec=TIMEOUT_S)
        request = SetParameters.Request()
        request.parameters = [Parameter("thermal_homography", value=values).to_parameter_msg()]
        future = service.call_async(request)
        assert wait_until(future.done, TIMEOUT_S)
        result = future.result().results[0]
        return result.successful, result.reason
    finally:
        client.node.destroy_client(service)


def test_warped_pair_gives_a_mask_at_the_rgb_size_and_reports_the_unseen_share(client, node):
    stamp = send(client)
    assert wait_until(lambda: mask_for(client, stamp) is not None, TIMEOUT_S), node.output()
    mask = mask_for(client, stamp)
    assert (mask.height, mask.width) == RGB_HW
    values = diagnostics_when(client, lambda v: np.isfinite(uncovered(v)))
    assert uncovered(values) == pytest.approx(UNCOVERED, abs=1e-4)
    assert "registration=homography" in values["parameters"]
    assert "resized to the RGB frame" not in node.output()


def test_live_change_is_validated_and_applied(client, node):
    ok, reason = set_homography(client, [1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0])
    assert not ok and "thermal_homography" in reason and "singular" in reason
    ok, reason = set_homography(client, [1.0, 0.0])
    assert not ok and "needs 9 numbers" in reason
    ok, reason = set_homography(client, [0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0])
    assert ok, reason
    stamp = send(client)
    assert wait_until(lambda: mask_for(client, stamp) is not None, TIMEOUT_S), node.output()
    # a 100 x 80 image at half scale covers 50 x 40 RGB pixels
    expected = 1.0 - 50 * 40 / (RGB_HW[0] * RGB_HW[1])
    diagnostics_when(client, lambda v: abs(uncovered(v) - expected) < 1e-4)
    ok, reason = set_homography(client, SHIFTED)
    assert ok, reason


def test_homography_missing_this_frame_skips_the_pair_counted_and_logged(client, node):
    far = [1.0, 0.0, 500.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]  # fine at start, not for 128 px
    ok, reason = set_homography(client, far)
    assert ok, reason
    stamp = send(client)
    values = diagnostics_when(client, lambda v: int(v.get("errors.registration", 0)) >= 1)
    assert int(values["errors_total"]) >= 1
    assert mask_for(client, stamp) is None
    assert "skipped input [registration]" in node.output()
    assert "entirely outside the 128x96 RGB frame" in node.output()
    ok, reason = set_homography(client, SHIFTED)
    assert ok, reason
    stamp = send(client)
    assert wait_until(lambda: mask_for(client, stamp) is not None, TIMEOUT_S), node.output()
    assert node.returncode is None


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], "needs 9 numbers"),
        ([1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0], "singular"),
        ([1.0, 0.0, 100000.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "entirely outside the RGB frame"),
    ],
    ids=["eight_numbers", "singular", "outside"],
)
def test_bad_homography_at_start_exits_2_naming_the_parameter(
    ros_env, tmp_path, tiny_checkpoint, values, fragment
):
    proc = start_fusionsam_node(
        ros_env,
        tmp_path,
        checkpoint=tiny_checkpoint,
        params={"thermal_homography": values},
        ready_timeout_s=0,
    )
    assert wait_until(lambda: proc.returncode is not None, 60.0, 0.1), proc.output()
    assert proc.returncode == EXIT_BAD_PARAMETER, proc.output()
    assert "parameter 'thermal_homography'" in proc.output() and fragment in proc.output()


def test_params_file_written_by_calibrate_is_loaded(ros_env, tmp_path, tiny_checkpoint):
    """What fusionsam-calibrate writes (``params_yaml``: every value a float, tiny
    perspective terms in exponent form) is what the node reads with --params-file."""
    h = np.array([[0.98, 0.012, 14.5], [-0.01, 1.01, 7.25], [1.5e-05, -2.5e-05, 1.0]])
    path = tmp_path / "thermal_homography.yaml"
    path.write_text(params_yaml(h, comment="written as fusionsam-calibrate writes it"))
    proc = start_fusionsam_node(ros_env, tmp_path, checkpoint=tiny_checkpoint, params_files=[path])
    try:
        assert proc.returncode is None, proc.output()
        assert "registration=homography" in proc.output()
    finally:
        if proc.returncode is None:
            assert proc.stop() == 0, proc.output()


def test_mixed_integer_float_list_on_the_command_line_exits_2(ros_env) -> None:
    """rcl itself refuses ``-p thermal_homography:=[1.0, 0, ...]`` (a list mixing integers
    and floats) before the node exists: exit 2 with the reason, not a traceback."""
    import subprocess
    import sys

    rule = "thermal_homography:=[1.0, 0, 5.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]"
    done = subprocess.run(
        [sys.executable, "-m", "fusionsam_ros.node.node", "--ros-args", "-p", rule],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_BAD_PARAMETER, output
    assert "thermal_homography" in output and "1.0, not 1" in output
    assert "Traceback" not in output
