"""Dataset -> rosbag2 (`fusionsam-make-bag`): a recorded "drive" for the node and the evaluator.

Written with the pure-Python ``rosbags`` library, so no ROS install is needed; the bag
plays with ``ros2 bag play`` and with ``fusionsam-play``.

Bag layout (one frame = one dataset sample):

| topic | type | frame_id | stamp |
|---|---|---|---|
| ``rgb/image`` | sensor_msgs/Image rgb8 | ``rgb_camera`` | ``t_i = start + i / rate`` |
| ``thermal/image`` | sensor_msgs/Image mono8 or mono16 | ``thermal_camera`` | ``t_i + offset + jitter`` |
| ``label/image`` | sensor_msgs/Image mono8 class ids | ``rgb_camera`` | ``t_i`` (aligned to RGB) |
| ``label/name`` | std_msgs/Header | the sample name, e.g. ``00012N`` | ``t_i`` |

With ``--compressed`` the two camera topics are written as image_transport's compressed
transport records them: ``rgb/image/compressed`` (sensor_msgs/CompressedImage, JPEG at
``--jpeg-quality`` or PNG with ``--rgb-codec png``) and ``thermal/image/compressed`` (8- or
16-bit PNG, lossless). Labels stay raw: they are ids, not camera pixels. A dataset without
labels (``sample.label is None``, e.g. RoadScene) gets no ``label/image`` topic;
``--layout pairs`` writes such a drive from registered folder pairs (msrs_dev: ``vi/``,
``ir/``, ``--names all|train|holdout|FILE``), whose names on ``label/name`` are what
``fusionsam-evaluate --boxes`` scores box labels by.

The sample name travels on ``label/name`` as a ``std_msgs/Header`` (the smallest stamped
message carrying a string), so evaluators map a label stamp back to its sample (and to
day/night for MFNet-style names) without misusing the label image's frame_id, which
stays the camera frame the label is aligned to. The thermal jitter is drawn from a
seeded generator: the same arguments write the same messages.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..cli_types import positive_float
from ..ros_time import NS_PER_S
from ..topics import (
    LABEL_TOPIC,
    NAME_TOPIC,
    RGB_COMPRESSED_TOPIC,
    RGB_TOPIC,
    THERMAL_COMPRESSED_TOPIC,
    THERMAL_TOPIC,
)

RGB_FRAME = "rgb_camera"
THERMAL_FRAME = "thermal_camera"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
RGB_CODECS = ("jpeg", "png")
HEADER_TYPE = "std_msgs/msg/Header"
TOPIC_TYPES = {
    RGB_TOPIC: IMAGE_TYPE,
    THERMAL_TOPIC: IMAGE_TYPE,
    LABEL_TOPIC: IMAGE_TYPE,
    NAME_TOPIC: HEADER_TYPE,
    RGB_COMPRESSED_TOPIC: COMPRESSED_TYPE,
    THERMAL_COMPRESSED_TOPIC: COMPRESSED_TYPE,
}
STORAGES = ("sqlite3", "mcap")
THERMAL_ENCODINGS = ("mono8", "mono16")
# A fixed start keeps bags byte-reproducible; it is a plausible wall-clock time (2023-11-14).
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000


class BagWriteError(Exception):
    """Bad arguments or data for a bag; the message names what is wrong."""


@lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags type store for ROS 2 Kilted (the newest one this rosbags knows otherwise)."""
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", None) or Stores.LATEST
    return get_typestore(store)


def camera_qos() -> list[Any]:
    """Offered QoS recorded in the metadata: reliable keep-last 10, volatile, which
    ``ros2 bag play`` re-offers and which matches both reliable and best-effort readers."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    unset = QosTime(0, 0)  # 0 = the RMW default (infinite deadline/lifespan, default lease)
    return [
        Qos(
            history=QosHistory.KEEP_LAST,
            depth=10,
            reliability=QosReliability.RELIABLE,
            durability=QosDurability.VOLATILE,
            deadline=unset,
            lifespan=unset,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=unset,
            avoid_ros_namespace_conventions=False,
        )
    ]


def header(stamp_ns: int, frame_id: str) -> Any:
    types = typestore().types
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types[HEADER_TYPE](stamp=stamp, frame_id=frame_id)


def image_message(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """rosbags sensor_msgs/Image with a tight step, little-endian for 16-bit data."""
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype == np.uint16:
        pixels = pixels.astype("<u2", copy=False)
    height, width = pixels.shape[:2]
    return typestore().types[IMAGE_TYPE](
        header=header(stamp_ns, frame_id),
        height=int(height),
        width=int(width),
        encoding=encoding,
        is_bigendian=0,
        step=int(pixels.strides[0]),
        data=pixels.reshape(-1).view(np.uint8),
    )


def thermal_pixels(thermal: np.ndarray, encoding: str, name: str) -> np.ndarray:
    """Dataset thermal -> the requested wire format; 8-bit data widens to 16 bits as v*257
    (0..255 -> 0..65535), so a full-range mono16 image holds the same picture."""
    if thermal.ndim != 2:
        raise BagWriteError(f"sample {name}: thermal must be (H, W), got shape {thermal.shape}")
    if encoding == "mono8":
        if thermal.dtype != np.uint8:
            raise BagWriteError(
                f"sample {name}: thermal is {thermal.dtype}; write it with --thermal-encoding mono16"
            )
        return thermal
    if thermal.dtype == np.uint8:
        return thermal.astype(np.uint16) * np.uint16(257)
    if thermal.dtype == np.uint16:
        return thermal
    raise BagWriteError(f"sample {name}: thermal dtype {thermal.dtype} is not uint8 or uint16")


@dataclass(frozen=True)
class Compression:
    """Camera topics in compressed transport: RGB as ``rgb_codec``, thermal as PNG."""

    rgb_codec: str = "jpeg"
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.rgb_codec not in RGB_CODECS:
            raise BagWriteError(f"--rgb-codec must be one of {RGB_CODECS}, got {self.rgb_codec!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise BagWriteError(f"--jpeg-quality must be in [1, 100], got {self.jpeg_quality}")


def compressed_image_message(
    pixels: np.ndarray, encoding: str, codec: str, quality: int, stamp_ns: int, frame_id: str
) -> Any:
    """rosbags sensor_msgs/CompressedImage with image_transport's ``format`` string."""
    from ..node.compressed_image import encode

    fmt, payload = encode(pixels, encoding, codec, quality)
    return typestore().types[COMPRESSED_TYPE](
        header=header(stamp_ns, frame_id), format=fmt, data=np.frombuffer(payload, np.uint8)
    )


@dataclass(frozen=True)
class FrameStamps:
    index: int
    rgb_ns: int
    thermal_ns: int


def frame_schedule(
    count: int,
    rate_hz: float,
    thermal_offset_ms: float = 0.0,
    jitter_ms: float = 0.0,
    seed: int = 0,
    start_ns: int = DEFAULT_START_NS,
) -> list[FrameStamps]:
    """Per-camera stamps: RGB on a fixed period, thermal with a constant offset plus
    Gaussian jitter (seeded), like two free-running cameras on one clock."""
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise BagWriteError(f"--rate must be a finite number > 0 Hz, got {rate_hz}")
    if jitter_ms < 0:
        raise BagWriteError(f"--jitter-ms must be >= 0, got {jitter_ms}")
    period_ns = 1e9 / rate_hz
    rng = np.random.default_rng(seed)
    jitter = rng.normal(0.0, jitter_ms, size=count) if jitter_ms > 0 else np.zeros(count)
    frames = []
    for i in range(count):
        rgb_ns = start_ns + round(i * period_ns)
        thermal_ns = rgb_ns + round((thermal_offset_ms + jitter[i]) * 1e6)
        frames.append(FrameStamps(i, rgb_ns, max(thermal_ns, 1)))
    return frames


@dataclass
class BagSummary:
    path: Path
    storage: str
    frames: int
    duration_s: float
    counts: dict[str, int]


def bag_topics(compression: Compression | None, labels: bool) -> list[str]:
    """The topics a bag gets, in the order messages of one stamp are written."""
    if compression is None:
        cameras = [RGB_TOPIC, THERMAL_TOPIC]
    else:
        cameras = [RGB_COMPRESSED_TOPIC, THERMAL_COMPRESSED_TOPIC]
    return cameras + ([LABEL_TOPIC] if labels else []) + [NAME_TOPIC]


def _events(frames: list[FrameStamps], topics: list[str]) -> list[tuple[int, int, str]]:
    """(record time, frame index, topic) in time order; the record time is the stamp."""
    thermal = {THERMAL_TOPIC, THERMAL_COMPRESSED_TOPIC}
    events = [
        (f.thermal_ns if topic in thermal else f.rgb_ns, f.index, topic)
        for f in frames
        for topic in topics
    ]
    order = {topic: k for k, topic in enumerate(topics)}
    return sorted(events, key=lambda e: (e[0], e[1], order[e[2]]))


def _serialize(
    topic: str,
    sample: Any,
    stamps: FrameStamps,
    thermal_encoding: str,
    compression: Compression | None = None,
) -> bytes:
    if topic in (RGB_TOPIC, RGB_COMPRESSED_TOPIC):
        rgb = sample.rgb
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BagWriteError(
                f"sample {sample.name}: RGB must be (H, W, 3) uint8, got {rgb.shape}"
            )
        if compression is None:
            msg = image_message(rgb, "rgb8", stamps.rgb_ns, RGB_FRAME)
        else:
            msg = compressed_image_message(
                rgb,
                "rgb8",
                compression.rgb_codec,
                compression.jpeg_quality,
                stamps.rgb_ns,
                RGB_FRAME,
            )
    elif topic in (THERMAL_TOPIC, THERMAL_COMPRESSED_TOPIC):
        pixels = thermal_pixels(sample.thermal, thermal_encoding, sample.name)
        if compression is None:
            msg = image_message(pixels, thermal_encoding, stamps.thermal_ns, THERMAL_FRAME)
        else:  # PNG: lossless for 8 and 16 bits, as radiometric thermal needs
            msg = compressed_image_message(
                pixels, thermal_encoding, "png", 0, stamps.thermal_ns, THERMAL_FRAME
            )
    elif topic == LABEL_TOPIC:
        msg = image_message(
            sample.label.astype(np.uint8, copy=False), "mono8", stamps.rgb_ns, RGB_FRAME
        )
    else:
        msg = header(stamps.rgb_ns, sample.name)
    return bytes(typestore().serialize_cdr(msg, TOPIC_TYPES[topic]))


def write_bag(
    dataset: Any,
    out: str | Path,
    storage: str = "sqlite3",
    rate_hz: float = 10.0,
    thermal_offset_ms: float = 0.0,
    jitter_ms: float = 0.0,
    thermal_encoding: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = False,
    compression: Compression | None = None,
) -> BagSummary:
    """Write ``dataset`` (``len()`` and ``[i] -> Sample``) as a rosbag2 directory ``out``.

    ``thermal_encoding=None`` keeps the dataset's depth (mono8 for uint8, mono16 for uint16);
    ``compression`` writes the camera topics in compressed transport.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    out = Path(out)
    if storage not in STORAGES:
        raise BagWriteError(f"--storage must be one of {STORAGES}, got {storage!r}")
    if thermal_encoding is not None and thermal_encoding not in THERMAL_ENCODINGS:
        raise BagWriteError(
            f"--thermal-encoding must be one of {THERMAL_ENCODINGS}, got {thermal_encoding!r}"
        )
    if out.exists():
        raise BagWriteError(f"{out} exists already; remove it or choose another --out")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count <= 0:
        raise BagWriteError(
            f"nothing to write: the dataset has {len(dataset)} samples, --limit {limit}"
        )
    if thermal_encoding is None:
        thermal_encoding = "mono16" if dataset[0].thermal.dtype == np.uint16 else "mono8"

    frames = frame_schedule(count, rate_hz, thermal_offset_ms, jitter_ms, seed)
    topics = bag_topics(compression, labels=getattr(dataset[0], "label", None) is not None)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    cache: dict[int, Any] = {}  # the few samples whose messages are still pending
    written = dict.fromkeys(topics, 0)
    # Written under a temporary folder and renamed at the end: a run that fails half way
    # (a sample that cannot be decoded, a full disk) leaves no partial bag under --out.
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with Writer(
            staging / out.name, version=Writer.VERSION_LATEST, storage_plugin=plugin
        ) as writer:
            connections = {
                topic: writer.add_connection(
                    topic,
                    TOPIC_TYPES[topic],
                    typestore=typestore(),
                    offered_qos_profiles=camera_qos(),
                )
                for topic in topics
            }
            writer.set_custom_data("fusionsam.rate_hz", repr(float(rate_hz)))
            writer.set_custom_data("fusionsam.thermal_offset_ms", repr(float(thermal_offset_ms)))
            writer.set_custom_data("fusionsam.jitter_ms", repr(float(jitter_ms)))
            writer.set_custom_data("fusionsam.name_topic", NAME_TOPIC)
            for time_ns, index, topic in _progress(_events(frames, topics), progress):
                if index not in cache:
                    cache[index] = dataset[index]
                data = _serialize(topic, cache[index], frames[index], thermal_encoding, compression)
                writer.write(connections[topic], time_ns, data)
                written[topic] += 1
                _evict_finished(cache, written)
        (staging / out.name).rename(out)
    except WriterError as exc:
        raise BagWriteError(f"cannot write bag {out}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    span = (max(f.thermal_ns for f in frames) - min(f.rgb_ns for f in frames)) / 1e9
    return BagSummary(out, storage, count, span, written)


def _evict_finished(cache: dict[int, Any], written: dict[str, int]) -> None:
    """Drop samples whose four messages are all written; a sample evicted too early (thermal
    jitter larger than the frame period reorders frames) is simply loaded again."""
    done_below = min(written.values())
    for index in [i for i in cache if i < done_below]:
        del cache[index]


def _progress(events: list[tuple[int, int, str]], enabled: bool) -> Iterator[tuple[int, int, str]]:
    if not enabled:
        yield from events
        return
    from tqdm import tqdm

    yield from tqdm(events, desc="writing bag", unit="msg")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionsam-make-bag",
        description="Write a dataset split (MFNet, FMB or generator layout) as a rosbag2 with "
        "rgb/image, thermal/image, label/image and label/name topics.",
    )
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--split", default="test", help="split to write (default: test)")
    parser.add_argument("--out", required=True, help="bag directory to create (must not exist)")
    parser.add_argument("--storage", choices=STORAGES, default="sqlite3")
    parser.add_argument("--rate", type=positive_float, default=10.0, help="camera frame rate in Hz")
    parser.add_argument("--thermal-offset-ms", type=float, default=0.0, help="thermal stamp offset")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="thermal stamp jitter (std)")
    parser.add_argument(
        "--thermal-encoding",
        choices=THERMAL_ENCODINGS,
        default=None,
        help="default: mono8 for 8-bit thermal data, mono16 for 16-bit",
    )
    parser.add_argument(
        "--compressed",
        action="store_true",
        help="camera topics as <topic>/compressed (sensor_msgs/CompressedImage): RGB JPEG "
        "(or --rgb-codec png), thermal PNG (8 or 16 bit, lossless)",
    )
    parser.add_argument("--rgb-codec", choices=RGB_CODECS, default="jpeg", help="with --compressed")
    parser.add_argument(
        "--jpeg-quality", type=int, default=90, help="JPEG quality 1-100 (default 90)"
    )
    parser.add_argument("--limit", type=int, default=None, help="write at most N frames")
    parser.add_argument("--seed", type=int, default=0, help="seed of the thermal jitter")
    parser.add_argument(
        "--layout",
        default="auto",
        help="dataset layout: auto, mfnet, fmb, or pairs (registered --visible / --infrared "
        "folders without pixel labels, e.g. msrs_dev: no label/image topic)",
    )
    parser.add_argument("--visible", default="vi", help="pairs: visible subfolder (default vi)")
    parser.add_argument("--infrared", default="ir", help="pairs: infrared subfolder (default ir)")
    parser.add_argument(
        "--names",
        default="all",
        help="pairs: all | train | holdout (msrs_dev_split, by name range) | a file of names; "
        "written in name order",
    )
    return parser


class FolderPairs:
    """Registered visible / infrared frames of ``names`` as label-less samples (``label``
    None: the bag gets no ``label/image``; ``label/name`` still carries each name, which
    is what ``fusionsam-evaluate --boxes`` matches box labels by)."""

    def __init__(self, root: str, names: list[str], visible: str, infrared: str) -> None:
        from fusionsam_model.data.datasets import DatasetError
        from fusionsam_model.data.unlabelled import UnlabelledPairs

        self.pairs = UnlabelledPairs(root, visible, infrared)
        index = {n: i for i, n in enumerate(self.pairs.names)}
        absent = [n for n in names if n not in index]
        if absent:
            raise DatasetError(f"{root}: no {visible}/{infrared} pair for {absent[:5]}")
        self.names, self.indices = list(names), [index[n] for n in names]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        import dataclasses

        return dataclasses.replace(self.pairs[self.indices[i]], label=None)


def open_source(args: argparse.Namespace) -> Any:
    """The dataset a bag is written from: a labelled split, or folder pairs."""
    from fusionsam_model.data.datasets import open_dataset

    if args.layout != "pairs":
        return open_dataset(args.data, args.split, layout=args.layout)
    from fusionsam_model.data.box_datasets import select_names

    names = select_names(args.data, args.names, args.visible)
    return FolderPairs(args.data, names, args.visible, args.infrared)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fusionsam_model.data.datasets import DatasetError

    try:
        dataset = open_source(args)
        summary = write_bag(
            dataset,
            args.out,
            storage=args.storage,
            rate_hz=args.rate,
            thermal_offset_ms=args.thermal_offset_ms,
            jitter_ms=args.jitter_ms,
            thermal_encoding=args.thermal_encoding,
            limit=args.limit,
            seed=args.seed,
            progress=sys.stderr.isatty(),
            compression=Compression(args.rgb_codec, args.jpeg_quality) if args.compressed else None,
        )
    except (BagWriteError, DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"fusionsam-make-bag: error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{t}: {n}" for t, n in summary.counts.items())
    print(
        f"wrote {summary.path} ({summary.storage}): {summary.frames} frames over "
        f"{summary.duration_s:.2f} s at {args.rate:g} Hz; {counts}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
