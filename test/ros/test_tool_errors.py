"""Bad input to the command-line tools is a one-line error and a non-zero exit code, never
a traceback (each tool in its own process, as a user runs it)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT


def run(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_clean_error(done: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output, output
    for phrase in phrases:
        assert phrase in output, output


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from fusionsam_model.data.synth import generate

    root = tmp_path_factory.mktemp("tools") / "data"
    generate(root, num=8, seed=3, progress=False)  # 2 test pairs
    return root


def test_evaluate_missing_data_corrupt_and_directory_checkpoint(dataset, tmp_path):
    done = run("training.evaluate", "--data", str(tmp_path / "nowhere"))
    assert_clean_error(done, 2, "evaluate: error:", "nowhere", "does not exist")
    damaged = tmp_path / "damaged.pt"
    data = bytearray(Path(BUNDLED_CHECKPOINT).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = np.random.default_rng(3).integers(0, 256, 64, np.uint8).tobytes()
    damaged.write_bytes(bytes(data))
    done = run("training.evaluate", "--data", str(dataset), "--checkpoint", str(damaged))
    assert_clean_error(done, 2, "damaged.pt", "corrupt")
    done = run("training.evaluate", "--data", str(dataset), "--checkpoint", str(tmp_path))
    assert_clean_error(done, 2, "is a directory")


@pytest.mark.parametrize("rate", ["nan", "inf", "-1"])
def test_rate_must_be_a_finite_positive_number(dataset, tmp_path, rate):
    done = run(
        "fusionsam_ros.bags.writer",
        "--data",
        str(dataset),
        "--out",
        str(tmp_path / "b"),
        "--rate",
        rate,
    )
    assert_clean_error(done, 2, "argument --rate: must be a finite number > 0")
    assert not (tmp_path / "b").exists()
    done = run("fusionsam_ros.bags.player", str(tmp_path / "b"), "--rate", rate)
    assert_clean_error(done, 2, "argument --rate: must be a finite number > 0")


def test_make_bag_leaves_no_partial_bag_after_a_decode_error(dataset, tmp_path):
    import shutil

    bad = tmp_path / "bad_data"
    shutil.copytree(dataset, bad)
    last = (bad / "test.txt").read_text().split()[-1]
    image = bad / "images" / f"{last}.png"
    image.write_bytes(image.read_bytes()[:200])  # truncated PNG: the last sample fails
    out = tmp_path / "bag"
    done = run("fusionsam_ros.bags.writer", "--data", str(bad), "--out", str(out))
    assert_clean_error(done, 2, "cannot decode image", last)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_data"]  # nothing half-written
    done = run("fusionsam_ros.bags.writer", "--data", str(dataset), "--out", str(out))
    assert done.returncode == 0, done.stderr  # the same --out works at once
    assert (out / "metadata.yaml").is_file()


def test_stream_evaluate_refuses_an_unwritable_out_at_start(tmp_path, ros_env):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    t0 = time.monotonic()
    done = run(
        "fusionsam_ros.evaluation.stream_evaluator",
        "--out",
        str(blocker / "report"),
        "--startup-timeout",
        "120",
        env=ros_env,
    )
    assert_clean_error(done, 2, "--out", "cannot write there")
    assert time.monotonic() - t0 < 60  # before waiting for frames, not after the run
