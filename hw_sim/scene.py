"""Generated camera scenes: the simulator's virtual cameras and the camera tests draw them.

A street (sky, house fronts with brick texture and windows, pavement, road, lamp posts, trees and
parked cars) drawn with a fixed seed, a real photographed person to walk along it (the upper body
of scikit-image's ``astronaut.png``, which the person detector recognises), sensor noise, and the
ways a camera gets tampered with. All frames are RGB ``uint8`` arrays.

Needs numpy, OpenCV and scikit-image's sample pictures (the ``sim`` extra:
``pip install -e '.[sim]'``). The pictures are read from the package's data folder with OpenCV,
without importing scikit-image itself (which would bring SciPy into a hub's memory); they are the
same arrays ``skimage.data.astronaut()`` and ``skimage.data.brick()`` return.
"""

from __future__ import annotations

import functools
import importlib.util
import random
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

Box = tuple[float, float, float, float]


class Draws(Protocol):
    """What ``street`` draws its layout with: numpy's ``Generator.integers``."""

    def integers(self, low: int, high: int, size: int | None = None) -> Any: ...


class PlainRandom:
    """``integers`` as numpy's ``Generator`` has it, from the standard library's ``random``.

    The simulator draws its streets with this, so a simulated hub never loads numpy.random
    (6 MB the hub itself does not need); the camera tests keep numpy's generator.
    """

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def integers(self, low: int, high: int, size: int | None = None) -> Any:
        if size is None:
            return self._random.randrange(low, high)
        return np.array([self._random.randrange(low, high) for _ in range(size)])


class SensorNoise:
    """Sensor noise for a live picture of one size, without numpy.random: one noise pattern
    ``PATTERN_STEP`` x (``patterns`` - 1) rows taller than the picture, drawn once with OpenCV's
    generator; each frame takes the picture's height of it from one of ``patterns`` row offsets
    picked at random (every pixel then gets another draw, at a quarter of the memory of a
    pattern per offset), added in place with saturating ``uint8`` arithmetic."""

    PATTERN_STEP = 8  # rows between two offsets

    def __init__(
        self, shape: tuple[int, ...], sigma: float = 2.0, patterns: int = 4, seed: int = 1234
    ) -> None:
        self._pick = random.Random(seed)
        self._height = shape[0]
        self._offsets = [n * self.PATTERN_STEP for n in range(max(1, patterns))]
        tall = (shape[0] + self._offsets[-1], *shape[1:])
        cv2.setRNGSeed(seed)
        noise = np.empty((int(np.prod(tall)), 1), np.int16)  # OpenCV rounds the draws
        cv2.randn(noise, np.array([0.0]), np.array([sigma]))
        self._up = np.clip(noise, 0, 255).astype(np.uint8).reshape(tall)
        self._down = np.clip(-noise, 0, 255).astype(np.uint8).reshape(tall)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` with noise added (in place; it is returned)."""
        top = self._pick.choice(self._offsets)
        rows = slice(top, top + self._height)
        cv2.add(frame, self._up[rows], dst=frame)
        cv2.subtract(frame, self._down[rows], dst=frame)
        return frame


@functools.cache
def sample_picture(name: str) -> np.ndarray:
    """One of scikit-image's sample pictures (``astronaut.png``: RGB; ``brick.png``: gray)."""
    spec = importlib.util.find_spec("skimage")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    if not folders:
        raise RuntimeError(
            "scikit-image is not installed: the simulated cameras draw its sample pictures "
            "(pip install -e '.[sim]')"
        )
    path = Path(folders[0]) / "data" / name
    picture = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if picture is None:
        raise RuntimeError(f"cannot read {path}: reinstall scikit-image")
    if picture.ndim == 3:
        picture = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
    picture.setflags(write=False)
    return picture


def street(width: int, height: int, seed: int = 7, rng: Draws | None = None) -> np.ndarray:
    """A street scene ``width`` x ``height`` (wide ones can be panned across), laid out by
    ``rng`` (default: numpy's generator seeded with ``seed``)."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    horizon = int(height * 0.55)
    for y in range(horizon):  # sky
        img[y, :] = (150 + 60 * y // horizon, 180 + 40 * y // horizon, 230)
    brick = cv2.resize(sample_picture("brick.png"), (256, 256))
    x = 0
    while x < width:  # house fronts
        w = int(rng.integers(width // 8, width // 4))
        top = int(rng.integers(height // 10, horizon - height // 8))
        tint = rng.integers(90, 200, 3)
        tile = np.tile(brick, (height // 256 + 1, w // 256 + 1))[: horizon - top, :w]
        front = (tile[..., None].astype(np.float32) / 255.0 * 0.6 + 0.4) * tint
        img[top:horizon, x : x + w] = front[:, : min(w, width - x)].astype(np.uint8)
        for wy in range(top + 8, horizon - 14, 22):  # windows
            for wx in range(x + 6, x + w - 12, 18):
                shade = int(rng.integers(20, 90))
                cv2.rectangle(img, (wx, wy), (wx + 9, wy + 12), (shade, shade, shade + 20), -1)
                cv2.rectangle(img, (wx, wy), (wx + 9, wy + 12), (230, 230, 220), 1)
        x += w
    img[horizon : horizon + height // 12] = (150, 150, 140)  # pavement
    img[horizon + height // 12 :] = (70, 70, 75)  # road
    kerb, lane = horizon + height // 12, height * 5 // 6
    rx = 0
    while rx < width:  # kerb stones and road markings, uneven as they are
        dash = int(rng.integers(8, 30))
        cv2.line(img, (rx, kerb), (rx + dash, kerb), (210, 210, 210))
        cv2.line(img, (rx, lane), (rx + dash, lane), (230, 230, 230), 2)
        rx += dash + int(rng.integers(10, 40))
    px = int(rng.integers(0, width // 6))
    while px < width:  # lamp posts, trees and parked cars at random places
        what = int(rng.integers(0, 3))
        if what == 0:
            cv2.line(img, (px, kerb), (px, horizon - height // 3), (40, 40, 40), 2)
        elif what == 1:
            r = int(rng.integers(height // 14, height // 8))
            cv2.line(img, (px, kerb), (px, horizon - r), (60, 45, 30), 3)
            green = (int(rng.integers(30, 80)), int(rng.integers(100, 160)), 40)
            cv2.circle(img, (px, horizon - r), r, green, -1)
        else:
            cw, ch = int(rng.integers(40, 70)), int(rng.integers(18, 26))
            colour = tuple(int(c) for c in rng.integers(30, 220, 3))
            top = kerb + 4
            cv2.rectangle(img, (px, top), (px + cw, top + ch), colour, -1)
            cv2.rectangle(img, (px + 8, top - 10), (px + cw - 10, top), colour, -1)
            for wx in (px + 10, px + cw - 10):
                cv2.circle(img, (wx, top + ch), 6, (20, 20, 20), -1)
        px += int(rng.integers(width // 12, width // 4))
    return img


def person(height: int) -> np.ndarray:
    """The photographed person (astronaut.png, upper body) ``height`` pixels tall."""
    body = sample_picture("astronaut.png")[10:512, 110:360]
    width = max(1, round(body.shape[1] * height / body.shape[0]))
    return cv2.resize(body, (width, height), interpolation=cv2.INTER_AREA)


def paste(frame: np.ndarray, sprite: np.ndarray, x: int, y: int) -> Box | None:
    """Put ``sprite`` with its top left at (x, y), cut at the edges; its box in the frame."""
    h, w = sprite.shape[:2]
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
    if x1 <= x0 or y1 <= y0:
        return None
    frame[y0:y1, x0:x1] = sprite[y0 - y : y1 - y, x0 - x : x1 - x]
    return (float(x0), float(y0), float(x1), float(y1))


_NOISE: dict[tuple[tuple[int, ...], float], np.ndarray] = {}


def noisy(frame: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    """Sensor noise: one of 16 stored noise patterns for this size, picked by ``rng``."""
    key = (frame.shape, sigma)
    bank = _NOISE.get(key)
    if bank is None:
        # One pattern at a time, kept as int8: the same values as drawing all 16 at once, with
        # a few MB at hand instead of 60 (a simulated hub's memory is measured).
        gen = np.random.default_rng(1234)
        bank = np.empty((16, *frame.shape), np.int8)
        for i in range(len(bank)):
            pattern = np.round(gen.normal(0.0, sigma, frame.shape))
            bank[i] = np.clip(pattern, -127, 127)
        _NOISE[key] = bank
    noise = bank[int(rng.integers(0, len(bank)))]
    out: np.ndarray = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return out


# -- tampering --------------------------------------------------------------------------------


def covered(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A hand or cloth over the lens: nearly black, a little noise."""
    dark = np.full_like(frame, 12)
    return noisy(dark, rng, 1.5)


def defocused(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lens sprayed or turned out of focus."""
    return noisy(cv2.GaussianBlur(frame, (0, 0), 6), rng)


def view(
    wide: np.ndarray, width: int, height: int, x: int, y: int, rng: np.random.Generator
) -> np.ndarray:
    """The ``width`` x ``height`` window of a large scene at (x, y): where a camera points."""
    return noisy(np.ascontiguousarray(wide[y : y + height, x : x + width]), rng)
