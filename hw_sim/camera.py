"""Virtual cameras: a generated street instead of a lens, driven by ``tuquan sim camera``.

A ``VirtualCamera`` is a ``sensors.camera.sources.FrameSource`` like the picamera2, OpenCV and
file sources: the hub's real pipeline, detector, tamper check and snapshot store run on it
unchanged. It is an on-demand source (``live = False``): each ``read`` draws the picture of *now*
at the pipeline's detect rate, with sensor noise, so nothing moves unless something happens.

The scene (``hw_sim.scene``) is a street three views wide; the camera looks at its left part.
What can happen to it, each a control request (``{"cmd": "camera", "name": ..., "action": ...}``)
and a ``tuquan sim camera NAME ACTION`` command:

* ``walk`` (``seconds``, default 6): a photographed person (scikit-image's ``astronaut.png``,
  which the detector recognises) walks in at the left edge, across the view and out at the
  right, feet on the pavement at the bottom of the picture;
* ``cover`` / ``uncover``: a hand over the lens (a dark, flat picture);
* ``defocus`` / ``focus``: the lens sprayed or turned out of focus (a strong blur);
* ``turn`` / ``straighten``: the camera pushed sideways, to another part of the street;
* ``drop`` / ``restore``: the stream goes away (opening and reading fail) and comes back.

The picture is ``width`` x ``height`` (the camera's settings, default 320 x 240); the person is
five eighths of the height tall, as a person a few metres from a gate camera.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from hw_sim.board import SimError
from hw_sim.scene import PlainRandom, SensorNoise, paste, person, sample_picture, street
from sensors.camera.sources import Frame, SourceError

DEFAULT_SIZE = (320, 240)
DEFAULT_WALK_S = 6.0
MAX_WALK_S = 600.0
PERSON_SHARE = 0.625  # the person's height over the picture's
ACTIONS = (
    "walk",
    "cover",
    "uncover",
    "defocus",
    "focus",
    "turn",
    "straighten",
    "drop",
    "restore",
)
_STATES = {  # action: (state, value)
    "cover": ("covered", True),
    "uncover": ("covered", False),
    "defocus": ("defocused", True),
    "focus": ("defocused", False),
    "turn": ("turned", True),
    "straighten": ("turned", False),
    "drop": ("dropped", True),
    "restore": ("dropped", False),
}


@dataclass
class _Walk:
    started: float
    seconds: float


class VirtualCamera:
    """A simulated camera (``FrameSource``). ``read`` runs on the camera's thread; the actions
    on control-socket threads."""

    live = False

    def __init__(
        self,
        name: str,
        width: int = DEFAULT_SIZE[0],
        height: int = DEFAULT_SIZE[1],
        *,
        seed: int = 7,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (32 <= width <= 4096 and 32 <= height <= 4096):
            raise ValueError("a virtual camera is 32 to 4096 pixels wide and high")
        self.name = name
        self.width = width
        self.height = height
        self.seed = seed
        self.clock = clock
        self.description = f"virtual:{name}"
        self.covered = False
        self.defocused = False
        self.turned = False
        self.dropped = False
        self.is_open = False
        self.frames = 0
        self.walks = 0
        self._walk: _Walk | None = None
        self._lock = threading.Lock()
        self._wide: np.ndarray | None = None
        self._sprite: np.ndarray | None = None
        self._noise: SensorNoise | None = None

    # -- FrameSource (the camera's thread) ------------------------------------------------

    def open(self) -> None:
        if self.dropped:
            raise SourceError(f"{self.description}: no answer (the stream is down)")
        if self._wide is None:  # drawn once, at the first open
            wide = (self.width * 3, self.height + self.height // 4)
            self._wide = street(*wide, rng=PlainRandom(self.seed))
            self._sprite = person(round(self.height * PERSON_SHARE))
            self._noise = SensorNoise((self.height, self.width, 3), seed=self.seed)
            sample_picture.cache_clear()  # the decoded photographs (1 MB) are drawn in now
            release_free_memory()
        self.is_open = True

    def read(self) -> Frame | None:
        if not self.is_open or self._wide is None or self._noise is None:
            raise SourceError(f"{self.description} is not open")
        with self._lock:
            if self.dropped:
                raise SourceError(f"{self.description}: the stream dropped")
            covered, defocused, turned = self.covered, self.defocused, self.turned
            walk = self._walk
        now = self.clock()
        w, h = self.width, self.height
        x0 = w + w // 4 if turned else 0
        y0 = self.height // 4
        image = self._wide[y0 : y0 + h, x0 : x0 + w].copy()
        if walk is not None:
            share = (now - walk.started) / walk.seconds
            if share >= 1.0:
                with self._lock:
                    if self._walk is walk:
                        self._walk = None
            else:
                assert self._sprite is not None
                sw = self._sprite.shape[1]
                x = round(-sw + (w + sw) * max(0.0, share))
                paste(image, self._sprite, x, h - self._sprite.shape[0] - h // 20)
        if covered:
            image = self._noise(np.full_like(image, 12))
        elif defocused:
            image = self._noise(cv2.GaussianBlur(image, (0, 0), 6))
        else:
            image = self._noise(image)
        self.frames += 1
        return Frame(image=image, ts=now)

    def close(self) -> None:
        self.is_open = False

    # -- what happens to it (control-socket threads) --------------------------------------

    def act(self, action: str, seconds: float | None = None) -> dict[str, Any]:
        """Carry out one action; raises SimError for an unknown one or bad seconds."""
        if action == "walk":
            walk_s = DEFAULT_WALK_S if seconds is None else float(seconds)
            if not 0.5 <= walk_s <= MAX_WALK_S:
                raise SimError(f"walk seconds must be 0.5 to {MAX_WALK_S:.0f}, got {walk_s:g}")
            with self._lock:
                self._walk = _Walk(self.clock(), walk_s)
                self.walks += 1
            return {"walk_s": walk_s}
        if action not in _STATES:
            raise SimError(f"unknown camera action {action!r} (actions: {', '.join(ACTIONS)})")
        state, value = _STATES[action]
        with self._lock:
            setattr(self, state, value)
        return {state: value}

    def status(self) -> dict[str, Any]:
        with self._lock:
            walk = self._walk
            left = None
            if walk is not None:
                left = round(max(0.0, walk.started + walk.seconds - self.clock()), 1)
            return {
                "source": self.description,
                "size": [self.width, self.height],
                "open": self.is_open,
                "covered": self.covered,
                "defocused": self.defocused,
                "turned": self.turned,
                "dropped": self.dropped,
                "walking": left is not None and left > 0,
                "walk_left_s": left,
                "walks": self.walks,
                "frames": self.frames,
            }


def release_free_memory() -> None:
    """Hand the memory freed after drawing a scene back to the system (glibc's ``malloc_trim``):
    decoding the sample pictures and drawing the street leave a few MB of free heap that the
    process would otherwise keep. Does nothing where there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def simulated(settings: Any) -> bool:
    """Whether a camera runs on a virtual camera in simulation: every camera except one whose
    ``source`` is a video file or a picture folder that exists on this machine."""
    import os

    return not (settings.source_kind in ("file", "images") and os.path.exists(settings.source))


def virtual_cameras(cameras: Any) -> dict[str, VirtualCamera]:
    """A virtual camera for each simulated camera of a config's ``cameras`` (by name)."""
    out: dict[str, VirtualCamera] = {}
    for index, camera in enumerate(cameras):
        if simulated(camera):
            out[camera.name] = VirtualCamera(
                camera.name,
                camera.width or DEFAULT_SIZE[0],
                camera.height or DEFAULT_SIZE[1],
                seed=7 + index,
            )
    return out
