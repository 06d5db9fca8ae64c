"""pytest fixtures; the helpers the tests import live in ros_helpers.py.

The tests that run ROS 2 are in ros/. Their fixtures stay here, one level up, because
test_export.py's node test shares its module's ONNX export with them.

ROS isolation (rules from DESIGN.md section 6), applied only to tests that ask for a
ROS fixture:
- every test *module* that asks for ``ros_domain_id`` gets a ROS_DOMAIN_ID that no other
  test process on this machine holds and no earlier module of this run used, so modules
  and parallel pytest runs never see each other's topics (nor a killed process's
  shared-memory ports);
- discovery stays on this host (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``; Kilted
  ignores ROS_LOCALHOST_ONLY);
- Fast DDS uses ``config/fastdds_camera_profile.xml`` (64 MB SHM segment): the default
  512 KB segment drops most 640x480 images between processes.

Fixtures
- ``private_export_cache`` (session, automatic): FUSIONSAM_CACHE_DIR is an empty folder
  of the session, so ``backend="auto"`` never finds an export made outside the tests.
- ``ros_isolation`` (session): sets the two variables above in this process (before its
  first rclpy participant); restored at the end of the session.
- ``ros_domain_id`` (module): the reserved id.
- ``ros_env`` (module): environment dict for subprocesses (domain id, discovery range,
  Fast DDS profile, unbuffered output).
- ``ros_context`` (module): an rclpy Context on that domain; shut down after the module.
- ``ros_client`` (module): a ``RosClient`` on that context.
- ``tiny_checkpoint`` (session): a small untrained checkpoint (tiny preset, S=64) so
  the node runs at test speed; tests check plumbing, not accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ros_helpers import ROS_ISOLATION_ENV, RosClient, reserve_domain_id

from fusionsam_ros.processes import ros_environment


@pytest.fixture(scope="session", autouse=True)
def private_export_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty export cache for the session: ``backend="auto"`` (the node's default) must
    not pick up exports a user or an earlier run left in ~/.cache/fusionsam."""
    path = tmp_path_factory.mktemp("fusionsam_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUSIONSAM_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def ros_isolation() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ROS_ISOLATION_ENV.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def ros_domain_id(ros_isolation: None) -> Iterator[int]:
    domain, handle = reserve_domain_id()
    yield domain
    handle.close()


@pytest.fixture(scope="module")
def ros_env(ros_domain_id: int) -> dict[str, str]:
    return ros_environment(ros_domain_id, os.environ.get("OMP_NUM_THREADS", "1"))


@pytest.fixture(scope="module")
def ros_context(ros_domain_id: int) -> Iterator[Any]:
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    context.try_shutdown()


@pytest.fixture(scope="module")
def ros_client(ros_context: Any) -> Iterator[RosClient]:
    client = RosClient(ros_context)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from fusionsam_model.data.classes import MFNET
    from fusionsam_model.modeling.config import build_config
    from fusionsam_model.modeling.model import FusionSAM
    from fusionsam_model.runtime.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = FusionSAM(build_config("tiny", input_size=64, num_classes=MFNET.num_classes))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_s64.pt", model, MFNET)
