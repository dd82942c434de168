"""The simulator's virtual camera: what each action does to the picture, the control requests,
``tuquan sim camera``, and end to end, ``tuquan run --sim`` with a person walking past cam-1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from hw_sim.board import SimError
from hw_sim.camera import VirtualCamera, virtual_cameras
from hw_sim.control import request
from hw_sim.simulator import load_sim_config
from sensors.camera.sources import FrameSource, SourceError
from testkit.hubs import EVENTS, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

TUQUAN = [sys.executable, "-m", "tuquan"]
REPO = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cam(clock: Clock) -> VirtualCamera:
    camera = VirtualCamera("cam-1", clock=clock)
    camera.open()
    return camera


def frame(cam: VirtualCamera) -> np.ndarray:
    got = cam.read()
    assert got is not None and got.image.shape == (240, 320, 3) and got.image.dtype == np.uint8
    return got.image


def sharpness(image: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def changed(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels that differ by more than sensor noise."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
    return float((diff > 30).mean())


def test_a_virtual_camera_is_a_frame_source_and_the_default_hub_has_one() -> None:
    cams = virtual_cameras(load_sim_config().cameras)
    assert list(cams) == ["cam-1"]
    assert isinstance(cams["cam-1"], FrameSource) and cams["cam-1"].live is False
    assert (cams["cam-1"].width, cams["cam-1"].height) == (320, 240)


def test_a_still_street_changes_only_by_sensor_noise(cam: VirtualCamera) -> None:
    assert changed(frame(cam), frame(cam)) < 0.001


def test_a_walk_crosses_the_view_and_ends(cam: VirtualCamera, clock: Clock) -> None:
    street = frame(cam)
    cam.act("walk", seconds=4.0)
    crossing = []
    for t in (0.0, 1.0, 2.0, 3.0):
        clock.t = 100.0 + t
        crossing.append(frame(cam))
    assert changed(crossing[0], street) < 0.001  # the person is just outside the left edge
    middle = crossing[2]
    assert changed(middle, street) > 0.05
    rows, cols = np.nonzero(np.abs(middle.astype(int) - street.astype(int)).max(axis=2) > 30)
    assert rows.max() > 200 and 100 < cols.mean() < 220  # feet low in the picture, mid-way
    assert cam.status()["walking"] is True
    clock.t = 104.5
    assert changed(frame(cam), street) < 0.001
    assert cam.status()["walking"] is False and cam.status()["walks"] == 1


def test_the_detector_sees_the_walking_person() -> None:
    from sensors.detection import load_detector

    clock = Clock()
    cam = VirtualCamera("cam-1", clock=clock)
    cam.open()
    cam.act("walk", seconds=4.0)
    clock.t += 2.0
    found = load_detector().detect(frame(cam))
    assert [d.label for d in found] == ["person"] and found[0].score > 0.7
    x0, _, x1, y1 = found[0].box
    assert x0 < 160 < x1 and y1 > 180


def test_cover_defocus_and_turn_change_the_picture_and_are_undone(cam: VirtualCamera) -> None:
    home = frame(cam)
    cam.act("cover")
    dark = frame(cam)
    assert dark.mean() < 20 and dark.std() < 5
    cam.act("uncover")
    cam.act("defocus")
    assert sharpness(frame(cam)) < sharpness(home) / 3
    cam.act("focus")
    cam.act("turn")
    assert changed(frame(cam), home) > 0.3
    cam.act("straighten")
    assert changed(frame(cam), home) < 0.001
    state = cam.status()
    assert not (state["covered"] or state["defocused"] or state["turned"] or state["dropped"])


def test_a_dropped_stream_fails_to_read_and_open_until_restored(cam: VirtualCamera) -> None:
    cam.act("drop")
    with pytest.raises(SourceError, match="dropped"):
        cam.read()
    cam.close()
    with pytest.raises(SourceError, match="down"):
        cam.open()
    cam.act("restore")
    cam.open()
    frame(cam)


@pytest.mark.parametrize(
    ("action", "seconds", "error"),
    [
        ("jump", None, "unknown camera action 'jump'"),
        ("walk", 0.1, "walk seconds must be 0.5 to 600"),
        ("walk", 1e6, "walk seconds must be 0.5 to 600"),
    ],
)
def test_bad_actions_are_refused(cam: VirtualCamera, action: str, seconds: Any, error: str) -> None:
    with pytest.raises(SimError, match=error):
        cam.act(action, seconds)


def test_control_requests_answer_and_bad_ones_never_disturb_the_hub(
    mosquitto, tmp_path: Path
) -> None:
    with sim_hub(mosquitto, tmp_path) as hub:
        ok = hub.handle({"cmd": "camera", "name": "cam-1", "action": "cover"})
        assert ok == {
            "ok": True,
            "cmd": "camera",
            "name": "cam-1",
            "action": "cover",
            "covered": True,
        }
        walk = hub.handle({"cmd": "camera", "name": "cam-1", "action": "walk", "seconds": 2})
        assert walk["ok"] and walk["walk_s"] == 2.0
        for bad, error in (
            ({"name": "cam-9", "action": "walk"}, "no simulated camera named 'cam-9'"),
            ({"name": "cam-1", "action": "fly"}, "unknown camera action 'fly'"),
            ({"name": "cam-1", "action": "walk", "seconds": "long"}, "seconds must be a number"),
        ):
            answer = hub.handle({"cmd": "camera", **bad})
            assert answer["ok"] is False and error in answer["error"], answer
        status = hub.status()["cameras"]["cam-1"]
        assert status["scene"]["covered"] is True and status["scene"]["walking"] is True
        assert "frames" in status and "offline" in status


def test_tuquan_sim_camera_needs_a_name_and_a_known_action(tmp_path: Path) -> None:
    for args in (["camera"], ["camera", "cam-1"], ["camera", "cam-1", "jump"]):
        result = subprocess.run(
            [*TUQUAN, "sim", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert result.returncode == 2, result
        assert "walk,cover,uncover" in result.stderr


def test_run_sim_then_walk_a_person_past_cam_1(mosquitto, tmp_path: Path) -> None:
    """The default simulated hub, as the README's quick start runs it."""
    log = (tmp_path / "hub.log").open("ab")
    hub = subprocess.Popen(
        [*TUQUAN, "run", "--sim", "--broker", mosquitto.address, "--data-dir", str(tmp_path)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )

    def cam_1() -> dict[str, Any]:
        try:
            state = request(tmp_path, {"cmd": "status"})
        except (OSError, ValueError):
            return {}
        return state.get("cameras", {}).get("cam-1", {}) if state.get("online") else {}

    try:
        with Subscriber(mosquitto, EVENTS) as sub:
            wait_until(lambda: cam_1().get("frames", 0) >= 10, timeout=60, what="cam-1 running")
            walk = subprocess.run(
                [*TUQUAN, "sim", "--data-dir", str(tmp_path), "camera", "cam-1", "walk"],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=60,
            )
            assert walk.returncode == 0, walk.stderr
            assert json.loads(walk.stdout)["walk_s"] == 6.0
            [msg] = sub.wait_until(
                lambda ms: any(m.topic.endswith("/event/person") for m in ms), timeout=30
            )
    finally:
        hub.send_signal(signal.SIGTERM)
        code = hub.wait(30)
    assert code == 0, (tmp_path / "hub.log").read_text()[-3000:]
    person = msg.json()
    assert person["kind"] == "person" and person["qualifier"] == "E"
    assert person["source"] == "cam-1" and person["zone"] == "market-gate"
    assert person["data"]["snapshot"] == f"snapshot/{person['id']}"
