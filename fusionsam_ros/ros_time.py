"""ROS stamps as integer nanoseconds: one conversion for the node, pairer, evaluator and tools.

Integer nanoseconds (not float seconds) so that stamps compare and key dicts exactly.
"""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def header_ns(header: Any) -> int:
    """The stamp of a ``std_msgs/Header`` (or anything with ``.stamp``) in nanoseconds."""
    return int(header.stamp.sec) * NS_PER_S + int(header.stamp.nanosec)


def stamp_ns(msg: Any) -> int:
    """The header stamp of a stamped message in nanoseconds."""
    return header_ns(msg.header)


def set_stamp(msg: Any, ns: int) -> Any:
    """Write ``ns`` into ``msg.header.stamp``; returns ``msg`` so calls can be chained."""
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(ns), NS_PER_S)
    return msg
