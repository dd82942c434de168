"""Generated camera clips for the camera tests and the camera benchmark.

The scene itself (a street drawn with a fixed seed, the photographed person from scikit-image's
``astronaut.png``, sensor noise, a covered or defocused lens, a view of a wider scene) is
``hw_sim.scene``, which the simulator's virtual cameras draw too; it is re-exported here. This
module adds clips (a person walking through, a still street), files of them, a fake clock and a
frame source over frames in memory. All frames are RGB ``uint8`` arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from hw_sim.scene import Box, covered, defocused, noisy, paste, person, street, view
from sensors.camera.sources import Frame

__all__ = [
    "Box",
    "Clip",
    "FakeClock",
    "ListSource",
    "covered",
    "defocused",
    "noisy",
    "paste",
    "person",
    "still",
    "street",
    "view",
    "walk",
    "write_avi",
    "write_jpegs",
]


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
