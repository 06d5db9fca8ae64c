"""Replay a rosbag2 with rclpy at the recorded timing (`fusionsam-play`).

For machines without ``ros2 bag play`` (the pip-only set-up has no rosbag2_py). Reads
sqlite3 and mcap bags with ``rosbags`` and publishes each message's recorded CDR bytes
unchanged (rosbags' CDR is byte-identical to rclpy's), so nothing is re-encoded. Each
message is first deserialised once as a check: a corrupted message is reported by
topic and index and skipped, and playback goes on. Compressed camera topics
(``<topic>/compressed``, sensor_msgs/CompressedImage) play like any other; a required
camera topic is present when either its raw or its compressed form is.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli_types import positive_float
from ..qos import RELIABLE, SENSOR_DATA, qos_profile
from ..topics import RGB_TOPIC, THERMAL_TOPIC, compressed_topic
from .writer import COMPRESSED_TYPE, IMAGE_TYPE, typestore

# What the node needs; a bag without these cannot drive it (--require '' to play anyway).
DEFAULT_REQUIRED = (RGB_TOPIC, THERMAL_TOPIC)
PLAYER_QOS_DEPTH = {SENSOR_DATA: 5, RELIABLE: 10}  # sensor_data: rclpy's profile, depth 5
SETTLE_S = 1.0
ACK_TIMEOUT_S = 5.0


class BagError(Exception):
    """A bag that cannot be played: missing, unreadable, or without a required topic."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    index: int  # position on its topic, from 0
    timestamp_ns: int  # record time
    raw: bytes


@dataclass
class CorruptMessage:
    topic: str
    index: int
    error: str

    def __str__(self) -> str:
        return f"{self.topic} message #{self.index}: {self.error}"


@dataclass
class PlaybackSummary:
    published: dict[str, int] = field(default_factory=dict)
    corrupted: list[CorruptMessage] = field(default_factory=list)
    recorded_span_s: float = 0.0
    wall_s: float = 0.0
    loops: int = 0
    interrupted: bool = False
    error: str | None = None  # the bag broke during playback; what was played is kept
    unacked: list[str] = field(default_factory=list)  # reliable topics not acknowledged

    def text(self) -> str:
        counts = ", ".join(f"{t}: {n}" for t, n in self.published.items()) or "nothing"
        lines = [
            f"played {sum(self.published.values())} messages in {self.wall_s:.2f} s "
            f"(recorded span {self.recorded_span_s:.2f} s, {self.loops} full pass(es)"
            f"{', interrupted' if self.interrupted else ''}); {counts}"
        ]
        if self.error:
            lines.append(f"stopped early: {self.error}")
        if self.unacked:
            lines.append(
                f"not acknowledged within {ACK_TIMEOUT_S:g} s by every reader: "
                + ", ".join(self.unacked)
            )
        if self.corrupted:
            lines.append(f"{len(self.corrupted)} corrupted message(s) skipped:")
            lines += [f"  {c}" for c in self.corrupted]
        return "\n".join(lines)


def open_bag(path: str | Path) -> Any:
    """Open a rosbags Reader with errors that name the bag."""
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError, OSError) as exc:
        raise BagError(f"cannot open bag {path}: {exc}") from exc
    return reader


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count) from the bag's metadata."""
    reader = open_bag(path)
    try:
        return {name: (info.msgtype or "?", info.msgcount) for name, info in reader.topics.items()}
    finally:
        reader.close()


def describe_topics(topics: dict[str, tuple[str, int]]) -> str:
    return ", ".join(f"{t} ({n} x {m})" for t, (m, n) in topics.items()) or "no topics"


def check_required(path: str | Path, required: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """Raise BagError naming every required topic the bag lacks, listing what it holds."""
    topics = bag_topics(path)
    have = {t.lstrip("/") for t in topics}

    def forms(topic: str) -> set[str]:  # raw or image_transport's compressed transport
        return {topic.lstrip("/"), compressed_topic(topic.lstrip("/"))}

    missing = [t for t in required if not forms(t) & have]
    wanted = set().union(*(forms(t) for t in required)) if required else set()
    empty = [t for t, (_, n) in topics.items() if t.lstrip("/") in wanted and n == 0]
    if missing or empty:
        problem = []
        if missing:
            problem.append(f"has no topic {', '.join(repr(t) for t in missing)}")
        if empty:
            problem.append(f"has no messages on {', '.join(repr(t) for t in empty)}")
        raise BagError(
            f"bag {path} {' and '.join(problem)} (it holds: {describe_topics(topics)}); "
            f"the node needs {', '.join(required)}"
        )
    return topics


def read_messages(path: str | Path, topics: tuple[str, ...] | None = None) -> Iterator[BagMessage]:
    """Messages in record-time order, each with its index on its topic."""
    reader = open_bag(path)
    try:
        wanted = None if topics is None else {t.lstrip("/") for t in topics}
        connections = [
            c for c in reader.connections if wanted is None or c.topic.lstrip("/") in wanted
        ]
        counters: dict[str, int] = {}
        stream = reader.messages(connections=connections)
        while True:
            try:
                connection, timestamp, raw = next(stream)
            except StopIteration:
                return
            except Exception as exc:  # the storage itself is damaged (sqlite page, mcap chunk)
                read = ", ".join(f"{t}: {n}" for t, n in counters.items()) or "nothing"
                raise BagError(f"bag {path} is damaged after {read} messages: {exc}") from exc
            index = counters.get(connection.topic, 0)
            counters[connection.topic] = index + 1
            yield BagMessage(connection.topic, connection.msgtype, index, timestamp, bytes(raw))
    finally:
        reader.close()


def check_message(message: BagMessage) -> None:
    """Deserialise once; images must also hold step*height bytes. Raises on corruption."""
    msg = typestore().deserialize_cdr(message.raw, message.msgtype)
    if message.msgtype == IMAGE_TYPE and len(msg.data) != msg.step * msg.height:
        raise ValueError(
            f"image data has {len(msg.data)} bytes, expected step*height = {msg.step * msg.height}"
        )
    if message.msgtype == COMPRESSED_TYPE and len(msg.data) == 0:
        raise ValueError(f"compressed image ({msg.format!r}) has no data")


def message_class(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image (the rclpy message class)."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype} is not installed for rclpy: {exc}") from exc


def parse_remaps(items: list[str]) -> dict[str, str]:
    remaps = {}
    for item in items:
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise BagError(f"--remap expects FROM:=TO, got {item!r}")
        remaps[source.lstrip("/")] = target
    return remaps


def make_qos(profile: str) -> Any:
    if profile not in PLAYER_QOS_DEPTH:
        raise BagError(f"--qos must be sensor_data or reliable, got {profile!r}")
    return qos_profile(profile, PLAYER_QOS_DEPTH[profile])


def wait_for_subscribers(publishers: dict[str, Any], timeout_s: float) -> list[str]:
    """Wait until every publisher has a subscriber (the node and evaluator are up);
    returns the topics still without one when the timeout ends. The graph is updated by
    the middleware in the background, so no spinning is needed."""
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [t for t, pub in publishers.items() if pub.get_subscription_count() == 0]
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(0.05)


def play(
    node: Any,
    bag: str | Path,
    rate: float = 1.0,
    loop: bool = False,
    remaps: dict[str, str] | None = None,
    qos: str = "reliable",
    required: tuple[str, ...] = DEFAULT_REQUIRED,
    wait_subscribers_s: float = 0.0,
    log: Callable[[str], None] = print,
    only_topics: tuple[str, ...] | None = None,
) -> PlaybackSummary:
    """Publish the bag on ``node`` with recorded gaps divided by ``rate``; ``only_topics``
    plays a subset (like ``ros2 bag play --topics``)."""
    if not (math.isfinite(rate) and rate > 0):
        raise BagError(f"--rate must be a finite number > 0, got {rate}")
    remaps = remaps or {}
    topics = check_required(bag, required)
    if only_topics is not None:
        wanted = {t.lstrip("/") for t in only_topics}
        unknown = wanted - {t.lstrip("/") for t in topics}
        if unknown:
            raise BagError(
                f"--topics: bag {bag} has no {', '.join(sorted(unknown))} "
                f"(it holds: {describe_topics(topics)})"
            )
        topics = {t: v for t, v in topics.items() if t.lstrip("/") in wanted}
    qos_profile = make_qos(qos)
    publishers = {
        topic: node.create_publisher(
            message_class(msgtype), remaps.get(topic.lstrip("/"), topic), qos_profile
        )
        for topic, (msgtype, _) in topics.items()
    }
    if wait_subscribers_s > 0:
        waiting = wait_for_subscribers(publishers, wait_subscribers_s)
        if waiting:
            log(f"no subscriber after {wait_subscribers_s:g} s on: {', '.join(waiting)}; playing")
        # The publisher sees a reader before that reader has discovered the publisher (on
        # a loaded machine this takes a while); messages sent in between arrive late, in a
        # burst, or not at all for best effort. Give discovery time to finish.
        time.sleep(SETTLE_S)
    for msgtype, _ in topics.values():
        typestore().get_msgdef(msgtype)  # rosbags generates its decoders on first use: not mid-play
    summary = PlaybackSummary(published=dict.fromkeys(topics, 0))
    total = sum(n for _, n in topics.values())
    start = time.monotonic()
    try:
        while True:
            _play_once(node, bag, rate, publishers, summary, total, log)
            summary.loops += 1
            if not loop:
                break
    except KeyboardInterrupt:
        summary.interrupted = True
    except BagError as exc:
        summary.error = str(exc)
    if node.context.ok():  # after Ctrl-C the context is gone and nothing can be delivered
        summary.unacked = wait_for_delivery(publishers)
    summary.wall_s = time.monotonic() - start
    return summary


def _play_once(
    node: Any,
    bag: str | Path,
    rate: float,
    publishers: dict[str, Any],
    summary: PlaybackSummary,
    total: int,
    log: Callable[[str], None],
) -> None:
    first_ns = None
    wall_start = next_progress = 0.0
    seen = 0
    for message in read_messages(bag, tuple(publishers)):
        seen += 1
        if first_ns is None:  # the clock starts with the first message, after opening the bag
            first_ns = message.timestamp_ns
            wall_start = time.monotonic()
            next_progress = wall_start + 1.0
        due = wall_start + (message.timestamp_ns - first_ns) / 1e9 / rate
        if not _sleep_until(due, node.context):
            raise KeyboardInterrupt  # rclpy's SIGINT handler shut the context down
        try:
            check_message(message)
        except Exception as exc:  # any deserialisation failure means the bytes are bad
            corrupt = CorruptMessage(message.topic, message.index, f"{type(exc).__name__}: {exc}")
            summary.corrupted.append(corrupt)
            log(f"corrupted: {corrupt} (skipped)")
            continue
        publishers[message.topic].publish(message.raw)
        summary.published[message.topic] += 1
        summary.recorded_span_s = max(
            summary.recorded_span_s, (message.timestamp_ns - first_ns) / 1e9
        )
        now = time.monotonic()
        if now >= next_progress:
            log(f"  {seen}/{total} messages, t = {(message.timestamp_ns - first_ns) / 1e9:.1f} s")
            next_progress = now + 1.0


def wait_for_delivery(publishers: dict[str, Any], timeout_s: float = ACK_TIMEOUT_S) -> list[str]:
    """Before the process exits, wait until reliable readers acknowledged everything: the
    last messages still sit in this process's shared memory, and would be lost with it.
    Returns the topics still unacknowledged at the timeout."""
    from rclpy.duration import Duration

    deadline = time.monotonic() + timeout_s
    unacked = []
    for topic, publisher in publishers.items():
        left = max(0.0, deadline - time.monotonic())
        if not publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
            unacked.append(topic)
    return unacked


def _sleep_until(due: float, context: Any) -> bool:
    """Sleep in short slices so Ctrl-C (which shuts the rclpy context down) stops playback
    promptly; False once the context is gone."""
    while True:
        if not context.ok():
            return False
        delay = due - time.monotonic()
        if delay <= 0:
            return True
        time.sleep(min(delay, 0.05))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionsam-play",
        description="Replay a rosbag2 (sqlite3 or mcap) with rclpy at the recorded timing.",
    )
    parser.add_argument("bag", help="rosbag2 directory (or a single .db3/.mcap file)")
    parser.add_argument("--rate", type=positive_float, default=1.0, help="playback speed factor")
    parser.add_argument("--loop", action="store_true", help="replay until interrupted")
    parser.add_argument(
        "--remap", action="append", default=[], metavar="FROM:=TO", help="rename a topic"
    )
    parser.add_argument(
        "--topics", nargs="+", default=None, metavar="TOPIC", help="play only these topics"
    )
    parser.add_argument("--qos", choices=tuple(PLAYER_QOS_DEPTH), default=RELIABLE)
    parser.add_argument(
        "--require",
        default=",".join(DEFAULT_REQUIRED),
        help="comma-separated topics the bag must hold ('' to play any bag)",
    )
    parser.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a subscriber on every topic before playing",
    )
    return parser


def split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Own arguments, and '--ros-args ...' for rclpy. Split by hand because rcl would read
    our '--remap FROM:=TO' value as a (deprecated) ROS remapping rule of its own."""
    if "--ros-args" not in argv:
        return argv, []
    cut = argv.index("--ros-args")
    return argv[:cut], argv[cut:]


def main(argv: list[str] | None = None) -> int:
    import rclpy

    own, ros_args = split_ros_args(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(own)
    required = tuple(t for t in args.require.split(",") if t)
    rclpy.init(args=["fusionsam-play", *ros_args])
    node = rclpy.create_node("fusionsam_player")
    try:
        remaps = parse_remaps(args.remap)
        print(f"playing {args.bag} at rate {args.rate:g}" + (" (looping)" if args.loop else ""))
        summary = play(
            node,
            args.bag,
            rate=args.rate,
            loop=args.loop,
            remaps=remaps,
            qos=args.qos,
            required=required,
            wait_subscribers_s=args.wait_for_subscribers,
            only_topics=tuple(args.topics) if args.topics else None,
        )
    except BagError as exc:
        print(f"fusionsam-play: error: {exc}", file=sys.stderr)
        return 2
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    print(summary.text())
    if summary.error:
        return 2
    return 3 if summary.corrupted else 0


if __name__ == "__main__":
    sys.exit(main())
