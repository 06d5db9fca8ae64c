"""RGB + thermal pairs read from a rosbag2 for calibration (``fusionsam-calibrate --bag``).

Why here: the pairs must be decoded exactly as the node decodes them (raw sensor_msgs/Image
in every encoding, or image_transport's compressed JPEG/PNG), so the messages are
deserialised into rclpy types and go through ``compressed_image``'s entry points. Pairing
is by header stamp, nearest within ``slop_s`` (as the node's approximate-time policy), one
thermal message per RGB message; a first pass reads only the stamps, so a long bag costs
memory only for the frames chosen.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from pathlib import Path

from fusionsam_model.calibration.pairs import PairsError, spread
from fusionsam_model.calibration.result import Pair

from ..node import compressed_image
from ..node.image_conversion import ImageError
from ..ros_time import stamp_ns
from ..topics import compressed_topic
from .player import BagError, bag_topics, message_class, read_messages
from .writer import typestore


def resolve_topic(topics: dict[str, tuple[str, int]], topic: str) -> str:
    """The bag's name for ``topic`` in raw form, else its ``/compressed`` form."""
    names = {t.lstrip("/"): t for t in topics}
    base = topic.lstrip("/")
    for candidate in (base, compressed_topic(base)):
        if candidate in names and topics[names[candidate]][1] > 0:
            return names[candidate]
    held = ", ".join(f"{t} ({n})" for t, (_, n) in topics.items()) or "no topics"
    raise PairsError(
        f"the bag has no messages on {base} or {compressed_topic(base)} (it holds: {held})"
    )


def match_stamps(rgb: list[int], thermal: list[int], slop_ns: int) -> list[tuple[int, int]]:
    """(rgb index, thermal index): each RGB stamp with the nearest unused thermal stamp
    within the slop."""
    order = sorted(range(len(thermal)), key=thermal.__getitem__)
    stamps = [thermal[i] for i in order]
    used: set[int] = set()
    out = []
    for i, s in enumerate(rgb):
        k = bisect.bisect_left(stamps, s)
        best = None
        for j in (k - 1, k, k + 1):
            if 0 <= j < len(stamps) and order[j] not in used and abs(stamps[j] - s) <= slop_ns:
                if best is None or abs(stamps[j] - s) < abs(stamps[best] - s):
                    best = j
        if best is not None:
            used.add(order[best])
            out.append((i, order[best]))
    return out


class BagPairs:
    """An iterable of ``Pair`` with a length: ``frames`` pairs spread over the bag."""

    def __init__(
        self, bag: Path, rgb_topic: str, thermal_topic: str, frames: int | None, slop_s: float
    ) -> None:
        self.bag = Path(bag)
        try:
            topics = bag_topics(self.bag)
        except BagError as exc:
            raise PairsError(str(exc)) from exc
        self.topics = (resolve_topic(topics, rgb_topic), resolve_topic(topics, thermal_topic))
        stamps: dict[str, list[int]] = {t: [] for t in self.topics}
        for message in self._messages():
            msg = typestore().deserialize_cdr(message.raw, message.msgtype)
            stamps[message.topic].append(stamp_ns(msg))
        matched = match_stamps(stamps[self.topics[0]], stamps[self.topics[1]], round(slop_s * 1e9))
        if not matched:
            raise PairsError(
                f"no RGB and thermal messages of {self.bag} are within {slop_s} s of each other"
            )
        chosen = [matched[i] for i in spread(len(matched), frames)]
        self.wanted = {self.topics[0]: {r: n for n, (r, _) in enumerate(chosen)},
                       self.topics[1]: {t: n for n, (_, t) in enumerate(chosen)}}  # fmt: skip
        self.names = [f"{stamps[self.topics[0]][r]}" for r, _ in chosen]

    def _messages(self):
        try:
            yield from read_messages(self.bag, self.topics)
        except BagError as exc:
            raise PairsError(str(exc)) from exc

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Pair]:
        waiting: dict[int, dict[str, object]] = {}
        for message in self._messages():
            slot = self.wanted[message.topic].get(message.index)
            if slot is None:
                continue
            parts = waiting.setdefault(slot, {})
            parts[message.topic] = message
            if len(parts) == 2:
                del waiting[slot]
                yield self._decode(self.names[slot], parts[self.topics[0]], parts[self.topics[1]])

    @staticmethod
    def _decode(name: str, rgb_message, thermal_message) -> Pair:
        from rclpy.serialization import deserialize_message

        try:
            rgb = deserialize_message(rgb_message.raw, message_class(rgb_message.msgtype))
            thermal = deserialize_message(
                thermal_message.raw, message_class(thermal_message.msgtype)
            )
            return Pair(
                name,
                compressed_image.rgb_from_message(rgb),
                compressed_image.thermal_from_message(thermal),
            )
        except (ImageError, BagError, ValueError) as exc:
            return Pair(name, error=f"stamp {name}: {exc}")
