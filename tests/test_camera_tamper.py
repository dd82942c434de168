"""Camera tamper: covered, defocused and turned away each give one camera_tamper event and one
restore; short or partial disturbances and the fall of night give none.

Clips are a generated street seen by a camera with sensor noise, run at 5 fps through the real
pipeline on a fake clock (so 30 s of video take well under a second).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest
from camera_scenes import FakeClock, ListSource, covered, defocused, noisy, street, view

from core.events import KINDS, Event
from sensors.camera.pipeline import CameraPipeline
from settings.cameras import CameraConfig, TamperConfig

FPS = 5
W, H = 320, 240
HOME = (0, 60)  # where the camera looks in the wide street


@pytest.fixture(scope="module")
def wide() -> np.ndarray:
    return street(960, 300)


def run(frames: Iterator[np.ndarray], tamper: TamperConfig | None = None) -> list[Event]:
    """The frames through a camera that has no detector; the events it reported."""
    clock = FakeClock()
    events: list[Event] = []
    settings = CameraConfig(
        name="cam-1",
        source="virtual",
        zone="market-gate",
        detect_fps=FPS,
        tamper=tamper or TamperConfig(),
    )
    pipe = CameraPipeline(
        settings,
        emit=events.append,
        source=ListSource(frames, clock),
        clock=clock,
        sleep=clock.sleep,
    )
    pipe.run()
    assert pipe.ended and pipe.stats.errors == 0
    return events


def clip(*parts: tuple[float, Callable[[np.random.Generator], np.ndarray]]) -> Iterator[np.ndarray]:
    """(seconds, frame maker) parts played one after the other at FPS."""
    rng = np.random.default_rng(11)
    for seconds, make in parts:
        for _ in range(round(seconds * FPS)):
            yield make(rng)


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.kind, e.qualifier) for e in events]


def normal(wide: np.ndarray) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: view(wide, W, H, *HOME, rng)


def test_camera_tamper_is_a_trouble_kind() -> None:
    assert KINDS["camera_tamper"].cid == 383 and KINDS["camera_offline"].cid == 380
    assert KINDS["camera_tamper"].priority == KINDS["tamper"].priority


@pytest.mark.parametrize(
    ("reason", "tampered"),
    [
        ("covered", lambda wide: lambda rng: covered(view(wide, W, H, *HOME, rng), rng)),
        ("defocused", lambda wide: lambda rng: defocused(view(wide, W, H, *HOME, rng), rng)),
        ("turned_away", lambda wide: lambda rng: view(wide, W, H, 400, 60, rng)),  # sideways
        ("turned_away", lambda wide: lambda rng: view(wide, W, H, 0, 0, rng)),  # pushed up
    ],
    ids=["covered", "defocused", "turned-sideways", "turned-up"],
)
def test_tampering_is_one_event_and_one_restore(
    wide: np.ndarray, reason: str, tampered: Callable[[np.ndarray], Callable[..., np.ndarray]]
) -> None:
    events = run(clip((5, normal(wide)), (15, tampered(wide)), (15, normal(wide))))
    assert kinds(events) == [("camera_tamper", "E"), ("camera_tamper", "R")]
    start, end = events
    assert start.data["reason"] == reason and end.data["reason"] == reason
    assert start.zone == "market-gate" and start.source == "cam-1"
    assert start.data["camera"] == "cam-1"


def test_a_short_cover_is_not_tamper(wide: np.ndarray) -> None:
    hand = lambda rng: covered(view(wide, W, H, *HOME, rng), rng)  # noqa: E731
    events = run(clip((5, normal(wide)), (3, hand), (10, normal(wide))))
    assert events == []


def test_a_truck_parked_across_half_the_view_is_not_tamper(wide: np.ndarray) -> None:
    def truck(rng: np.random.Generator) -> np.ndarray:
        f = wide[HOME[1] : HOME[1] + H, HOME[0] : HOME[0] + W].copy()
        cv2.rectangle(f, (0, 40), (W // 2, H), (200, 200, 205), -1)  # a lorry's side
        cv2.rectangle(f, (10, 60), (W // 2 - 10, 150), (30, 90, 160), -1)
        cv2.putText(f, "FRESH FISH", (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (250,) * 3, 2)
        return noisy(f, rng)

    assert run(clip((5, normal(wide)), (20, truck), (10, normal(wide)))) == []


def test_nightfall_is_not_tamper(wide: np.ndarray) -> None:
    """Light falling to a quarter over a minute, with the same sensor noise: the reference
    follows slowly, and nothing is reported."""
    n = 60 * FPS

    def dusk() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(5)
        base = wide[HOME[1] : HOME[1] + H, HOME[0] : HOME[0] + W].astype(np.float32)
        for i in range(n + 10 * FPS):
            gain = 1.0 - 0.75 * min(i, n) / n
            yield noisy((base * gain).astype(np.uint8), rng, 2.0)

    assert run(dusk()) == []


def test_a_tampered_view_is_never_learned(wide: np.ndarray) -> None:
    """Even with a reference that adapts within seconds, a camera turned away for a minute stays
    reported until it points home again."""
    quick = TamperConfig(adapt_s=5.0)
    away = lambda rng: view(wide, W, H, 400, 60, rng)  # noqa: E731
    events = run(clip((5, normal(wide)), (60, away), (10, normal(wide))), quick)
    assert kinds(events) == [("camera_tamper", "E"), ("camera_tamper", "R")]
    assert events[0].data["reason"] == "turned_away"


def test_covered_from_the_start_is_reported(wide: np.ndarray) -> None:
    hand = lambda rng: covered(view(wide, W, H, *HOME, rng), rng)  # noqa: E731
    events = run(clip((10, hand), (10, normal(wide))))
    assert kinds(events) == [("camera_tamper", "E"), ("camera_tamper", "R")]
    assert events[0].data["reason"] == "covered"


def test_tamper_can_be_switched_off(wide: np.ndarray) -> None:
    hand = lambda rng: covered(view(wide, W, H, *HOME, rng), rng)  # noqa: E731
    events = run(clip((5, normal(wide)), (10, hand)), TamperConfig(enabled=False))
    assert events == []
