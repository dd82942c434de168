"""Generated camera clips for the camera tests and the camera benchmark.

A street (sky, house fronts with brick texture and windows, pavement, road) drawn with a fixed
seed, a real photographed person walking along it (the upper body of scikit-image's
``astronaut.png``), sensor noise, and the ways a camera gets tampered with. All frames are RGB
``uint8`` arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from sensors.camera.sources import Frame

Box = tuple[float, float, float, float]


def street(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A street scene ``width`` x ``height`` (wide ones can be panned across)."""
    from skimage import data

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    horizon = int(height * 0.55)
    for y in range(horizon):  # sky
        img[y, :] = (150 + 60 * y // horizon, 180 + 40 * y // horizon, 230)
    brick = cv2.resize(data.brick(), (256, 256))
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
    from skimage import data

    body = data.astronaut()[10:512, 110:360]
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
        gen = np.random.default_rng(1234)
        bank = np.round(gen.normal(0.0, sigma, (16, *frame.shape))).astype(np.int16)
        _NOISE[key] = bank
    noise = bank[int(rng.integers(0, len(bank)))]
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@dataclass
class Clip:
    frames: list[np.ndarray]
    truth: list[Box | None]  # where the person is in each frame


def walk(
    width: int = 320,
    height: int = 240,
    *,
    before: int = 10,
    steps: int = 30,
    after: int = 60,
    person_height: int = 150,
    stand_at: float | None = None,
    stand: int = 0,
    seed: int = 1,
) -> Clip:
    """``before`` still frames, a person crossing the frame left to right in ``steps`` frames,
    then ``after`` still frames (all with sensor noise). With ``stand_at`` (a share of the walk,
    0..1) the person stops there for ``stand`` frames."""
    rng = np.random.default_rng(seed)
    bg = street(width, height)
    sprite = person(person_height)
    sw = sprite.shape[1]
    frames: list[np.ndarray] = []
    truth: list[Box | None] = []
    for _ in range(before):
        frames.append(noisy(bg, rng))
        truth.append(None)
    y = height - person_height - height // 20
    path = [i / max(1, steps - 1) for i in range(steps)]
    if stand_at is not None:
        stop = min(range(steps), key=lambda i: abs(path[i] - stand_at))
        path[stop:stop] = [path[stop]] * stand
    for share in path:
        x = round(-sw * 0.5 + width * share)
        f = bg.copy()
        truth.append(paste(f, sprite, x, y))
        frames.append(noisy(f, rng))
    for _ in range(after):
        frames.append(noisy(bg, rng))
        truth.append(None)
    return Clip(frames, truth)


def still(width: int = 320, height: int = 240, n: int = 50, seed: int = 2) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    bg = street(width, height)
    for _ in range(n):
        yield noisy(bg, rng)


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


def write_avi(path: str, frames: list[np.ndarray], fps: float = 5.0) -> None:
    """An MJPG .avi file of RGB frames (OpenCV's writer)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def write_jpegs(folder: str, frames: list[np.ndarray]) -> None:
    """``frame00000.jpg``... in ``folder``."""
    for i, f in enumerate(frames):
        cv2.imwrite(f"{folder}/frame{i:05d}.jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


class FakeClock:
    """Monotonic seconds that move only when something sleeps; ``at(t, action)`` runs
    ``action`` once the clock reaches ``t`` (a file deleted, a server stopped...)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.start = start
        self._actions: list[tuple[float, Callable[[], object]]] = []

    def __call__(self) -> float:
        return self.t

    def at(self, after_s: float, action: Callable[[], object]) -> None:
        self._actions.append((self.start + after_s, action))
        self._actions.sort(key=lambda a: a[0])

    def sleep(self, dt: float) -> None:
        self.t += max(dt, 1e-3)
        while self._actions and self._actions[0][0] <= self.t:
            _, action = self._actions.pop(0)
            action()


class ListSource:
    """An on-demand ``FrameSource`` over frames in memory (what a virtual camera looks like):
    one frame per read, timed by ``clock``; ``EndOfStream`` after the last."""

    live = False

    def __init__(self, frames: Iterable[np.ndarray], clock: Callable[[], float]) -> None:
        self.frames = iter(frames)
        self.clock = clock
        self.description = "frames in memory"
        self.opens = 0

    def open(self) -> None:
        self.opens += 1

    def read(self) -> Frame | None:
        from sensors.camera.sources import EndOfStream

        try:
            image = next(self.frames)
        except StopIteration:
            raise EndOfStream("end of the frames") from None
        return Frame(image=image, ts=self.clock())

    def close(self) -> None:
        pass
