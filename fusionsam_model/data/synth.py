"""Procedural RGB-thermal road scenes written in MFNet's or FMB's exact on-disk layout.

Why: the real datasets cannot be downloaded here, yet the tests, the demo and the
benchmark tables need aligned RGB-thermal-label data whose two modalities are
complementary by construction:

- at night people, cars and bikes are barely visible in RGB (dim ambient light, dull
  colours) but warm, hence bright, in thermal; by day they show in both;
- cones, bumps, curbs, guardrails and car stops are painted (coloured, partly
  retro-reflective) in RGB but have the temperature of whatever is behind them, so they
  vanish in thermal;
- both sensors add noise (thermal also fixed-pattern column noise and soft optics).

One scene description (a per-pixel map of *scene kinds* plus albedo, temperature and
night material) is drawn once and mapped to either label set. Each image's random
generator is seeded from (seed, index) and only integer numpy arithmetic, IEEE basic
float arithmetic on scalars and OpenCV's integer fill primitives are used (no blurs or
resizes whose SIMD rounding may differ), so one seed gives the same bytes on any machine
with the same numpy and OpenCV versions.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fusionsam_model.data.classes import FMB, MFNET, ClassTable
from fusionsam_model.data.conditions import (
    CONDITIONS,
    DAY,
    NIGHT,
    condition_of,
    is_night,
    mfnet_name,
)
from fusionsam_model.data.datasets import write_mfnet_sample, write_png

KINDS = (
    "void",
    "sky",
    "terrain",
    "road",
    "sidewalk",
    "building",
    "vegetation",
    "pole",
    "sign",
    "traffic_lamp",
    "person",
    "car",
    "truck",
    "bus",
    "motorcycle",
    "bicycle",
    "curb",
    "car_stop",
    "guardrail",
    "cone",
    "bump",
)
_KIND = {name: i for i, name in enumerate(KINDS)}

# Scene kind -> class name; kinds not listed become id 0 (unlabeled).
KIND_TO_MFNET = {
    "person": "person",
    "car": "car",
    "truck": "car",
    "bus": "car",
    "motorcycle": "bike",
    "bicycle": "bike",
    "curb": "curve",
    "car_stop": "car_stop",
    "guardrail": "guardrail",
    "cone": "color_cone",
    "bump": "bump",
}
KIND_TO_FMB = {
    "sky": "sky",
    "road": "road",
    "sidewalk": "sidewalk",
    "building": "building",
    "vegetation": "vegetation",
    "pole": "pole",
    "sign": "sign",
    "traffic_lamp": "traffic_lamp",
    "person": "person",
    "car": "car",
    "truck": "truck",
    "bus": "bus",
    "motorcycle": "motorcycle",
    "bicycle": "bicycle",
    "curb": "sidewalk",
    "car_stop": "road",
    "bump": "road",
}

# How a surface looks at night: lit by the dim ambient light, by headlights
# (retro-reflective paint) or by itself (lamps, lit windows, the sky glow).
DIFFUSE, REFLECTIVE, LUMINOUS = 0, 1, 2
NEUTRAL = None  # temperature of an object that takes the temperature of what is behind it

SPLITS = ("train", "val", "test")


def _kind_lut(table: ClassTable, mapping: dict[str, str]) -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)
    for kind, class_name in mapping.items():
        lut[_KIND[kind]] = table.names.index(class_name)
    return lut


@dataclass(frozen=True)
class Layout:
    name: str
    height: int
    width: int
    class_table: ClassTable
    kind_lut: np.ndarray


LAYOUTS = {
    "mfnet": Layout("mfnet", 480, 640, MFNET, _kind_lut(MFNET, KIND_TO_MFNET)),
    "fmb": Layout("fmb", 600, 800, FMB, _kind_lut(FMB, KIND_TO_FMB)),
}


def image_name(index: int) -> str:
    """MFNet-style name: 1-based number and D (day) or N (night); odd indices are night."""
    return mfnet_name(index + 1, NIGHT if index % 2 else DAY)


def split_of(index: int) -> str:
    """50/25/25 in blocks of 8 with day and night alternating, so every split has both."""
    return ("train", "train", "train", "train", "val", "val", "test", "test")[index % 8]


# ---------------------------------------------------------------- drawing -----


class _Canvas:
    """Per-pixel scene description: kind, RGB albedo, temperature and night material."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.kind = np.zeros((h, w), np.uint8)
        self.albedo = np.zeros((h, w, 3), np.uint8)
        self.temp = np.zeros((h, w), np.uint8)
        self.material = np.zeros((h, w), np.uint8)
        self.ground_temp: np.ndarray | None = None

    def fill(self, pts, kind: str, color, temp: int | None, material: int = DIFFUSE) -> None:
        """Fill a polygon; ``temp=NEUTRAL`` keeps the temperature of the static scene."""
        poly = np.round(np.asarray(pts, dtype=np.float64)).astype(np.int32).reshape(-1, 2)
        cv2.fillPoly(self.kind, [poly], _KIND[kind])
        cv2.fillPoly(self.albedo, [poly], tuple(int(c) for c in color))
        cv2.fillPoly(self.material, [poly], material)
        if temp is not None:
            cv2.fillPoly(self.temp, [poly], int(temp))
        elif self.ground_temp is not None:
            self._restore_ground_temp(poly)

    def _restore_ground_temp(self, poly: np.ndarray) -> None:
        x0, y0 = np.maximum(poly.min(axis=0), 0)
        x1, y1 = np.minimum(poly.max(axis=0) + 1, (self.w, self.h))
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [poly - np.array([x0, y0], np.int32)], 1)
        inside = mask.astype(bool)
        self.temp[y0:y1, x0:x1][inside] = self.ground_temp[y0:y1, x0:x1][inside]


@dataclass
class _Camera:
    """Pinhole camera above a flat road: X right, Y up from the ground, Z forward (metres)."""

    h: int
    w: int
    horizon: float
    vx: float
    f: float
    height: float

    def p(self, x: float, y: float, z: float) -> tuple[float, float]:
        return (self.vx + self.f * x / z, self.horizon + self.f * (self.height - y) / z)

    def px(self, metres: float, z: float) -> float:
        return self.f * metres / z

    @property
    def z_bottom(self) -> float:
        """Depth of the ground seen at the bottom image row."""
        return self.f * self.height / (self.h - self.horizon)

    def z_of_row(self, row: float) -> float:
        return self.f * self.height / (row - self.horizon)


def _ellipse(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return cv2.ellipse2Poly(
        (round(cx), round(cy)), (max(1, round(ax)), max(1, round(ay))), 0, 0, 360, 10
    )


def _bar(p, q, width: float) -> list[tuple[float, float]]:
    """A thick segment as a quad (``width`` in pixels)."""
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    n = math.sqrt(dx * dx + dy * dy) or 1.0
    ox, oy = -dy / n * width / 2, dx / n * width / 2
    return [(x0 + ox, y0 + oy), (x1 + ox, y1 + oy), (x1 - ox, y1 - oy), (x0 - ox, y0 - oy)]


def _jitter(rng: np.random.Generator, color, amount: int = 12) -> tuple[int, int, int]:
    d = rng.integers(-amount, amount + 1, 3).tolist()
    return tuple(min(255, max(0, c + e)) for c, e in zip(color, d, strict=True))


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


CLOTHES = (
    (60, 60, 70),
    (110, 90, 70),
    (70, 80, 110),
    (120, 60, 60),
    (90, 100, 80),
    (130, 120, 110),
)
CAR_PAINT = (
    (150, 20, 25),
    (30, 50, 120),
    (200, 200, 205),
    (40, 40, 45),
    (120, 125, 130),
    (200, 170, 60),
)
FACADES = ((190, 180, 160), (160, 90, 70), (150, 150, 150), (210, 205, 195), (120, 110, 100))
SKIN = ((225, 180, 150), (170, 120, 90), (110, 75, 55))
GREENS = ((60, 110, 50), (45, 90, 40), (80, 120, 60))


@dataclass
class _Temps:
    """Thermal counts (0-255) of the static scene; warm objects are set per object."""

    sky: int
    road: int
    sidewalk: int
    terrain: int
    building: int
    vegetation: int
    metal: int


def _temps(rng: np.random.Generator, night: bool) -> _Temps:
    base = (20, 92, 84, 66, 82, 60, 72) if night else (38, 135, 122, 104, 108, 86, 112)
    return _Temps(*(b + int(d) for b, d in zip(base, rng.integers(-6, 7, len(base)), strict=True)))


# ------------------------------------------------------------------ scene -----


class _Scene:
    """Draws one road scene; geometry in metres through ``_Camera``."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, night: bool) -> None:
        self.rng, self.night = rng, night
        self.c = _Canvas(h, w)
        self.cam = _Camera(
            h=h,
            w=w,
            horizon=h * rng.uniform(0.38, 0.46),
            vx=w * rng.uniform(0.42, 0.58),
            f=w * 0.78 * rng.uniform(0.92, 1.08),
            height=rng.uniform(1.3, 1.6),
        )
        self.t = _temps(rng, night)
        self.road_half = rng.uniform(3.0, 4.2)
        self.curb_w = 0.15
        self.walk_w = rng.uniform(1.8, 3.0)
        self.facade = [
            self.road_half + self.curb_w + self.walk_w + rng.uniform(0.5, 3.0) for _ in (0, 1)
        ]
        self.z_near = self.cam.z_bottom * 0.9

    def _facing_rect(self, x: float, z: float):
        """Projector of rectangles on a camera-facing plane at depth z, offsets from x."""
        cam = self.cam

        def rect(x0: float, x1: float, y0: float, y1: float) -> list:
            return [
                cam.p(x + x0, y1, z),
                cam.p(x + x1, y1, z),
                cam.p(x + x1, y0, z),
                cam.p(x + x0, y0, z),
            ]

        return rect

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    # --- static background ---------------------------------------------------

    def sky_and_ground(self) -> None:
        c, hz = self.c, int(round(self.cam.horizon))
        c.kind[:hz] = _KIND["sky"]
        c.temp[:hz] = self.t.sky
        if self.night:
            c.albedo[:hz] = _jitter(self.rng, (16, 20, 38), 4)
            c.material[:hz] = LUMINOUS
        else:
            top = np.array(_jitter(self.rng, (100, 150, 220), 15), np.int32)
            bottom = np.array(_jitter(self.rng, (190, 205, 230), 10), np.int32)
            rows = np.arange(hz, dtype=np.int32)[:, None]
            grad = (top * (hz - rows) + bottom * rows) // max(hz, 1)
            c.albedo[:hz] = grad[:, None, :].astype(np.uint8)
        c.kind[hz:] = _KIND["terrain"]
        c.albedo[hz:] = _jitter(self.rng, _pick(self.rng, ((95, 115, 65), (125, 110, 85))), 10)
        c.temp[hz:] = self.t.terrain

    def band(
        self, x0: float, x1: float, kind: str, color, temp, material=DIFFUSE, z0=None, z1=400.0
    ):
        """A strip of ground between lateral positions x0 and x1 (metres), depth z0..z1."""
        cam = self.cam
        z0 = self.z_near if z0 is None else z0
        pts = [cam.p(x0, 0, z0), cam.p(x1, 0, z0), cam.p(x1, 0, z1), cam.p(x0, 0, z1)]
        self.c.fill(pts, kind, color, temp, material)

    def road(self) -> None:
        r, cw, ww = self.road_half, self.curb_w, self.walk_w
        walk = _jitter(self.rng, (165, 160, 150), 12)
        self.band(-r - cw - ww, r + cw + ww, "sidewalk", walk, self.t.sidewalk)
        asphalt = _jitter(self.rng, (100, 100, 102), 12)
        self.band(-r, r, "road", asphalt, self.t.road)
        # near rows are warmer (sun-soaked asphalt seen at a steeper angle)
        hz = int(round(self.cam.horizon))
        ramp = (np.arange(self.c.h - hz, dtype=np.int32) * 8 // max(self.c.h - hz, 1)).astype(
            np.uint8
        )
        road_rows = self.c.kind[hz:] == _KIND["road"]
        self.c.temp[hz:] += (road_rows * ramp[:, None]).astype(np.uint8)
        paint = _jitter(self.rng, (225, 225, 215), 8)
        for side in (-1, 1):  # solid edge lines
            x = side * (r - 0.25)
            self.band(x - 0.07, x + 0.07, "road", paint, NEUTRAL, REFLECTIVE)
        z = self.z_near - self.u(0, 6)
        while z < 150:  # dashed centre line
            self.band(
                -0.07, 0.07, "road", paint, NEUTRAL, REFLECTIVE, z0=max(z, self.z_near), z1=z + 3
            )
            z += 9
        if self.chance(0.2):
            self.zebra()
        for side in (-1, 1):
            self.curb(side)

    def zebra(self) -> None:
        z0, paint = self.u(self.z_near + 2, 14), _jitter(self.rng, (225, 225, 215), 8)
        x = -self.road_half + 0.3
        while x < self.road_half - 0.5:
            self.band(x, x + 0.5, "road", paint, NEUTRAL, REFLECTIVE, z0=z0, z1=z0 + 3)
            x += 1.0

    def curb(self, side: int) -> None:
        """Kerb stones along the road edge, painted in alternating colours or plain concrete."""
        cam, r, cw = self.cam, self.road_half, self.curb_w
        painted = self.chance(0.6)
        colors = _pick(self.rng, (((200, 40, 40), (230, 230, 230)), ((230, 190, 30), (40, 40, 40))))
        plain = _jitter(self.rng, (185, 185, 178), 10)
        height, z, i = 0.15, self.z_near, 0
        xi, xo = side * r, side * (r + cw)
        while z < 120:
            z1 = z + max(1.0, 0.12 * z)
            pts = [cam.p(xi, 0, z), cam.p(xi, height, z), cam.p(xo, height, z)]
            pts += [cam.p(xo, height, z1), cam.p(xi, height, z1), cam.p(xi, 0, z1)]
            color = colors[i % 2] if painted else plain
            self.c.fill(pts, "curb", color, NEUTRAL, REFLECTIVE if painted else DIFFUSE)
            z, i = z1, i + 1

    def buildings(self, side: int) -> None:
        cam, x = self.cam, side * self.facade[0 if side < 0 else 1]
        spans, z = [], self.z_near * 0.8
        while z < 110:
            z += self.u(0, 5) if self.chance(0.5) else 0.0
            length = self.u(6, 20)
            spans.append((z, z + length, self.u(6, 24)))
            z += length
        for z0, z1, height in reversed(spans):
            wall = _jitter(self.rng, _pick(self.rng, FACADES), 15)
            side_wall = tuple(int(v * 0.75) for v in wall)
            end = [
                cam.p(x, 0, z0),
                cam.p(x + side * 12, 0, z0),
                cam.p(x + side * 12, height, z0),
                cam.p(x, height, z0),
            ]
            self.c.fill(end, "building", side_wall, self.t.building)
            face = [cam.p(x, 0, z0), cam.p(x, 0, z1), cam.p(x, height, z1), cam.p(x, height, z0)]
            self.c.fill(face, "building", wall, self.t.building)
            self.windows(x, z0, z1, height)

    def windows(self, x: float, z0: float, z1: float, height: float) -> None:
        cam = self.cam
        if cam.px(1.4, z0) < 3:
            return
        floor = 1.0
        while floor + 2.2 < height:
            z = z0 + 0.8
            while z + 1.4 < z1:
                lit = self.night and self.chance(0.3)
                color = (
                    _jitter(self.rng, (250, 215, 130), 8)
                    if lit
                    else _jitter(self.rng, (70, 85, 100), 10)
                )
                pts = [cam.p(x, floor + 0.8, z), cam.p(x, floor + 0.8, z + 1.4)]
                pts += [cam.p(x, floor + 2.2, z + 1.4), cam.p(x, floor + 2.2, z)]
                self.c.fill(
                    pts,
                    "building",
                    color,
                    self.t.building + (10 if lit else -4),
                    LUMINOUS if lit else DIFFUSE,
                )
                z += 3.0
            floor += 3.0

    def hedge(self, side: int) -> None:
        """The open side of the street: a band of bushes and woods instead of buildings."""
        cam, x = self.cam, side * self.facade[0 if side < 0 else 1]
        z, pts_top = self.z_near * 0.8, []
        while z < 200:
            pts_top.append(cam.p(x, self.u(2, 7), z))
            z *= 1.25
        pts = pts_top + [cam.p(x, 0, z), cam.p(x, 0, self.z_near * 0.8)]
        self.c.fill(
            pts, "vegetation", _jitter(self.rng, _pick(self.rng, GREENS), 10), self.t.vegetation
        )

    def tree(self, side: int, z: float) -> None:
        cam = self.cam
        x = side * (self.road_half + self.curb_w + self.walk_w - 0.4)
        trunk = _bar(cam.p(x, 0, z), cam.p(x, 2.6, z), cam.px(0.3, z))
        self.c.fill(trunk, "vegetation", _jitter(self.rng, (90, 70, 50), 10), self.t.vegetation + 4)
        cx, cy = cam.p(x, self.u(3.2, 4.2), z)
        crown = _ellipse(cx, cy, cam.px(self.u(1.3, 2.2), z), cam.px(self.u(1.2, 1.9), z))
        self.c.fill(
            crown, "vegetation", _jitter(self.rng, _pick(self.rng, GREENS), 12), self.t.vegetation
        )

    def street_lamp(self, side: int, z: float) -> None:
        cam, x = self.cam, side * (self.road_half + 0.5)
        metal = _jitter(self.rng, (120, 120, 125), 10)
        self.c.fill(
            _bar(cam.p(x, 0, z), cam.p(x, 6.5, z), cam.px(0.16, z)), "pole", metal, self.t.metal
        )
        head = cam.p(x - side * 1.3, 6.4, z)
        self.c.fill(_bar(cam.p(x, 6.4, z), head, cam.px(0.1, z)), "pole", metal, self.t.metal)
        lamp = _ellipse(head[0], head[1] + cam.px(0.08, z), cam.px(0.35, z), cam.px(0.12, z))
        self.c.fill(
            lamp, "pole", (255, 240, 200), self.t.metal + (80 if self.night else 0), LUMINOUS
        )

    def sign(self, side: int, z: float) -> None:
        cam, x = self.cam, side * (self.road_half + 0.6)
        metal = _jitter(self.rng, (140, 140, 145), 10)
        self.c.fill(
            _bar(cam.p(x, 0, z), cam.p(x, 2.4, z), cam.px(0.08, z)), "pole", metal, self.t.metal
        )
        cx, cy = cam.p(x, 2.6, z)
        rad = cam.px(0.35, z)
        color = _pick(self.rng, ((30, 80, 200), (210, 30, 35), (240, 200, 40)))
        shape = (
            _ellipse(cx, cy, rad, rad)
            if self.chance(0.5)
            else [
                (cx - rad, cy - rad),
                (cx + rad, cy - rad),
                (cx + rad, cy + rad),
                (cx - rad, cy + rad),
            ]
        )
        self.c.fill(shape, "sign", color, self.t.metal, REFLECTIVE)
        inner = _ellipse(cx, cy, rad * 0.55, rad * 0.55)
        self.c.fill(inner, "sign", (235, 235, 235), self.t.metal, REFLECTIVE)

    def traffic_light(self, side: int, z: float) -> None:
        cam, x = self.cam, side * (self.road_half + 0.4)
        metal = _jitter(self.rng, (70, 75, 70), 8)
        self.c.fill(
            _bar(cam.p(x, 0, z), cam.p(x, 3.6, z), cam.px(0.14, z)), "pole", metal, self.t.metal
        )
        box = [
            cam.p(x - 0.2, 4.6, z),
            cam.p(x + 0.2, 4.6, z),
            cam.p(x + 0.2, 3.5, z),
            cam.p(x - 0.2, 3.5, z),
        ]
        self.c.fill(box, "traffic_lamp", (30, 32, 30), self.t.metal + 6)
        on = int(self.rng.integers(3))
        for i, color in enumerate(((230, 40, 30), (240, 180, 30), (40, 220, 90))):
            cx, cy = cam.p(x, 4.4 - 0.35 * i, z)
            lit = i == on
            self.c.fill(
                _ellipse(cx, cy, cam.px(0.12, z), cam.px(0.12, z)),
                "traffic_lamp",
                color if lit else tuple(v // 5 for v in color),
                self.t.metal + (40 if lit else 6),
                LUMINOUS if lit else DIFFUSE,
            )

    # --- warm objects ---------------------------------------------------------

    def person(
        self, x: float, z: float, ride: tuple[float, float] | None = None, facing: int = 1
    ) -> None:
        """A pedestrian standing at (x, z), or a rider whose hips sit at height ``ride``."""
        cam, rng = self.cam, self.rng
        tall = self.u(1.55, 1.9)
        clothes = _jitter(rng, _pick(rng, CLOTHES), 15)
        trousers = _jitter(rng, _pick(rng, CLOTHES), 15)
        skin = _jitter(rng, _pick(rng, SKIN), 10)
        body_t = int(rng.integers(182, 200))
        skin_t = int(rng.integers(214, 236))
        limb = cam.px(0.12, z)
        if ride is None:
            hip_y, hip_x = 0.5 * tall, x
            stride = self.u(0.0, 0.35)
            feet = [(x - 0.1 - stride / 2, 0.0), (x + 0.1 + stride / 2, 0.0)]
            hands = [(x - 0.25, 0.48 * tall), (x + 0.25, 0.48 * tall)]
            lean = 0.0
        else:
            hip_x, hip_y = ride
            feet = [(hip_x + facing * 0.2, 0.3), (hip_x + facing * 0.3, 0.45)]
            hands = [(hip_x + facing * 0.55, 1.0), (hip_x + facing * 0.55, 1.05)]
            lean = facing * 0.2
        shoulder_y = hip_y + 0.34 * tall
        for fx, fy in feet:
            self.c.fill(
                _bar(cam.p(hip_x, hip_y, z), cam.p(fx, fy, z), limb * 1.1),
                "person",
                trousers,
                body_t,
            )
        torso = [
            cam.p(hip_x - 0.17, hip_y, z),
            cam.p(hip_x + 0.17, hip_y, z),
            cam.p(hip_x + lean + 0.23, shoulder_y, z),
            cam.p(hip_x + lean - 0.23, shoulder_y, z),
        ]
        self.c.fill(torso, "person", clothes, body_t)
        for sx, (hx, hy) in zip((-0.2, 0.2), hands, strict=True):
            shoulder = cam.p(hip_x + lean + sx, shoulder_y - 0.03, z)
            self.c.fill(_bar(shoulder, cam.p(hx, hy, z), limb * 0.8), "person", clothes, body_t)
        hx, hy = cam.p(hip_x + lean, shoulder_y + 0.14 * tall * 0.75, z)
        self.c.fill(_ellipse(hx, hy, cam.px(0.1, z), cam.px(0.13, z)), "person", skin, skin_t)

    def car(self, x: float, z: float) -> None:
        """Rear view of a car whose back is at depth z."""
        cam, rng = self.cam, self.rng
        half, tall = self.u(0.85, 0.95), self.u(1.35, 1.55)
        paint = _jitter(rng, _pick(rng, CAR_PAINT), 12)
        body_t = int(rng.integers(158, 176)) if self.night else int(rng.integers(170, 186))

        rect = self._facing_rect(x, z)

        for sx in (-1, 1):
            self.c.fill(
                rect(sx * (half - 0.05), sx * (half - 0.32), 0, 0.4),
                "car",
                (25, 25, 25),
                body_t + 25,
            )
        self.c.fill(rect(-half, half, 0.25, 0.95), "car", paint, body_t)
        cabin = [cam.p(x - half * 0.93, 0.95, z), cam.p(x + half * 0.93, 0.95, z)]
        cabin += [cam.p(x + half * 0.72, tall, z), cam.p(x - half * 0.72, tall, z)]
        self.c.fill(cabin, "car", paint, body_t)
        glass = [cam.p(x - half * 0.82, 1.0, z), cam.p(x + half * 0.82, 1.0, z)]
        glass += [cam.p(x + half * 0.66, tall - 0.08, z), cam.p(x - half * 0.66, tall - 0.08, z)]
        self.c.fill(glass, "car", _jitter(rng, (45, 55, 65), 8), body_t - 35)
        for sx in (-1, 1):
            lamp = rect(sx * (half - 0.04), sx * (half - 0.3), 0.7, 0.86)
            self.c.fill(
                lamp, "car", (205, 25, 25), body_t + 15, LUMINOUS if self.night else DIFFUSE
            )
        self.c.fill(rect(-0.26, 0.26, 0.42, 0.54), "car", (215, 215, 200), body_t, REFLECTIVE)
        self.c.fill(rect(-half + 0.3, -half + 0.42, 0.2, 0.28), "car", (30, 30, 30), 240)

    def big_vehicle(self, x: float, z: float) -> None:
        """Rear view of a truck or a bus."""
        rng = self.rng
        kind = "bus" if self.chance(0.5) else "truck"
        half, tall = (1.25, 3.0) if kind == "bus" else (1.2, self.u(3.0, 3.6))
        paint = _jitter(
            rng, _pick(rng, ((200, 200, 195), (210, 120, 30), (40, 90, 160), (170, 30, 30))), 12
        )
        body_t = int(rng.integers(155, 172))

        rect = self._facing_rect(x, z)

        for sx in (-1, 1):
            self.c.fill(
                rect(sx * (half - 0.05), sx * (half - 0.45), 0, 0.55),
                kind,
                (25, 25, 25),
                body_t + 30,
            )
        self.c.fill(rect(-half, half, 0.4, tall), kind, paint, body_t)
        if kind == "bus":
            self.c.fill(rect(-half + 0.15, half - 0.15, 1.8, 2.7), kind, (40, 50, 60), body_t - 30)
        else:
            self.c.fill(
                rect(-0.02, 0.02, 0.5, tall - 0.1), kind, tuple(v // 2 for v in paint), body_t
            )
        for sx in (-1, 1):
            lamp = rect(sx * (half - 0.05), sx * (half - 0.3), 0.55, 0.8)
            self.c.fill(lamp, kind, (205, 25, 25), body_t + 15, LUMINOUS if self.night else DIFFUSE)

    def two_wheeler(self, x: float, z: float, motor: bool) -> None:
        """Side view of a bicycle or motorcycle crossing the image, usually with a rider."""
        cam, rng = self.cam, self.rng
        kind, facing = ("motorcycle" if motor else "bicycle"), (1 if self.chance(0.5) else -1)
        radius, base = (0.32, 0.72) if motor else (0.34, 0.52)
        frame = _jitter(rng, _pick(rng, CAR_PAINT), 15)
        warm = int(rng.integers(150, 170))
        for sx in (-1, 1):
            cx, cy = cam.p(x + sx * base, radius, z)
            r = cam.px(radius, z)
            self.c.fill(_ellipse(cx, cy, r, r), kind, (28, 28, 28), warm + 10)
            self.c.fill(_ellipse(cx, cy, r * 0.6, r * 0.6), kind, (75, 75, 78), warm)
        seat = (x - facing * 0.2, 0.95 if not motor else 0.85)
        bar = (x + facing * 0.42, 1.05)
        if motor:
            body = [cam.p(x - 0.65, 0.45, z), cam.p(x + 0.55, 0.45, z), cam.p(x + 0.6, 0.85, z)]
            body += [cam.p(x - 0.1, 0.95, z), cam.p(x - 0.7, 0.8, z)]
            self.c.fill(body, kind, frame, warm + 10)
            engine = [
                cam.p(x - 0.25, 0.25, z),
                cam.p(x + 0.2, 0.25, z),
                cam.p(x + 0.2, 0.55, z),
                cam.p(x - 0.25, 0.55, z),
            ]
            self.c.fill(engine, kind, (60, 60, 62), 238)
        else:
            hub_r, hub_f, crank = (
                (x - facing * base, radius),
                (x + facing * base, radius),
                (x - facing * 0.05, 0.32),
            )
            width = max(cam.px(0.09, z), 2.0)
            for p, q in (
                (hub_r, crank),
                (crank, seat),
                (seat, hub_r),
                (crank, bar),
                (bar, hub_f),
                (seat, bar),
            ):
                self.c.fill(_bar(cam.p(*p, z), cam.p(*q, z), width), kind, frame, warm)
        if self.chance(0.75 if not motor else 0.9):
            self.person(x, z - 0.05, ride=seat, facing=facing)

    # --- thermally neutral, coloured objects ----------------------------------

    def cone(self, x: float, z: float) -> None:
        cam = self.cam
        orange = _jitter(self.rng, (240, 105, 20), 10)
        base = [
            cam.p(x - 0.22, 0, z),
            cam.p(x + 0.22, 0, z),
            cam.p(x + 0.22, 0.05, z),
            cam.p(x - 0.22, 0.05, z),
        ]
        self.c.fill(base, "cone", (35, 35, 35), NEUTRAL)

        def ring(y0, y1):
            w0, w1 = 0.16 - 0.18 * y0, 0.16 - 0.18 * y1
            return [
                cam.p(x - w0, y0, z),
                cam.p(x + w0, y0, z),
                cam.p(x + w1, y1, z),
                cam.p(x - w1, y1, z),
            ]

        self.c.fill(ring(0.05, 0.72), "cone", orange, NEUTRAL, REFLECTIVE)
        self.c.fill(ring(0.35, 0.47), "cone", (240, 240, 240), NEUTRAL, REFLECTIVE)

    def bump(self, z: float) -> None:
        """Speed bump across the road, at least 10 px tall, yellow and black stripes."""
        cam, r = self.cam, self.road_half
        y_front = cam.p(0, 0, z)[1]
        natural = y_front - min(cam.p(0, 0.08, z + 0.25)[1], cam.p(0, 0, z + 0.5)[1])
        z_back = cam.z_of_row(y_front - max(10.0, natural))
        x, i = -r, 0
        while x < r:
            x1 = min(x + 0.45, r)
            color = (235, 190, 30) if i % 2 == 0 else (35, 35, 35)
            pts = [cam.p(x, 0, z), cam.p(x1, 0, z), cam.p(x1, 0, z_back), cam.p(x, 0, z_back)]
            self.c.fill(pts, "bump", color, NEUTRAL, REFLECTIVE if i % 2 == 0 else DIFFUSE)
            x, i = x1, i + 1

    def car_stops(self, side: int, z: float) -> None:
        """A row of parking wheel stops (long low blocks) across one half of the road."""
        cam = self.cam
        color = _jitter(self.rng, _pick(self.rng, ((230, 195, 40), (200, 200, 190))), 10)
        x = side * (self.road_half - 0.3)
        for _ in range(int(self.rng.integers(1, 4))):
            x0, x1 = x, x - side * 1.6
            lo, hi = min(x0, x1), max(x0, x1)
            hgt, depth = 0.15, 0.2
            pts = [cam.p(lo, 0, z), cam.p(hi, 0, z), cam.p(hi, hgt, z), cam.p(hi, hgt, z + depth)]
            pts += [cam.p(lo, hgt, z + depth), cam.p(lo, hgt, z)]
            self.c.fill(pts, "car_stop", color, NEUTRAL, REFLECTIVE)
            stripe = [
                cam.p(lo + 0.6, 0.0, z),
                cam.p(hi - 0.6, 0.0, z),
                cam.p(hi - 0.6, hgt, z),
                cam.p(lo + 0.6, hgt, z),
            ]
            self.c.fill(stripe, "car_stop", (35, 35, 35), NEUTRAL)
            x -= side * 2.4
            if abs(x) < 0.5:
                break

    def guardrail_segments(self, side: int) -> list[tuple[float, Callable[[], None]]]:
        """A W-beam guardrail on the kerb: (depth, draw) pieces so they interleave with objects."""
        cam, x = self.cam, side * (self.road_half + 0.1)
        rail = _jitter(self.rng, _pick(self.rng, ((200, 202, 205), (225, 190, 40))), 8)
        pieces, z = [], self.u(self.z_near, 9)
        z_end = self.u(30, 90)
        while z < z_end:
            z1 = z + max(2.0, 0.15 * z)

            def draw(z=z, z1=z1):
                beam = [cam.p(x, 0.85, z), cam.p(x, 0.85, z1), cam.p(x, 0.5, z1), cam.p(x, 0.5, z)]
                self.c.fill(beam, "guardrail", rail, NEUTRAL, REFLECTIVE)
                post = _bar(cam.p(x, 0, z), cam.p(x, 0.85, z), max(cam.px(0.1, z), 1.5))
                self.c.fill(post, "guardrail", tuple(v * 3 // 4 for v in rail), NEUTRAL)

            pieces.append((z, draw))
            z = z1
        return pieces

    # --- composition ------------------------------------------------------------

    def render(self) -> _Canvas:
        cam, r = self.cam, self.road_half
        self.sky_and_ground()
        self.road()
        if self.chance(0.4):
            self.bump(self.u(self.z_near + 0.7, 11))
        stop_side = 1 if self.chance(0.5) else -1
        if self.chance(0.4):
            self.car_stops(stop_side, self.u(self.z_near + 0.5, 9))
        open_side = _pick(self.rng, (-1, 1, 0, 0))
        for side in (-1, 1):
            if side == open_side:
                self.hedge(side)
            else:
                self.buildings(side)
        for z in sorted((self.u(5, 70) for _ in range(int(self.rng.integers(0, 6)))), reverse=True):
            self.tree(1 if self.chance(0.5) else -1, z)
        rail_side = (1 if self.chance(0.5) else -1) if self.chance(0.45) else 0
        street = []
        for side in (-1, 1):
            if side == rail_side:
                continue
            z = self.u(6, 30)
            while z < 90:
                street.append((z, self.street_lamp, side))
                z += self.u(20, 35)
            for _ in range(int(self.rng.integers(0, 2))):
                street.append((self.u(6, 40), self.sign, side))
            if self.chance(0.3):
                street.append((self.u(8, 40), self.traffic_light, side))
        for z, draw, side in sorted(street, key=lambda s: -s[0]):
            draw(side, z)
        self.c.ground_temp = self.c.temp.copy()

        objects: list[tuple[float, Callable[[], None]]] = []
        if rail_side:
            objects += self.guardrail_segments(rail_side)
        for _ in range(int(self.rng.integers(1, 6))):  # pedestrians
            z = self.u(self.z_near + 1.5, 38)
            if self.chance(0.3):
                x = self.u(-r + 0.5, r - 0.5)
            else:
                side = 1 if self.chance(0.5) else -1
                x = side * self.u(r + self.curb_w + 0.4, r + self.curb_w + self.walk_w - 0.3)
            objects.append((z, lambda x=x, z=z: self.person(x, z)))
        for _ in range(int(self.rng.integers(0, 5))):  # cars
            z = self.u(self.z_near + 2.5, 50)
            x = _pick(self.rng, (-r / 2, r / 2)) + self.u(-0.4, 0.4)
            objects.append((z, lambda x=x, z=z: self.car(x, z)))
        if self.chance(0.25):
            z, x = self.u(12, 50), _pick(self.rng, (-r / 2, r / 2))
            objects.append((z, lambda x=x, z=z: self.big_vehicle(x, z)))
        for _ in range(int(self.rng.integers(0, 3))):  # bicycles and motorcycles
            z, x = self.u(self.z_near + 2, 25), self.u(-r + 1, r - 1)
            motor = self.chance(0.35)
            objects.append((z, lambda x=x, z=z, m=motor: self.two_wheeler(x, z, m)))
        if self.chance(0.6):  # a row of cones, each at least ~22 px tall
            z_far = cam.f * 0.72 / 22
            z, x, step = (
                self.u(self.z_near + 0.8, max(self.z_near + 1, z_far - 3)),
                self.u(-r + 0.5, r - 0.5),
                self.u(1.5, 3),
            )
            for _ in range(int(self.rng.integers(2, 6))):
                if z > z_far:
                    break
                objects.append((z, lambda x=x, z=z: self.cone(x, z)))
                z += step
        for _z, draw in sorted(objects, key=lambda o: -o[0]):
            draw()
        return self.c


# ---------------------------------------------------------------- sensors -----


def _triangle_noise(rng: np.random.Generator, shape, amp: int) -> np.ndarray:
    """Integer noise in [-2 amp, 2 amp]: two random bytes mapped to +-amp and added."""
    lut = np.round(np.linspace(-amp, amp, 256)).astype(np.int16)
    pair = rng.integers(0, 256, (2, *shape), dtype=np.uint8)
    return lut[pair[0]] + lut[pair[1]]


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Integer box blur (edge-replicated) from shifted sums: exact on every machine."""
    k, h, w = 2 * r + 1, a.shape[0], a.shape[1]
    p = np.pad(a.astype(np.int32), r, mode="edge")
    rows = sum(p[i : i + h] for i in range(k))
    return sum(rows[:, i : i + w] for i in range(k)) // (k * k)


def _upsample(coarse: np.ndarray, factor: int, h: int, w: int) -> np.ndarray:
    """Integer bilinear upsampling of a coarse grid (smooth low-frequency texture)."""
    f = np.arange(factor, dtype=np.int32)
    ys = np.repeat(np.arange(coarse.shape[0] - 1), factor)[:h]
    fy = np.tile(f, coarse.shape[0])[:h, None]
    cols = (coarse[ys] * (factor - fy) + coarse[ys + 1] * fy) // factor
    xs = np.repeat(np.arange(coarse.shape[1] - 1), factor)[:w]
    fx = np.tile(f, coarse.shape[1])[None, :w]
    return (cols[:, xs] * (factor - fx) + cols[:, xs + 1] * fx) // factor


def _rgb_sensor(c: _Canvas, rng: np.random.Generator, night: bool) -> np.ndarray:
    h, w = c.h, c.w
    coarse = rng.integers(-6, 7, (h // 16 + 2, w // 16 + 2), dtype=np.int32)
    texture = _upsample(coarse, 16, h, w)
    if night:
        gains = np.array([int(rng.integers(26, 38)), int(rng.integers(90, 120)), 256], np.int32)
        gain, amp = gains[c.material], 6
    else:
        exposure = int(rng.integers(225, 275))
        rows = np.arange(h, dtype=np.int32)[:, None]
        gain, amp = exposure - 12 + rows * 24 // h, 3
        gain = np.broadcast_to(gain, (h, w))
    albedo = c.albedo.astype(np.int32) + texture[..., None]
    img = (albedo * gain[..., None]) >> 8
    img += _triangle_noise(rng, (h, w, 3), amp)
    return np.clip(img, 0, 255).astype(np.uint8)


def _thermal_sensor(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    h, w = c.h, c.w
    t = _box_blur(_box_blur(c.temp, 1), 1)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.int64)
    cy, cx = h // 2, w // 2
    t -= (
        8 * ((xs - cx) ** 2 * cy * cy + (ys - cy) ** 2 * cx * cx) // (2 * cx * cx * cy * cy)
    ).astype(np.int32)
    t += rng.integers(-3, 4, w, dtype=np.int32)[None, :]  # column fixed-pattern noise
    t += _triangle_noise(rng, (h, w), 2)
    return np.clip(t, 0, 255).astype(np.uint8)


SUN_WARMED_KINDS = ("building", "vegetation", "pole", "sign", "traffic_lamp", "guardrail")
SUN_BOOST = (50, 115)  # thermal counts added to a warmed surface: into the persons' range


def warm_surfaces(c: _Canvas, rng: np.random.Generator, chance: float, night: bool) -> None:
    """Sun-soaked (day) or heated (night, at a third of the chance) static surfaces.

    In the real 8-bit thermal images of msrs_dev a sunlit pole, wall or hedge is as bright
    as a pedestrian, so by day "warm" does not mean "person"; without such surfaces the
    synthetic scenes teach exactly that shortcut. Each connected region of a static kind
    (a pole, a facade, a crown) is warmed with probability ``chance`` by a random amount,
    brighter at its top (sunlit) than at its foot. Labels are untouched."""
    if night:
        chance /= 3.0
    for kind in SUN_WARMED_KINDS:
        count, regions = cv2.connectedComponents((c.kind == _KIND[kind]).astype(np.uint8), 8)
        for region in range(1, count):
            if rng.random() >= chance:
                continue
            ys, xs = np.nonzero(regions == region)
            top, foot = ys.min(), ys.max()
            boost = int(rng.integers(*SUN_BOOST))
            fade = boost - (boost // 3) * (ys - top) // max(1, foot - top)
            c.temp[ys, xs] = np.clip(c.temp[ys, xs] + fade, 0, 255).astype(np.uint8)


def render(
    seed: int, index: int, layout: str = "mfnet", warm_chance: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pair: (rgb (H,W,3) uint8 RGB, thermal (H,W) uint8, label (H,W) uint8 in the layout's ids).

    ``warm_chance`` > 0 warms static surfaces (``warm_surfaces``) from a random stream of
    its own, so the scene, its RGB image and its labels stay those of ``warm_chance`` 0."""
    spec = LAYOUTS[layout]
    rng = np.random.default_rng([seed, index])
    night = is_night(image_name(index))
    canvas = _Scene(rng, spec.height, spec.width, night).render()
    if warm_chance > 0:
        warm_surfaces(canvas, np.random.default_rng([seed, index, 1]), warm_chance, night)
    rgb = _rgb_sensor(canvas, rng, night)
    thermal = _thermal_sensor(canvas, rng)
    return rgb, thermal, spec.kind_lut[canvas.kind]


# ------------------------------------------------------------------ files -----


def _write_one(task: tuple[str, int, int, str, float]) -> tuple[int, str]:
    out, seed, index, layout, warm_chance = task
    cv2.setNumThreads(1)
    rgb, thermal, label = render(seed, index, layout, warm_chance)
    name, root = image_name(index), Path(out)
    if layout == "mfnet":
        write_mfnet_sample(root, name, rgb, thermal, label)
    else:
        split = "test" if split_of(index) == "test" else "train"  # FMB has train and test only
        write_png(root / split / "Visible" / f"{name}.png", np.ascontiguousarray(rgb[..., ::-1]))
        write_png(root / split / "Infrared" / f"{name}.png", thermal)
        write_png(root / split / "Label" / f"{name}.png", label)
    return index, name


def generate(
    out: str | Path,
    num: int,
    seed: int,
    layout: str = "mfnet",
    workers: int = 1,
    progress: bool = True,
    warm_chance: float = 0.0,
) -> dict[str, list[str]]:
    """Write ``num`` pairs under ``out``; returns {split: names}. Existing files are overwritten."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    if num < 1:
        raise ValueError(f"--num must be at least 1, got {num}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if not 0.0 <= warm_chance <= 1.0:
        raise ValueError(f"--warm-surfaces must be in [0, 1], got {warm_chance}")
    root = Path(out)
    subdirs = (
        ("images", "labels")
        if layout == "mfnet"
        else [f"{s}/{m}" for s in ("train", "test") for m in ("Visible", "Infrared", "Label")]
    )
    for sub in subdirs:
        (root / sub).mkdir(parents=True, exist_ok=True)
    tasks = [(str(root), int(seed), i, layout, float(warm_chance)) for i in range(num)]
    bar = tqdm(total=num, desc=f"fusionsam-synth {layout}", unit="pair", disable=not progress)
    if workers == 1:
        results = []
        for task in tasks:
            results.append(_write_one(task))
            bar.update()
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = []
            for result in pool.imap(_write_one, tasks, chunksize=4):
                results.append(result)
                bar.update()
    bar.close()
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for index, name in sorted(results):
        splits[split_of(index)].append(name)
    if layout == "fmb":  # FMB has no validation split: val joins train
        return {"train": sorted(splits["train"] + splits["val"]), "test": splits["test"]}
    lists = dict(splits)
    for condition in CONDITIONS:
        lists[f"test_{condition}"] = [n for n in splits["test"] if condition_of(n) == condition]
    for split, names in lists.items():
        (root / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return splits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="fusionsam-synth",
        description="Write procedural RGB-thermal road scenes in MFNet's or FMB's layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--num", required=True, type=int, help="number of image pairs")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="mfnet")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--warm-surfaces",
        type=float,
        default=0.0,
        metavar="P",
        help="chance that a static surface (pole, facade, tree) is sun-warmed into the "
        "persons' thermal range by day (P/3 at night); default 0",
    )
    args = parser.parse_args(argv)
    try:
        splits = generate(
            args.out,
            args.num,
            args.seed,
            args.layout,
            args.workers,
            not args.no_progress,
            args.warm_surfaces,
        )
    except ValueError as err:
        parser.error(str(err))
    counts = ", ".join(f"{s} {len(n)}" for s, n in splits.items())
    print(f"wrote {args.num} {args.layout} pairs to {args.out} ({counts})")


if __name__ == "__main__":
    main()
