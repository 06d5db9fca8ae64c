"""Thermal-to-RGB registration (issue 24): the thermal_homography parameter's checks, the
warp and its coverage, the Segmenter path, and fusionsam-calibrate (recovery on real pairs
when ../shared/data has them, a synthetic heated checkerboard, refusals)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fusionsam_model.calibration import checkerboard, targetless
from fusionsam_model.calibration.pairs import folder_names, read_pair
from fusionsam_model.calibration.result import Pair
from fusionsam_model.runtime.registration import (
    HomographyError,
    Registration,
    RegistrationError,
    load_homography,
    params_yaml,
    parse_homography,
)
from fusionsam_ros.node.params import ParameterError, validate
from fusionsam_ros.tools import calibrate as cli

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROADSCENE = DATA / "roadscene"
SHIFT = [1.0, 0.0, 10.0, 0.0, 1.0, 6.0, 0.0, 0.0, 1.0]


# --- the parameter -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([1.0] * 8, "needs 9 numbers"),
        ([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, float("nan")], "9 finite numbers"),
        ([1.0, 0.0, float("inf"), 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "9 finite numbers"),
        ([1.0, 0.0, 0.0, "a", 1.0, 0.0, 0.0, 0.0, 1.0], "needs 9 numbers, got 'a'"),
        ("1 0 0 0 1 0 0 0 1", "must be a list of 9 numbers"),
        ([0.0] * 9, "singular"),
        ([1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0], "singular"),  # rank 2
        ([1e-9, 0.0, 0.0, 0.0, 1e-9, 0.0, 0.0, 0.0, 1.0], "singular"),
        ([0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0], "h33 is 0"),
        ([1.0, 0.0, 1e5, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "entirely outside the RGB frame"),
        ([-1.0, 0.0, -10.0, 0.0, -1.0, -10.0, 0.0, 0.0, 1.0], "entirely outside the RGB frame"),
    ],
    ids=[
        "eight",
        "nan",
        "inf",
        "string_element",
        "string",
        "zeros",
        "rank2",
        "collapsed",
        "h33_zero",
        "far_right",
        "mirrored_negative",
    ],
)
def test_bad_homography_is_refused_naming_the_parameter(value, fragment) -> None:
    with pytest.raises(ParameterError) as err:
        validate({"thermal_homography": value})
    assert err.value.name == "thermal_homography"
    assert str(err.value).startswith("parameter 'thermal_homography'")
    assert fragment in str(err.value)


def test_good_homographies_are_accepted_and_normalised() -> None:
    assert validate().thermal_homography == ()  # default: already registered
    assert validate({"thermal_homography": []}).thermal_homography == ()
    ints = validate({"thermal_homography": [2, 0, 20, 0, 2, 12, 0, 0, 2]})
    assert ints.thermal_homography == tuple(SHIFT)  # scaled to h33 = 1
    assert parse_homography(np.eye(3)).tolist() == np.eye(3).tolist()
    assert parse_homography(None) is None


def test_params_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    h = np.array([[1.02, 0.01, 12.5], [-0.01, 0.99, -8.0], [1e-5, -2e-5, 1.0]])
    path.write_text(params_yaml(h))
    assert np.allclose(load_homography(str(path)), h)
    assert np.allclose(load_homography("1,0,10, 0 1 6, 0 0 1"), np.reshape(SHIFT, (3, 3)))
    with pytest.raises(HomographyError, match="neither 9 numbers nor a params file"):
        load_homography("one two")
    (tmp_path / "other.yaml").write_text("fusionsam_node:\n  ros__parameters:\n    qos: reliable\n")
    with pytest.raises(HomographyError, match="has no thermal_homography"):
        load_homography(str(tmp_path / "other.yaml"))


# --- the warp ----------------------------------------------------------------------------


def test_warp_by_a_known_shift_and_the_unseen_pixels() -> None:
    rng = np.random.default_rng(0)
    thermal = rng.integers(1000, 60000, (80, 100), dtype=np.uint16)
    reg = Registration(np.reshape(SHIFT, (3, 3)))
    out = reg.warp(thermal, (96, 128))
    assert out.dtype == np.uint16 and out.shape == (96, 128)
    # thermal (u, v) lands on RGB (u + 10, v + 6): exact for an integer shift
    np.testing.assert_array_equal(out[6:86, 10:110], thermal)
    seen = np.zeros((96, 128), bool)
    seen[6:86, 10:110] = True
    assert reg.uncovered_share == pytest.approx(1 - seen.mean())
    assert reg.coverage((80, 100), (96, 128)) == pytest.approx(seen.mean())
    # unseen pixels continue the nearest edge pixel of the thermal image
    np.testing.assert_array_equal(out[:6, 10:110], np.repeat(thermal[:1], 6, axis=0))
    np.testing.assert_array_equal(out[90, 10:110], thermal[-1])
    np.testing.assert_array_equal(out[6:86, :10], np.repeat(thermal[:, :1], 10, axis=1))
    np.testing.assert_array_equal(out[6:86, 127], thermal[:, -1])
    assert out[0, 0] == thermal[0, 0] and out[95, 127] == thermal[-1, -1]


def test_warp_by_a_known_homography_matches_the_mapping_and_keeps_precision() -> None:
    rng = np.random.default_rng(1)
    h = np.array([[1.05, 0.03, 4.0], [-0.02, 0.97, 7.0], [2e-4, -1e-4, 1.0]])
    yy, xx = np.mgrid[0:120, 0:160]
    thermal = (1000.0 + 3.0 * xx + 5.0 * yy).astype(np.float32)  # linear: bilinear is exact
    out = Registration(h).warp(thermal, (130, 170))
    assert out.dtype == np.float32
    inv = np.linalg.inv(h)
    for _ in range(200):
        x, y = rng.uniform(0, 169), rng.uniform(0, 129)
        q = inv @ [x, y, 1.0]
        u, v = q[0] / q[2], q[1] / q[2]
        if 1 <= u <= 158 and 1 <= v <= 118:
            xi, yi = round(x), round(y)
            q = inv @ [xi, yi, 1.0]
            u, v = q[0] / q[2], q[1] / q[2]
            # OpenCV interpolates on a 1/32 px grid: up to 1/64 px per axis x slopes 3 and 5
            assert out[yi, xi] == pytest.approx(1000.0 + 3.0 * u + 5.0 * v, abs=8 / 64 + 1e-3)
    # coverage agrees with the area of the warped frame (pixel-counting error at the border)
    corners = np.array([[-0.5, -0.5], [159.5, -0.5], [159.5, 119.5], [-0.5, 119.5]], np.float32)
    quad = cv2.perspectiveTransform(corners[None], h)[0]
    frame = np.array([[-0.5, -0.5], [169.5, -0.5], [169.5, 129.5], [-0.5, 129.5]], np.float32)
    area, _ = cv2.intersectConvexConvex(quad, frame)
    assert Registration(h).coverage((120, 160), (130, 170)) == pytest.approx(
        area / (130 * 170), abs=0.01
    )


def test_identity_on_equal_sizes_returns_the_frame_itself() -> None:
    thermal = np.zeros((40, 50), np.uint8)
    reg = Registration(np.eye(3))
    assert reg.warp(thermal, (40, 50)) is thermal and reg.uncovered_share == 0.0


def test_homography_that_misses_these_sizes_raises_per_frame() -> None:
    far = Registration(np.array([[1.0, 0, 500.0], [0, 1.0, 0], [0, 0, 1]]))
    with pytest.raises(RegistrationError, match="entirely outside the 128x96 RGB frame"):
        far.warp(np.zeros((80, 100), np.uint8), (96, 128))
    horizon = Registration(np.array([[1.0, 0, 0], [0, 1.0, 0], [-0.02, 0, 1]]))  # w=0 at u=50
    with pytest.raises(RegistrationError, match="through infinity"):
        horizon.warp(np.zeros((80, 100), np.uint8), (96, 128))


def test_segmenter_with_a_homography_predicts_on_the_warped_thermal() -> None:
    """The node and the offline tools call the same Segmenter: with ``thermal_homography``
    it gives what it gives on the thermal image warped by ``Registration``."""
    from fusionsam_model.runtime.segmenter import Segmenter

    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    thermal = rng.integers(0, 256, (50, 70), dtype=np.uint8)
    segmenter = Segmenter.from_preset("tiny", input_size=64)
    expected = segmenter.predict(
        rgb, Registration(np.reshape(SHIFT, (3, 3))).warp(thermal, (60, 80))
    )
    segmenter.thermal_homography = SHIFT
    got = segmenter.predict(rgb, thermal)
    np.testing.assert_array_equal(got.labels, expected.labels)
    assert segmenter.thermal_homography == SHIFT
    # the fused image shows the visible camera alone where the thermal camera sees nothing
    seen = np.zeros((60, 80), bool)
    seen[6:56, 10:80] = True
    np.testing.assert_array_equal(got.fused[~seen], rgb[~seen])
    np.testing.assert_array_equal(got.fused[seen], expected.fused[seen])
    assert not np.array_equal(expected.fused[~seen], rgb[~seen])  # composed without it


# --- fusionsam-calibrate -----------------------------------------------------------------


def random_homography(rng, thermal_hw, rgb_hw) -> np.ndarray:
    """Shift up to 25 px, scale 0.9-1.1, rotation 3 deg, mild perspective, about the centres."""
    (th, tw), (rh, rw) = thermal_hw, rgb_hw
    s, a = rng.uniform(0.9, 1.1), np.deg2rad(rng.uniform(-3, 3))
    dx, dy = rng.uniform(-25, 25, 2)
    px, py = rng.uniform(-3e-5, 3e-5, 2)
    c = np.array([[1, 0, -(tw - 1) / 2], [0, 1, -(th - 1) / 2], [0, 0, 1]])
    m = np.array(
        [[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [px, py, 1]]
    )
    b = np.array([[1, 0, (rw - 1) / 2 + dx], [0, 1, (rh - 1) / 2 + dy], [0, 0, 1]])
    h = b @ m @ c
    return h / h[2, 2]


def thermal_camera(infrared: np.ndarray, g: np.ndarray, thermal_hw) -> np.ndarray:
    """The image a thermal camera with homography ``g`` to the registered frame records."""
    return cv2.warpPerspective(
        infrared,
        g,
        (thermal_hw[1], thermal_hw[0]),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def roadscene_frames(count: int, hw=(240, 360)) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``count`` registered RoadScene pairs spread over the set, centre-cropped to ``hw``."""
    if not (ROADSCENE / "visible").is_dir():
        pytest.skip(f"{ROADSCENE} is absent (real registered pairs needed)")
    out = []
    names = folder_names(ROADSCENE / "visible", ROADSCENE / "infrared")
    for name, vis, ir in names[:: max(1, len(names) // (3 * count))]:
        pair = read_pair(name, vis, ir)
        h, w = pair.thermal.shape
        if h >= hw[0] and w >= hw[1]:
            y, x = (h - hw[0]) // 2, (w - hw[1]) // 2
            crop = (slice(y, y + hw[0]), slice(x, x + hw[1]))
            out.append((name, pair.rgb[crop], pair.thermal[crop]))
        if len(out) == count:
            return out
    return out


def write_folders(root: Path, frames, g, thermal_hw) -> tuple[Path, Path]:
    vis, ir = root / "visible", root / "infrared"
    vis.mkdir(parents=True)
    ir.mkdir(parents=True)
    for name, rgb, infrared in frames:
        cv2.imwrite(str(vis / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(ir / f"{name}.png"), thermal_camera(infrared, g, thermal_hw))
    return vis, ir


def test_calibrate_recovers_a_known_homography_on_real_pairs(tmp_path: Path, capsys) -> None:
    frames = roadscene_frames(8)
    rgb_hw = frames[0][1].shape[:2]
    thermal_hw = (180, 270)  # a narrower thermal field of view, 0.75 of the RGB frame
    g = random_homography(np.random.default_rng(24), thermal_hw, rgb_hw)
    vis, ir = write_folders(tmp_path, frames, g, thermal_hw)
    out = tmp_path / "out"
    code = cli.main(
        ["--visible", str(vis), "--infrared", str(ir), "--out", str(out), "--no-progress"]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    h = load_homography(str(out / "thermal_homography.yaml"))
    error = targetless.corner_error(h, g, thermal_hw)
    print(f"mean corner error {error:.2f} px")
    assert error <= 2.0, printed
    assert "residual:" in printed and "coverage:" in printed and "ECC correlation" in printed
    assert "only 8 frame(s) aligned" in printed  # fewer than targetless.ENOUGH_FRAMES
    assert (out / "overlay.png").is_file() and (out / "calibration.json").is_file()
    params = validate({"thermal_homography": list(h.reshape(-1))})  # the node accepts it
    assert len(params.thermal_homography) == 9


def checkerboard_image(size=(9, 6), square=24, hw=(300, 400), invert=False) -> np.ndarray:
    board = np.full(((size[1] + 3) * square, (size[0] + 3) * square), 255, np.uint8)
    for r in range(size[1] + 1):
        for c in range(size[0] + 1):
            if (r + c) % 2 == 0:
                y, x = (r + 1) * square, (c + 1) * square
                board[y : y + square, x : x + square] = 0
    canvas = np.full(hw, 255, np.uint8)
    y, x = (hw[0] - board.shape[0]) // 2, (hw[1] - board.shape[1]) // 2
    canvas[y : y + board.shape[0], x : x + board.shape[1]] = board
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.8)
    return 255 - canvas if invert else canvas


def test_checkerboard_recovers_the_homography_with_inverted_thermal_polarity() -> None:
    g = np.array([[1.08, 0.04, 30.0], [-0.03, 1.05, 22.0], [5e-5, 3e-5, 1.0]])
    rgb_hw, thermal_hw = (360, 480), (300, 400)
    pairs = []
    for k, shift in enumerate((0, 25, -20)):
        board = np.roll(checkerboard_image(), shift, axis=1)
        scene = cv2.warpPerspective(board, g, (rgb_hw[1], rgb_hw[0]), borderValue=255)
        thermal = 255 - board  # heated squares: the inverse polarity
        pairs.append(Pair(f"b{k}", cv2.cvtColor(scene, cv2.COLOR_GRAY2RGB), thermal))
    cal = checkerboard.calibrate(pairs, (9, 6))
    assert targetless.corner_error(cal.homography, g, thermal_hw) < 0.5
    assert cal.residual_px < 0.5 and len(cal.frames_used) == 3


def test_calibrate_refuses_flat_and_unreadable_pairs_and_writes_nothing(tmp_path: Path, capsys):
    flat = tmp_path / "flat"
    (flat / "vis").mkdir(parents=True)
    (flat / "ir").mkdir()
    cv2.imwrite(str(flat / "vis" / "a.png"), np.full((120, 160, 3), 128, np.uint8))
    cv2.imwrite(str(flat / "ir" / "a.png"), np.full((90, 120), 77, np.uint8))
    bad = tmp_path / "bad"
    (bad / "vis").mkdir(parents=True)
    (bad / "ir").mkdir()
    (bad / "vis" / "a.png").write_bytes(b"\x89PNG but not really")
    cv2.imwrite(str(bad / "ir" / "a.png"), np.full((90, 120), 77, np.uint8))
    for root, reason in ((flat, "has no edges"), (bad, "cannot read visible image")):
        out = root / "out"
        code = cli.main(["--visible", str(root / "vis"), "--infrared", str(root / "ir"),
                         "--out", str(out), "--no-progress"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == cli.EXIT_CANNOT_ALIGN and reason in err and "nothing written" in err
        assert not out.exists()
    code = cli.main(["--visible", str(tmp_path / "none"), "--infrared", str(flat / "ir")])
    assert code == cli.EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_calibrate_refuses_pairs_of_different_scenes(tmp_path: Path, capsys) -> None:
    frames = roadscene_frames(4)
    shuffled = [(n, rgb, frames[(k + 2) % 4][2]) for k, (n, rgb, _) in enumerate(frames)]
    vis, ir = write_folders(tmp_path, shuffled, np.eye(3), frames[0][1].shape[:2])
    out = tmp_path / "out"
    code = cli.main(
        ["--visible", str(vis), "--infrared", str(ir), "--out", str(out), "--no-progress"]
    )
    assert code == cli.EXIT_CANNOT_ALIGN, capsys.readouterr()
    assert not out.exists()


# --- the offline tools take the same homography ------------------------------------------


def test_evaluate_and_fusion_eval_parse_the_homography_option(tmp_path: Path, capsys) -> None:
    from fusionsam_model.evaluation import fusion_benchmark
    from training import evaluate

    for parser in (evaluate.build_parser(), fusion_benchmark.build_parser()):
        args = parser.parse_args(["--data", "x", "--thermal-homography=1,0,10,0,1,6,0,0,1"])
        assert np.allclose(args.thermal_homography, np.reshape(SHIFT, (3, 3)))
        path = tmp_path / "h.yaml"
        path.write_text(params_yaml(np.reshape(SHIFT, (3, 3))))
        args = parser.parse_args(["--data", "x", "--thermal-homography", str(path)])
        assert np.allclose(args.thermal_homography, np.reshape(SHIFT, (3, 3)))
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(["--data", "x", "--thermal-homography=1,0,0,0,1,0,0,0"])
        assert stop.value.code == 2
        assert "needs 9 numbers" in capsys.readouterr().err


def test_fusion_eval_warps_unregistered_pairs_into_the_rgb_frame(
    tmp_path: Path, tiny_checkpoint
) -> None:
    from fusionsam_model.evaluation import fusion_benchmark

    rng = np.random.default_rng(3)
    vis, ir = tmp_path / "vis", tmp_path / "ir"
    vis.mkdir()
    ir.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(vis / f"{name}.png"), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
        cv2.imwrite(str(ir / f"{name}.png"), rng.integers(0, 256, (80, 100), dtype=np.uint8))
    out = tmp_path / "out"
    code = fusion_benchmark.main(
        ["--visible", str(vis), "--infrared", str(ir), "--out", str(out), "--strip-rows", "1",
         "--checkpoint", str(tiny_checkpoint), "--thermal-homography=1,0,10,0,1,6,0,0,1"]
    )  # fmt: skip
    assert code == 0
    assert cv2.imread(str(out / "fused" / "a.png")).shape == (96, 128, 3)
