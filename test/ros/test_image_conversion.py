"""image_conversion: every encoding, row padding, byte order, bad layouts, output messages."""

from __future__ import annotations

import numpy as np
import pytest
from ros_helpers import make_image

from fusionsam_ros.node import image_conversion as conv

RNG = np.random.default_rng(0)
STAMP = 1_700_000_000_123_456_789


def pixels_for(encoding: str, h: int = 6, w: int = 5) -> np.ndarray:
    dtype, channels = conv.ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype == np.float32:
        return RNG.normal(300.0, 20.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@pytest.mark.parametrize("encoding", list(conv.ENCODINGS))
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_round_trip_every_encoding(encoding: str, padding: int, bigendian: bool) -> None:
    pixels = pixels_for(encoding)
    msg = make_image(pixels, encoding, STAMP, row_padding=padding, bigendian=bigendian)
    conv.check_image(msg, tuple(conv.ENCODINGS), "test")
    back = conv.image_to_array(msg)
    assert back.dtype.isnative and back.dtype == pixels.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, pixels)
    out = conv.array_to_image(np.ascontiguousarray(back), encoding, msg.header)
    assert (out.height, out.width, out.encoding) == (msg.height, msg.width, encoding)
    assert out.header.stamp == msg.header.stamp
    np.testing.assert_array_equal(conv.image_to_array(out), pixels)


def test_native_order_without_padding_is_zero_copy() -> None:
    pixels = pixels_for("mono16")
    msg = make_image(pixels, "mono16", STAMP)
    view = conv.image_to_array(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    padded = make_image(pixels_for("rgb8"), "rgb8", STAMP, row_padding=7)
    assert np.shares_memory(conv.rgb_from_image(padded), np.frombuffer(padded.data, np.uint8))


@pytest.mark.parametrize("encoding", conv.RGB_ENCODINGS)
def test_rgb_from_every_encoding_gives_rgb_order(encoding: str) -> None:
    rgb = pixels_for("rgb8")
    if encoding == "rgb8":
        src = rgb
    elif encoding == "bgr8":
        src = rgb[..., ::-1]
    elif encoding == "rgba8":
        src = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    elif encoding == "bgra8":
        src = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)])
    else:  # mono8
        src = rgb[..., 0]
        rgb = np.repeat(src[..., None], 3, axis=2)
    out = conv.rgb_from_image(make_image(src, encoding, STAMP, row_padding=2))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


def test_thermal_float_keeps_nan() -> None:
    t = pixels_for("32FC1")
    t[1, 2] = np.nan
    out = conv.thermal_from_image(make_image(t, "32FC1", STAMP, bigendian=True))
    assert np.isnan(out[1, 2]) and np.isfinite(out[0, 0]) and out.dtype == np.float32


@pytest.mark.parametrize(
    ("mutate", "kind"),
    [
        (lambda m: setattr(m, "encoding", "yuv422"), "unsupported_encoding"),
        (lambda m: setattr(m, "data", b""), "empty_image"),
        (lambda m: setattr(m, "height", 0), "empty_image"),
        (lambda m: setattr(m, "data", bytes(len(m.data) - 1)), "bad_data_length"),
        (lambda m: setattr(m, "step", m.step - 1), "bad_step"),
        (
            lambda m: (setattr(m.header.stamp, "sec", 0), setattr(m.header.stamp, "nanosec", 0)),
            "zero_stamp",
        ),
    ],
)
def test_bad_messages_are_named(mutate, kind: str) -> None:
    msg = make_image(pixels_for("rgb8"), "rgb8", STAMP)
    mutate(msg)
    with pytest.raises(conv.ImageError) as err:
        conv.check_image(msg, conv.RGB_ENCODINGS, "RGB")
    assert err.value.kind == kind
    assert "RGB image" in str(err.value)


def test_thermal_encoding_list_is_enforced() -> None:
    with pytest.raises(conv.ImageError, match="thermal image has encoding 'rgb8'"):
        conv.check_image(
            make_image(pixels_for("rgb8"), "rgb8", STAMP), conv.THERMAL_ENCODINGS, "thermal"
        )


def test_array_to_image_rejects_mismatched_dtype() -> None:
    with pytest.raises(ValueError, match="mono8 needs dtype uint8"):
        conv.array_to_image(np.zeros((2, 2), np.uint16), "mono8")
