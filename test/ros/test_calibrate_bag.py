"""fusionsam-calibrate --bag: pairs read from a rosbag2 (raw or image_transport compressed
topics, decoded as the node decodes them) give the homography a warped real drive was made
with; a bag without the camera topics is refused naming them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_registration import random_homography, roadscene_frames, thermal_camera

from fusionsam_model.calibration import targetless
from fusionsam_model.data.datasets import Sample
from fusionsam_model.runtime.registration import load_homography
from fusionsam_ros.bags.writer import Compression, write_bag
from fusionsam_ros.tools import calibrate as cli

THERMAL_HW = (180, 270)


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_bag_calibration_recovers_the_homography(tmp_path: Path, capsys, transport) -> None:
    frames = roadscene_frames(6)
    g = random_homography(np.random.default_rng(7), THERMAL_HW, frames[0][1].shape[:2])
    samples = [Sample(n, rgb, thermal_camera(ir, g, THERMAL_HW), None) for n, rgb, ir in frames]
    bag = tmp_path / "drive"
    compression = Compression() if transport == "compressed" else None
    write_bag(samples, bag, thermal_encoding="mono16", compression=compression)
    out = tmp_path / "out"
    code = cli.main(["--bag", str(bag), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed
    error = targetless.corner_error(
        load_homography(str(out / "thermal_homography.yaml")), g, THERMAL_HW
    )
    print(f"{transport}: mean corner error {error:.2f} px")
    assert error <= 2.0, printed.out
    assert "of 6 (thermal 270x180, RGB 360x240)" in printed.out


def test_bag_without_camera_topics_is_refused(tmp_path: Path, capsys) -> None:
    frames = roadscene_frames(1)
    samples = [Sample(n, rgb, ir, None) for n, rgb, ir in frames]
    bag = tmp_path / "drive"
    write_bag(samples, bag)
    code = cli.main(
        ["--bag", str(bag), "--thermal-topic", "flir/image", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT and "flir/image" in err and "thermal/image" in err
    assert not (tmp_path / "o").exists()
    code = cli.main(["--bag", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_BAD_INPUT and "not found" in capsys.readouterr().err
