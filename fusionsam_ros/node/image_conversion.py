"""sensor_msgs/Image <-> numpy for the encodings the node accepts.

cv_bridge is used when it can be imported (a sourced ROS 2 install); pip-only machines
use the code below, which returns zero-copy views of the message buffer wherever the
byte order allows (rows with padding are handled with strides, not copies).
"""

from __future__ import annotations

import array
import os
import sys

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

try:  # the ROS-native path comes first; FUSIONSAM_ROS_FALLBACK=1 forces the own one (tests)
    if os.environ.get("FUSIONSAM_ROS_FALLBACK") == "1":
        raise ImportError("FUSIONSAM_ROS_FALLBACK=1")
    from cv_bridge import CvBridge

    _BRIDGE: CvBridge | None = CvBridge()
    CONVERSION_IMPL = "cv_bridge"
except ImportError:  # no pip wheel exists for cv_bridge
    _BRIDGE = None
    CONVERSION_IMPL = "fusionsam_ros.node.image_conversion"

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
THERMAL_ENCODINGS = ("mono8", "mono16", "16UC1", "32FC1")
HOST_IS_BIGENDIAN = sys.byteorder == "big"


class ImageError(ValueError):
    """A message the node cannot use; ``kind`` is the diagnostics error counter it feeds."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def check_image(msg: Image, accepted: tuple[str, ...], what: str) -> None:
    """Header-only checks (O(1)), cheap enough for a subscription callback."""
    if msg.encoding not in accepted:
        raise ImageError(
            "unsupported_encoding",
            f"{what} image has encoding {msg.encoding!r}; accepted: {', '.join(accepted)}",
        )
    if msg.height == 0 or msg.width == 0 or len(msg.data) == 0:
        raise ImageError(
            "empty_image",
            f"{what} image is empty ({msg.width}x{msg.height}, {len(msg.data)} bytes)",
        )
    dtype, channels = ENCODINGS[msg.encoding]
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ImageError(
            "bad_step",
            f"{what} image step {msg.step} is smaller than width*channels*bytes = {row_bytes}",
        )
    if len(msg.data) != msg.step * msg.height:
        raise ImageError(
            "bad_data_length",
            f"{what} image data has {len(msg.data)} bytes, expected step*height = "
            f"{msg.step}*{msg.height} = {msg.step * msg.height}",
        )
    stamp = msg.header.stamp
    if stamp.sec == 0 and stamp.nanosec == 0:
        raise ImageError("zero_stamp", f"{what} image has a zero stamp; it cannot be paired")


def image_to_array(msg: Image) -> np.ndarray:
    """(H, W) or (H, W, C) array in native byte order; a view of ``msg.data`` when possible."""
    dtype, channels = ENCODINGS[msg.encoding]
    # cv_bridge (4.1.0) byte-swaps with ndarray.newbyteorder(), which numpy 2 removed, and
    # reads padded rows (step > width*channels*bytes) as if tight, shifting every row:
    # such messages take the path below
    # (it calls newbyteorder whenever is_bigendian differs from the host, 8-bit data too)
    foreign_order = bool(msg.is_bigendian) != HOST_IS_BIGENDIAN
    padded = msg.step != msg.width * channels * dtype.itemsize
    if _BRIDGE is not None and not foreign_order and not padded:
        return np.asarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    shape: tuple[int, ...] = (msg.height, msg.width, channels)
    strides: tuple[int, ...] = (msg.step, channels * dtype.itemsize, dtype.itemsize)
    if channels == 1:
        shape, strides = shape[:2], strides[:2]
    view = np.ndarray(shape=shape, dtype=dtype, buffer=buffer, strides=strides)
    if not view.dtype.isnative:
        view = view.astype(view.dtype.newbyteorder("="))  # the one copy byte-swapping needs
    return view


def rgb_from_image(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 in RGB order; a strided view for rgb8/bgr8/rgba8/bgra8."""
    pixels = image_to_array(msg)
    encoding = msg.encoding
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return pixels[..., ::-1]
    if encoding == "rgba8":
        return pixels[..., :3]
    if encoding == "bgra8":
        return pixels[..., 2::-1]
    if encoding == "mono8":
        return np.repeat(pixels[..., None], 3, axis=2)
    raise ImageError("unsupported_encoding", f"RGB image encoding {encoding!r} is not supported")


def thermal_from_image(msg: Image) -> np.ndarray:
    """(H, W) uint8, uint16 or float32 as sent; float NaNs are left to the model's NaN-safe
    normalisation."""
    if msg.encoding not in THERMAL_ENCODINGS:
        raise ImageError(
            "unsupported_encoding", f"thermal image encoding {msg.encoding!r} is not supported"
        )
    return image_to_array(msg)


def array_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """numpy -> Image with a tight step; one copy into the message buffer."""
    dtype, channels = ENCODINGS[encoding]
    if pixels.dtype != dtype:
        raise ValueError(f"encoding {encoding} needs dtype {dtype}, got {pixels.dtype}")
    if (pixels.ndim == 2 and channels != 1) or (pixels.ndim == 3 and pixels.shape[2] != channels):
        raise ValueError(
            f"encoding {encoding} needs {channels} channel(s), got shape {pixels.shape}"
        )
    if _BRIDGE is not None:
        msg = _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(pixels), encoding=encoding)
    else:
        pixels = np.ascontiguousarray(pixels)
        msg = Image()
        msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
        msg.encoding = encoding
        msg.is_bigendian = int(HOST_IS_BIGENDIAN and dtype.itemsize > 1)
        msg.step = msg.width * channels * dtype.itemsize
        data = array.array("B")
        data.frombytes(memoryview(pixels).cast("B"))  # one copy, no intermediate bytes
        msg.data = data
    if header is not None:
        msg.header = header
    return msg
