"""The detector evaluation set: photographs that packages ship, how a camera far away sees them,
and clips of them crossing a yard, played through the file source.

People: scikit-image's astronaut.png and camera.png (the cameraman, grey) and matplotlib's
grace_hopper.jpg. Person-free: scikit-image's chelsea.png (a cat), coffee.png (a cup),
motorcycle_left.png (a motorcycle), horse.png (a horse, a silhouette: no package here ships a
horse photograph), rocket.jpg, brick.png and retina.jpg. The background is scikit-image's
gravel.png, a gravel yard, scaled to 640x480.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import matplotlib.cbook
import numpy as np
from camera_scenes import FakeClock

from core.events import Event
from hw_sim.scene import noisy, paste, sample_picture
from sensors.camera.pipeline import CameraPipeline
from settings.cameras import CameraConfig

WIDTH, HEIGHT = 640, 480
PEOPLE = ("astronaut", "cameraman", "grace_hopper")
ANIMALS_AND_OBJECTS = ("cat", "horse", "cup", "motorcycle")
PERSON_FREE = (*ANIMALS_AND_OBJECTS, "rocket", "brick", "retina")
_FILES = {
    "astronaut": "astronaut.png",
    "cameraman": "camera.png",
    "cat": "chelsea.png",
    "cup": "coffee.png",
    "motorcycle": "motorcycle_left.png",
    "horse": "horse.png",
    "rocket": "rocket.jpg",
    "brick": "brick.png",
    "retina": "retina.jpg",
}


def photo(name: str) -> np.ndarray:
    """One photograph of the set as HxWx3 uint8 RGB."""
    if name == "grace_hopper":
        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    else:
        image = np.array(sample_picture(_FILES[name]))
    if image.dtype == bool or image.max() <= 1:  # the horse silhouette: 0/1
        image = (image.astype(np.uint8) * 255) if image.max() <= 1 else image
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8))


def gray_dark(image: np.ndarray, gain: float = 0.35) -> np.ndarray:
    """Night through an infrared-cut camera: no colour, a third of the light."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * gain
    return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)


def yard() -> np.ndarray:
    """The background: the gravel yard, 640x480."""
    gravel = photo_gray("gravel.png")
    return np.repeat(cv2.resize(gravel, (WIDTH, HEIGHT))[:, :, None], 3, axis=2)


def photo_gray(file: str) -> np.ndarray:
    image = np.array(sample_picture(file))
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def sprite(image: np.ndarray, share: float) -> np.ndarray:
    """``image`` scaled to ``share`` of the frame's height."""
    height = max(8, round(HEIGHT * share))
    width = max(8, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def pasted(image: np.ndarray, share: float) -> tuple[np.ndarray, tuple[float, ...]]:
    """``image`` at ``share`` of the height, standing on the yard right of centre; its box."""
    frame = yard()
    s = sprite(image, share)
    box = paste(frame, s, WIDTH * 3 // 5, HEIGHT * 3 // 4 - s.shape[0])
    assert box is not None
    return frame, box


@dataclass
class Crossing:
    frames: list[np.ndarray]
    truth: list[tuple[float, float, float, float] | None]


def crossing(
    image: np.ndarray, share: float = 0.15, *, before: int = 8, steps: int = 40, after: int = 8
) -> Crossing:
    """Still yard, ``image`` at ``share`` of the frame height crossing it left to right in
    ``steps`` frames, still yard again; sensor noise on every frame."""
    rng = np.random.default_rng(3)
    bg = yard()
    s = sprite(image, share)
    y = HEIGHT * 3 // 4 - s.shape[0]
    frames, truth = [], []
    for _ in range(before):
        frames.append(noisy(bg, rng))
        truth.append(None)
    for i in range(steps):
        f = bg.copy()
        x = round(-s.shape[1] / 2 + (WIDTH * i) / max(1, steps - 1))
        truth.append(paste(f, s, x, y))
        frames.append(noisy(f, rng))
    for _ in range(after):
        frames.append(noisy(bg, rng))
        truth.append(None)
    return Crossing(frames, truth)


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> Path:
    """An MJPG .avi (what a camera's recording would be), for the file source."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "full": lambda im: im,
    "gray+dark": gray_dark,
    "15 %": lambda im: pasted(im, 0.15)[0],
    "8 %": lambda im: pasted(im, 0.08)[0],
}


def play(path: Path, settings: CameraConfig, detector: Any) -> list[Event]:
    """The person incidents a camera with ``settings`` makes of the clip at ``path`` (its file
    source, on a fake clock, to the end)."""
    clock = FakeClock()
    events: list[Event] = []
    pipe = CameraPipeline(
        settings, emit=events.append, detector=detector, clock=clock, sleep=clock.sleep
    )
    pipe.run()
    assert pipe.ended and pipe.stats.errors == 0, pipe.stats
    return [e for e in events if e.kind == "person" and e.qualifier == "E"]
