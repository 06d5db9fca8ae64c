"""Start-up failures stop fusionsam_node with a message naming the cause and a non-zero
exit code (so a launch respawn policy can act). The node processes run in parallel; the
model-configuration checks call the node's own ``load_segmenter`` in-process (cheaper
than another torch-importing process per case; ``main`` turns its error into exit 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ros_helpers import start_fusionsam_node, wait_until

from fusionsam_model.runtime.segmenter import BUNDLED_CHECKPOINT
from fusionsam_ros.node.node import (
    EXIT_BAD_PARAMETER,
    EXIT_MODEL_LOAD_FAILED,
    ModelLoadError,
    load_segmenter,
)
from fusionsam_ros.node.params import validate


@pytest.fixture(scope="module")
def failed_starts(ros_env, tmp_path_factory, tiny_checkpoint):
    """name -> (exit code, log) for each broken configuration, started side by side."""
    d = tmp_path_factory.mktemp("startup")
    broken = d / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    damaged = d / "damaged.pt"  # the bundled model, 64 random bytes written mid-file
    data = bytearray(Path(BUNDLED_CHECKPOINT).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = np.random.default_rng(64).integers(0, 256, 64, np.uint8).tobytes()
    damaged.write_bytes(bytes(data))
    cases = {
        "broken": dict(checkpoint=broken),
        "damaged": dict(checkpoint=damaged),
        "directory": dict(checkpoint=d),
        "missing": dict(checkpoint=d / "nowhere" / "model.pt"),
        "bad_param": dict(checkpoint=tiny_checkpoint, params={"sync_slop_s": -1.0}),
    }
    procs = {
        name: start_fusionsam_node(ros_env, d, name=name, ready_timeout_s=0, **kw)
        for name, kw in cases.items()
    }
    done = wait_until(lambda: all(p.returncode is not None for p in procs.values()), 120.0, 0.2)
    results = {name: (p.returncode, p.output()) for name, p in procs.items()}
    for p in procs.values():
        if p.returncode is None:
            p.stop()
    assert done, results
    return results


def test_broken_checkpoint_names_file_and_reason(failed_starts):
    code, log = failed_starts["broken"]
    assert code == EXIT_MODEL_LOAD_FAILED, log
    assert "broken.pt" in log and "truncated or corrupt" in log and "ready:" not in log


def test_checkpoint_with_damaged_weights_is_refused(failed_starts):
    code, log = failed_starts["damaged"]
    assert code == EXIT_MODEL_LOAD_FAILED, log
    assert "damaged.pt is corrupt: the SHA-256 of its weights" in log and "ready:" not in log
    assert "Traceback" not in log


def test_directory_as_checkpoint_is_named_a_directory(failed_starts):
    code, log = failed_starts["directory"]
    assert code == EXIT_MODEL_LOAD_FAILED, log
    assert "is a directory, expected a .pt file" in log and "not found" not in log


def test_non_finite_test_inference_is_refused(tiny_checkpoint, tmp_path):
    import torch

    from fusionsam_model.runtime.checkpoint import load_checkpoint, save_checkpoint

    model, table, _ = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():  # finite weights whose activations overflow float32
        for param in model.parameters():
            param.mul_(1e30)
    path = save_checkpoint(tmp_path / "overflow.pt", model, table)
    with pytest.raises(ModelLoadError, match="non-finite .*probabilities"):
        load_segmenter(validate({"checkpoint": str(path)}))


def test_missing_checkpoint(failed_starts):
    code, log = failed_starts["missing"]
    assert code == EXIT_MODEL_LOAD_FAILED, log
    assert "nowhere/model.pt: file not found" in log


def test_unavailable_backend_fails_at_start(tiny_checkpoint):
    with pytest.raises(ModelLoadError) as err:
        load_segmenter(validate({"checkpoint": str(tiny_checkpoint), "backend": "tensorrt"}))
    assert str(tiny_checkpoint) in str(err.value) and "backend=tensorrt" in str(err.value)


def test_class_table_must_agree_with_checkpoint(tiny_checkpoint):
    with pytest.raises(ModelLoadError, match="class_table='fmb' disagrees .* 'mfnet'"):
        load_segmenter(validate({"checkpoint": str(tiny_checkpoint), "class_table": "fmb"}))


def test_fixed_thermal_range_reaches_the_segmenter(tiny_checkpoint):
    params = validate({"checkpoint": str(tiny_checkpoint), "thermal_range": [1000.0, 5000.0]})
    segmenter, path = load_segmenter(params)
    assert path == tiny_checkpoint and segmenter.thermal_range == (1000.0, 5000.0)
    auto = validate(
        {
            "checkpoint": str(tiny_checkpoint),
            "thermal_range": "auto",
            "thermal_auto_gain": [5.0, 95.0],
        }
    )
    segmenter, _ = load_segmenter(auto)
    assert segmenter.thermal_range is None and segmenter.thermal_percentiles == (5.0, 95.0)


def test_invalid_parameter_is_named(failed_starts):
    code, log = failed_starts["bad_param"]
    assert code == EXIT_BAD_PARAMETER, log
    assert "parameter 'sync_slop_s'" in log
