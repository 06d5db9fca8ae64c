"""sensor_msgs/CompressedImage <-> numpy, and the one entry point for raw or compressed input.

The wire conventions are those of image_transport's ``compressed`` plugin: the message goes
on ``<topic>/compressed`` and ``format`` is ``"<encoding>; <jpeg|png> compressed <order>"``
(``rgb8; jpeg compressed bgr8``, ``mono16; png compressed``), or a bare ``jpeg`` / ``png``
from older publishers. The payload is decoded with cv_bridge's ``compressed_imgmsg_to_cv2``
when cv_bridge imports, else with ``cv2.imdecode`` (what cv_bridge calls itself).

Decoding costs milliseconds, so the subscription callback only runs ``check_compressed``
(header-level, O(1)); ``rgb_from_message`` / ``thermal_from_message`` decode in the worker.
A truncated payload is refused before decoding: libjpeg decodes a cut JPEG into a grey-
bottomed picture with only a warning, which would otherwise reach the model silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from ..topics import compressed_topic
from . import image_conversion as conv
from .image_conversion import ImageError

TRANSPORTS = ("raw", "compressed")
CODECS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xae\x42\x60\x82"  # the IEND chunk type and its CRC close every PNG
DEFAULT_JPEG_QUALITY = 90


def transport_topic(topic: str, transport: str) -> str:
    """The topic a transport uses: ``rgb/image`` -> ``rgb/image/compressed``."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    return topic if transport == "raw" else compressed_topic(topic)


@dataclass(frozen=True)
class CompressedFormat:
    """``format`` parsed: codec, the source encoding (if given) and the channel order of
    the decoded pixels (``bgr``/``rgb``/``mono``; image_transport encodes colour as BGR)."""

    codec: str
    source_encoding: str | None
    order: str | None


def parse_format(text: str, what: str = "image") -> CompressedFormat:
    """Parse image_transport's compressed ``format`` string; ImageError if unusable."""
    source, sep, rest = text.partition(";")
    if not sep:  # bare "jpeg" / "png"
        source, rest = "", source
    tokens = rest.strip().split()
    codec = CODECS.get(tokens[0].lower()) if tokens else None
    if codec is None or (len(tokens) > 1 and tokens[1] != "compressed"):
        raise ImageError(
            "unsupported_format",
            f"{what} CompressedImage format {text!r} is not jpeg or png in image_transport's "
            "'<encoding>; <jpeg|png> compressed [<order>]' form (compressedDepth is not read)",
        )
    order = tokens[2].lower() if len(tokens) > 2 else None
    if order is not None:
        order = "rgb" if order.startswith("rgb") else "bgr" if order.startswith("bgr") else "mono"
    return CompressedFormat(codec, source.strip() or None, order)


def check_compressed(msg: CompressedImage, what: str) -> CompressedFormat:
    """Header-level checks (O(1)) for the subscription callback."""
    fmt = parse_format(msg.format, what)
    if len(msg.data) == 0:
        raise ImageError("empty_image", f"{what} CompressedImage has no data")
    stamp = msg.header.stamp
    if stamp.sec == 0 and stamp.nanosec == 0:
        raise ImageError("zero_stamp", f"{what} image has a zero stamp; it cannot be paired")
    return fmt


def _check_complete(data: bytes | memoryview, codec: str, what: str) -> None:
    """Refuse payloads that are not (the whole of) the codec's file."""
    head, tail = bytes(data[:8]), bytes(data[-64:]).rstrip(b"\x00")  # zero padding is legal
    if codec == "jpeg":
        ok_head, ok_tail, start, end = head.startswith(JPEG_SOI), tail.endswith(JPEG_EOI), 3, 2
    else:
        ok_head, ok_tail, start, end = head == PNG_SIGNATURE, tail.endswith(PNG_IEND), 8, 8
    if not ok_head:
        raise ImageError(
            "corrupt_image", f"{what} {codec} payload does not start like a {codec} file"
        )
    if not ok_tail or len(data) < start + end:
        raise ImageError(
            "corrupt_image",
            f"{what} {codec} payload of {len(data)} bytes is truncated (no end marker)",
        )


def decode_compressed(msg: CompressedImage, what: str = "image") -> tuple[np.ndarray, str]:
    """(pixels as decoded, channel order 'bgr' | 'rgb' | 'mono'); ImageError when corrupt."""
    fmt = check_compressed(msg, what)
    data = memoryview(msg.data).cast("B") if not isinstance(msg.data, bytes) else msg.data
    _check_complete(data, fmt.codec, what)
    try:
        if conv._BRIDGE is not None:  # noqa: SLF001 - the same bridge instance as raw images
            pixels = conv._BRIDGE.compressed_imgmsg_to_cv2(msg, "passthrough")  # noqa: SLF001
        else:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except Exception as exc:  # cv_bridge raises its own error type; cv2 raises cv2.error
        raise ImageError("corrupt_image", f"{what} {fmt.codec} payload: {exc}") from exc
    if pixels is None or pixels.size == 0:
        raise ImageError(
            "corrupt_image", f"{what} {fmt.codec} payload of {len(data)} bytes does not decode"
        )
    pixels = np.asarray(pixels)
    order = "mono" if pixels.ndim == 2 else (fmt.order if fmt.order == "rgb" else "bgr")
    return pixels, order


def rgb_from_compressed(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB: colour payloads reordered (a view), grey ones repeated."""
    pixels, order = decode_compressed(msg, "RGB")
    if pixels.dtype != np.uint8:
        raise ImageError(
            "unsupported_encoding", f"RGB payload decodes to {pixels.dtype}; the model needs 8-bit"
        )
    if order == "mono":
        return np.repeat(pixels[..., None], 3, axis=2)
    if pixels.shape[2] not in (3, 4):
        raise ImageError("unsupported_encoding", f"RGB payload has {pixels.shape[2]} channels")
    return pixels[..., :3] if order == "rgb" else pixels[..., 2::-1]


def thermal_from_compressed(msg: CompressedImage) -> np.ndarray:
    """(H, W) uint8 or uint16 as encoded (8- or 16-bit PNG, 8-bit JPEG)."""
    pixels, order = decode_compressed(msg, "thermal")
    if order != "mono":
        raise ImageError(
            "unsupported_encoding",
            f"thermal payload decodes to {pixels.shape[2]} channels; send mono8 or mono16 "
            "(a false-colour palette is not radiometric)",
        )
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageError("unsupported_encoding", f"thermal payload decodes to {pixels.dtype}")
    return pixels


# --- one entry point for both transports (the node and the evaluator use these) ---------
def check_message(msg: Image | CompressedImage, accepted: tuple[str, ...], what: str) -> None:
    """The callback-side check of either message type."""
    if isinstance(msg, CompressedImage):
        check_compressed(msg, what)
    else:
        conv.check_image(msg, accepted, what)


def rgb_from_message(msg: Image | CompressedImage) -> np.ndarray:
    if isinstance(msg, CompressedImage):
        return rgb_from_compressed(msg)
    return conv.rgb_from_image(msg)


def thermal_from_message(msg: Image | CompressedImage) -> np.ndarray:
    if isinstance(msg, CompressedImage):
        return thermal_from_compressed(msg)
    return conv.thermal_from_image(msg)


def mono8_from_message(msg: Image | CompressedImage, what: str) -> np.ndarray:
    """(H, W) uint8 (label ids, masks), copied out of the message."""
    if isinstance(msg, CompressedImage):
        if parse_format(msg.format, what).codec != "png":
            raise ImageError(
                "unsupported_format", f"{what} is {msg.format!r}: class ids need lossless PNG"
            )
        pixels, order = decode_compressed(msg, what)
        if order != "mono" or pixels.dtype != np.uint8:
            raise ImageError("unsupported_encoding", f"{what} payload is not 8-bit single-channel")
        return pixels
    conv.check_image(msg, ("mono8",), what)
    return np.array(conv.image_to_array(msg), copy=True)


# --- encoding (bag writer, tests, benchmark) ---------------------------------------------
def encode(
    pixels: np.ndarray, encoding: str, codec: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY
) -> tuple[str, bytes]:
    """(format, payload) as image_transport's compressed publisher writes them; ``pixels``
    is rgb8 (H, W, 3) or mono8/mono16 (H, W)."""
    codec = CODECS.get(codec, "")
    if not codec:
        raise ValueError("codec must be jpeg or png")
    if encoding == "rgb8":
        pixels, order = np.ascontiguousarray(pixels[..., ::-1]), " bgr8"
    elif encoding in ("mono8", "mono16"):
        order = ""
    else:
        raise ValueError(f"cannot compress encoding {encoding!r}")
    if codec == "jpeg" and pixels.dtype != np.uint8:
        raise ValueError("JPEG holds 8-bit data only; use png for mono16")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if codec == "jpeg" else []
    ok, payload = cv2.imencode(".jpg" if codec == "jpeg" else ".png", pixels, params)
    if not ok:
        raise ValueError(f"cv2.imencode failed for {encoding} {codec}")
    return f"{encoding}; {codec} compressed{order}", payload.tobytes()


def compressed_message(
    pixels: np.ndarray, encoding: str, codec: str, header: Any = None, jpeg_quality: int = 90
) -> CompressedImage:
    """An rclpy CompressedImage (tests and tools that publish compressed images)."""
    msg = CompressedImage()
    msg.format, payload = encode(pixels, encoding, codec, jpeg_quality)
    msg.data = payload
    if header is not None:
        msg.header = header
    return msg
