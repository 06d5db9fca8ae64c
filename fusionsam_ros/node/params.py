"""The node's parameters: names, defaults, descriptions and start-up validation.

``PARAMETERS`` is the single list the node declares, ``config/fusionsam.yaml`` mirrors
and docs/node.md documents. ``validate`` is plain Python (no rclpy) so it is unit-tested
directly; it raises ``ParameterError`` naming the bad parameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from fusionsam_model.runtime.registration import HomographyError, parse_homography

from ..qos import RELIABLE, SENSOR_DATA
from ..topics import RGB_TOPIC, THERMAL_TOPIC

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
QOS_CHOICES = (SENSOR_DATA, RELIABLE)  # a camera input: best effort or reliable
TRANSPORT_CHOICES = ("raw", "compressed")
CLASS_TABLE_CHOICES = ("", "mfnet", "fmb")
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    dynamic_typing: bool = False  # thermal_range takes a string or a number list


PARAMETERS: tuple[Param, ...] = (
    Param(
        "rgb_topic",
        RGB_TOPIC,
        "RGB camera topic (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8)",
    ),
    Param("thermal_topic", THERMAL_TOPIC, "thermal camera topic (mono8, mono16, 16UC1, 32FC1)"),
    Param(
        "rgb_transport",
        "raw",
        "raw: sensor_msgs/Image on rgb_topic | compressed: sensor_msgs/CompressedImage "
        "(JPEG or PNG) on <rgb_topic>/compressed, as image_transport publishes it",
    ),
    Param(
        "thermal_transport",
        "raw",
        "raw | compressed: 8- or 16-bit PNG (or 8-bit JPEG) on <thermal_topic>/compressed",
    ),
    Param("checkpoint", "", "project checkpoint (.pt); empty = the bundled tiny model"),
    Param(
        "backend",
        "auto",
        "inference runtime: auto (onnxruntime on a CPU when the checkpoint is already exported "
        "- an export cached by fusionsam-export - else torch) | torch | onnxruntime | tensorrt",
    ),
    Param("device", "cpu", "cpu | cuda | cuda:N"),
    Param("precision", "fp32", "fp32 | fp16 | bf16"),
    Param(
        "cpu_threads",
        0,
        "intra-op threads of the CPU model; 0 = chosen by measurement while running (torch: "
        "the count among 1, 2, 4 .. cores with the lowest recent median call time, re-measured "
        "every 40 pairs, so it follows the load of other processes; onnxruntime: one per core)",
    ),
    Param(
        "thermal_range",
        "checkpoint",
        "thermal normalisation: 'checkpoint' (as trained), 'auto' (per-frame percentile gain) "
        "or [lo, hi] in sensor units",
        dynamic_typing=True,
    ),
    Param("thermal_auto_gain", [1.0, 99.0], "percentiles [low, high] of the auto gain"),
    Param("class_table", "", "'' = the checkpoint's; mfnet | fmb (must agree with the checkpoint)"),
    Param(
        "thermal_homography",
        [],
        "9 floats, row-major 3x3 homography mapping a thermal pixel (u, v, 1) to RGB pixel "
        "coordinates: the thermal image is warped into the RGB frame (fusionsam-calibrate "
        "estimates it); [] = already registered (another size is resized)",
        dynamic_typing=True,  # [] has no element type; integer lists are accepted too
    ),
    Param("sync_slop_s", 0.05, "largest RGB/thermal stamp difference paired, seconds"),
    Param("sync_queue_size", 10, "messages per stream the synchroniser keeps waiting"),
    Param("qos", "sensor_data", "input subscription QoS: sensor_data (best effort) | reliable"),
    Param("qos_depth", 5, "history depth of subscriptions and publishers"),
    Param("publish_semantic", True, "publish fusionsam/semantic (mono8 class ids)"),
    Param("publish_color", True, "publish fusionsam/semantic_color (rgb8 palette)"),
    Param("publish_overlay", True, "publish fusionsam/overlay (rgb8 palette over the RGB image)"),
    Param("publish_fused", True, "publish fusionsam/fused_image (rgb8 fused RGB-thermal image)"),
    Param("overlay_alpha", 0.5, "palette weight in the overlay, 0..1"),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics messages, seconds"),
)
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMETERS}
# changeable at run time (`ros2 param set`), effective from the next pair; all others are
# declared read-only (the model, its runtime, topics and QoS are fixed when the node starts)
LIVE_PARAMETERS = frozenset(
    {
        "overlay_alpha",
        "publish_semantic",
        "publish_color",
        "publish_overlay",
        "publish_fused",
        "thermal_range",
        "thermal_auto_gain",
        "sync_slop_s",
        "thermal_homography",
    }
)


class ParameterError(ValueError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter '{name}': {problem}")
        self.name = name


@dataclass(frozen=True)
class NodeParams:
    rgb_topic: str
    thermal_topic: str
    rgb_transport: str
    thermal_transport: str
    checkpoint: str
    backend: str
    device: str
    precision: str
    cpu_threads: int
    thermal_range: str | tuple[float, float]  # "checkpoint", "auto" or (lo, hi)
    thermal_auto_gain: tuple[float, float]
    class_table: str
    thermal_homography: tuple[float, ...]  # 9 values (h33 = 1) or () = already registered
    sync_slop_s: float
    sync_queue_size: int
    qos: str
    qos_depth: int
    publish_semantic: bool
    publish_color: bool
    publish_overlay: bool
    publish_fused: bool
    overlay_alpha: float
    diagnostics_period_s: float


def _choice(values: dict, name: str, choices: tuple[str, ...]) -> str:
    value = values[name]
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ParameterError(name, f"{value!r} is not one of {shown}")
    return value


def _number(values: dict, name: str, lo: float, hi: float = math.inf, integer: bool = False) -> Any:
    value = values[name]
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ParameterError(
            name, f"must be {'an integer' if integer else 'a number'}, got {value!r}"
        )
    if not (lo <= value <= hi) or (not integer and not math.isfinite(value)):
        raise ParameterError(name, f"must be in [{lo}, {hi}], got {value!r}")
    return value


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(
            name, f"must be a list [low, high] of two numbers, got {value!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ParameterError(name, f"needs finite low < high, got [{lo}, {hi}]")
    return lo, hi


def _homography(values: dict, name: str) -> tuple[float, ...]:
    """9 finite numbers, invertible, able to overlap the RGB frame; () when empty. The
    exact frame test needs the image sizes: the node makes it on the first pair."""
    try:
        h = parse_homography(values[name])
    except HomographyError as exc:
        raise ParameterError(name, str(exc)) from None
    return () if h is None else tuple(float(v) for v in h.reshape(-1))


def _topic(values: dict, name: str) -> str:
    value = values[name]
    if not isinstance(value, str) or not re.fullmatch(r"~?/?[A-Za-z_][A-Za-z0-9_/~{}]*", value):
        raise ParameterError(name, f"{value!r} is not a valid ROS topic name")
    return value


def validate(overrides: dict[str, Any] | None = None) -> NodeParams:
    """Defaults + overrides -> NodeParams; the first bad value raises ParameterError."""
    values = dict(DEFAULTS)
    unknown = sorted(set(overrides or {}) - set(values))
    if unknown:
        raise ParameterError(unknown[0], f"unknown parameter; known: {', '.join(DEFAULTS)}")
    values.update(overrides or {})

    device = values["device"]
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ParameterError("device", f"{device!r} is not cpu, cuda or cuda:N")
    thermal_range = values["thermal_range"]
    if isinstance(thermal_range, str):
        if thermal_range not in ("checkpoint", "auto"):
            raise ParameterError(
                "thermal_range", f"{thermal_range!r} is not 'checkpoint', 'auto' or [lo, hi]"
            )
    else:
        thermal_range = _pair("thermal_range", thermal_range)
    gain = _pair("thermal_auto_gain", values["thermal_auto_gain"])
    if not (0.0 <= gain[0] and gain[1] <= 100.0):
        raise ParameterError(
            "thermal_auto_gain", f"percentiles must lie in [0, 100], got {list(gain)}"
        )
    for flag in ("publish_semantic", "publish_color", "publish_overlay", "publish_fused"):
        if not isinstance(values[flag], bool):
            raise ParameterError(flag, f"must be true or false, got {values[flag]!r}")
    checkpoint = values["checkpoint"]
    if not isinstance(checkpoint, str):
        raise ParameterError("checkpoint", f"must be a path string, got {checkpoint!r}")
    return NodeParams(
        rgb_topic=_topic(values, "rgb_topic"),
        thermal_topic=_topic(values, "thermal_topic"),
        rgb_transport=_choice(values, "rgb_transport", TRANSPORT_CHOICES),
        thermal_transport=_choice(values, "thermal_transport", TRANSPORT_CHOICES),
        checkpoint=checkpoint,
        backend=_choice(values, "backend", BACKENDS),
        device=device,
        precision=_choice(values, "precision", PRECISIONS),
        cpu_threads=_number(values, "cpu_threads", 0, 1024, integer=True),
        thermal_range=thermal_range,
        thermal_auto_gain=gain,
        class_table=_choice(values, "class_table", CLASS_TABLE_CHOICES),
        thermal_homography=_homography(values, "thermal_homography"),
        sync_slop_s=float(_number(values, "sync_slop_s", 0.0, 10.0)),
        sync_queue_size=_number(values, "sync_queue_size", 1, 1000, integer=True),
        qos=_choice(values, "qos", QOS_CHOICES),
        qos_depth=_number(values, "qos_depth", 1, 1000, integer=True),
        publish_semantic=values["publish_semantic"],
        publish_color=values["publish_color"],
        publish_overlay=values["publish_overlay"],
        publish_fused=values["publish_fused"],
        overlay_alpha=float(_number(values, "overlay_alpha", 0.0, 1.0)),
        diagnostics_period_s=float(_number(values, "diagnostics_period_s", 0.01, 3600.0)),
    )


def with_changes(current: NodeParams, changes: dict[str, Any]) -> NodeParams:
    """``current`` with ``changes`` applied and validated (ParameterError names a bad one)."""
    values = asdict(current)
    for name, value in changes.items():
        if name not in LIVE_PARAMETERS:
            raise ParameterError(name, "read-only: it can only be set when the node starts")
        values[name] = list(value) if isinstance(value, (list, tuple)) else value
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return validate(values)


def results_summary(p: NodeParams) -> str:
    """The effective values that change the node's output, for the ready line and diagnostics."""
    thermal = p.thermal_range if isinstance(p.thermal_range, str) else list(p.thermal_range)
    if thermal == "auto":
        thermal = f"auto {list(p.thermal_auto_gain)}"
    outputs = [k for k in ("semantic", "color", "overlay", "fused") if getattr(p, f"publish_{k}")]
    registration = "homography" if p.thermal_homography else "none"
    return (
        f"thermal_range={thermal}, registration={registration}, sync_slop_s={p.sync_slop_s}, "
        f"overlay_alpha={p.overlay_alpha}, class_table={p.class_table or 'checkpoint'}, "
        f"cpu_threads={p.cpu_threads}, qos={p.qos}, publish={'+'.join(outputs) or 'none'}"
    )


def declare_and_read(node: Any) -> NodeParams:
    """Declare every parameter on ``node`` (with descriptions) and validate the values."""
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for p in PARAMETERS:
        descriptor = ParameterDescriptor(
            description=p.description,
            read_only=p.name not in LIVE_PARAMETERS,
            dynamic_typing=p.dynamic_typing,
        )
        try:
            values[p.name] = node.declare_parameter(p.name, p.default, descriptor).value
        except Exception as exc:  # rclpy's type errors do not always name the parameter
            raise ParameterError(p.name, f"{type(exc).__name__}: {exc}") from exc
    if isinstance(values["thermal_range"], (list, tuple)) or hasattr(
        values["thermal_range"], "tolist"
    ):
        values["thermal_range"] = list(values["thermal_range"])
    homography = values["thermal_homography"]  # None when a params file gives []
    values["thermal_homography"] = [] if homography is None else homography
    return validate(values)
