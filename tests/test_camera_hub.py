"""Cameras in the whole hub: the simulated hub's cam-1 (a virtual camera playing a street, the
real detector and pipeline, a real SQLite outbox) against a real Mosquitto, with the commune
receiver saving snapshots.

Camera times are short (10 fps, an incident ends 2 s after the person left, tamper after 1 s)
so each test takes a few seconds; nothing here asserts how long anything took.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from commune.receiver import Receiver
from core.topics import HubTopics
from hw_sim.simulator import SimulatedHub
from settings import Config
from testkit.hubs import COMMUNE, HUB, outbox_counts, parse_sim_config, sim_config_data, sim_hub
from testkit.mqtt import Message, Subscriber
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
EVENTS = TOPICS.event("+")
SNAPSHOTS = TOPICS.snapshot("+")
REPO = Path(__file__).resolve().parent.parent
WALK_S = 3.0
FAST = {
    "detect_fps": 10.0,
    "end_after_s": 2.0,
    "offline_after_s": 1.0,
    "backoff_min_s": 0.2,
    "backoff_max_s": 0.5,
    "tamper": {"learn_s": 0.5, "persist_s": 1.0, "check_s": 0.25},
}


def camera_config(detection: dict[str, Any] | None = None, **uplink: Any) -> Config:
    """The default simulated hub, its cam-1 fast, with ``[detection]`` and ``[uplink]`` keys."""
    data = sim_config_data(detection=detection or {}, uplink=uplink)
    data["cameras"][0].update(FAST)
    return parse_sim_config(data)


def hub_dir(tmp_path: Path) -> Path:
    path = tmp_path / "hub"
    path.mkdir(exist_ok=True)
    return path


def camera_ready(hub: SimulatedHub, frames: int = 10) -> None:
    """Online, with the camera running long enough to have learned its view."""
    wait_until(lambda: hub.hub.uplink.connected, what="hub online")
    cams = hub.hub.cameras
    assert cams is not None, hub.hub.camera_error
    wait_until(lambda: cams["cam-1"].stats.frames >= frames, timeout=20, what="camera frames")


def act(hub: SimulatedHub, action: str, **extra: Any) -> None:
    answer = hub.handle({"cmd": "camera", "name": "cam-1", "action": action, **extra})
    assert answer["ok"], answer


def events(messages: list[Message], kind: str | None = None) -> list[dict[str, Any]]:
    out = [m.json() for m in messages if "/event/" in m.topic]
    return [e for e in out if kind is None or e["kind"] == kind]


def has_event(kind: str, qualifier: str) -> Any:
    return lambda ms: any(
        e["kind"] == kind and e["qualifier"] == qualifier for e in events(ms, kind)
    )


@contextmanager
def receiver(broker: Any, data_dir: Path) -> Iterator[Receiver]:
    data_dir.mkdir(parents=True, exist_ok=True)
    rx = Receiver(
        broker.host, broker.port, COMMUNE, data_dir / "receiver.sqlite3", client_id="rx-test"
    )
    rx.start()
    try:
        assert rx.wait_subscribed(10)
        yield rx
    finally:
        rx.stop()


# -- a person walks through -------------------------------------------------------------------


def test_a_walk_is_one_incident_with_its_snapshot_published_saved_and_sent_again(
    mosquitto, tmp_path: Path
) -> None:
    with (
        receiver(mosquitto, tmp_path / "commune") as rx,
        Subscriber(mosquitto, EVENTS, SNAPSHOTS, TOPICS.cmd_result) as sub,
        sim_hub(mosquitto, hub_dir(tmp_path), camera_config()) as hub,
    ):
        camera_ready(hub)
        act(hub, "walk", seconds=WALK_S)
        sub.wait_until(has_event("person", "R"), timeout=30)
        time.sleep(0.5)  # a second incident would have started by now
        people = events(sub.messages, "person")
        assert [e["qualifier"] for e in people] == ["E", "R"]
        start, end = people
        event_id = start["id"]
        snapshot_topic = TOPICS.snapshot(event_id)
        pictures = [m for m in sub.messages if m.topic == snapshot_topic]
        assert len(pictures) == 1
        jpeg = pictures[0].payload

        # The commune receiver stored both events and saved the picture beside its database.
        saved = tmp_path / "commune" / "snapshots" / HUB / f"{event_id}.jpg"
        wait_until(lambda: saved.exists() and rx.stats.stored >= 2, what="receiver saved all")
        assert saved.read_bytes() == jpeg
        assert rx.stats.snapshots == 1 and rx.stats.bad_snapshots == 0
        wait_until(lambda: outbox_counts(hub).get("delivered") == 2, what="receipts")

        # cmd/snapshot sends the stored picture again; an unknown event has none.
        sub.clear()
        sub.publish(TOPICS.base + "/cmd/snapshot", json.dumps({"id": event_id, "request_id": "a"}))
        sub.publish(TOPICS.base + "/cmd/snapshot", json.dumps({"id": "nope", "request_id": "b"}))
        msgs = sub.wait_until(
            lambda ms: (
                len([m for m in ms if m.topic == TOPICS.cmd_result]) == 2
                and any(m.topic == snapshot_topic for m in ms)
            )
        )
        results = {m.json()["request_id"]: m.json() for m in msgs if m.topic == TOPICS.cmd_result}
        assert results["a"]["ok"] is True and results["a"]["topic"] == snapshot_topic
        assert results["b"]["ok"] is False
        assert results["b"]["error"] == "no snapshot for that event"
        [again] = [m for m in msgs if m.topic == snapshot_topic]
        assert again.payload == jpeg and again.retain is False and again.qos == 1
        health = hub.hub.camera_health()

    assert (start["source"], start["zone"], start["cid"], start["priority"]) == (
        "cam-1",
        "market-gate",
        130,
        2,
    )
    data = start["data"]
    assert data["label"] == "person" and data["camera"] == "cam-1"
    assert data["snapshot"] == f"snapshot/{event_id}"
    assert end["data"]["incident"] == event_id
    picture = Image.open(io.BytesIO(jpeg))
    assert picture.format == "JPEG"
    x0, y0, x1, y1 = data["snapshot_box"]
    assert picture.size == (x1 - x0, y1 - y0)
    assert (tmp_path / "hub" / "snapshots" / f"{event_id}.jpg").read_bytes() == jpeg
    assert health["cameras"]["cam-1"]["incidents"] == 1
    assert health["detector"]["name"] == "pose-detection"
    assert health["snapshots"]["published"] == 2 and health["snapshots"]["pending"] == 0


# -- tamper and a lost stream -------------------------------------------------------------


def camera_health(messages: list[Message]) -> list[dict[str, Any]]:
    """Health messages published once cam-1 had frames."""
    out = [m.json() for m in messages if m.topic == TOPICS.health]
    return [h for h in out if h["cameras"]["cam-1"].get("frames")]


def test_cover_and_uncover_drop_and_restore(mosquitto, tmp_path: Path) -> None:
    config = camera_config(receipts=False, health_interval_s=0.2)
    with (
        Subscriber(mosquitto, EVENTS, TOPICS.health) as sub,
        sim_hub(mosquitto, tmp_path, config) as hub,
    ):
        camera_ready(hub)
        # The retained health message carries the camera, the detector and the snapshots.
        health = camera_health(sub.wait_until(lambda ms: bool(camera_health(ms))))[0]
        assert health["cameras"]["cam-1"]["offline"] is False
        assert health["detector"]["name"] == "pose-detection"
        assert health["snapshots"]["pending"] == 0
        act(hub, "cover")
        sub.wait_until(has_event("camera_tamper", "E"))
        act(hub, "uncover")
        sub.wait_until(has_event("camera_tamper", "R"))
        act(hub, "drop")
        sub.wait_until(has_event("camera_offline", "E"))
        assert hub.status()["cameras"]["cam-1"]["offline"] is True
        act(hub, "restore")
        sub.wait_until(has_event("camera_offline", "R"))
        time.sleep(0.3)
    got = [(e["kind"], e["qualifier"]) for e in events(sub.messages)]
    assert got == [
        ("camera_tamper", "E"),
        ("camera_tamper", "R"),
        ("camera_offline", "E"),
        ("camera_offline", "R"),
    ]
    tamper, _, offline, _ = events(sub.messages)
    assert tamper["data"]["reason"] == "covered" and tamper["zone"] == "market-gate"
    assert tamper["cid"] == 383 and offline["cid"] == 380
    assert "dropped" in offline["data"]["error"] or "down" in offline["data"]["error"]


# -- a refused model --------------------------------------------------------------------------


def test_a_model_with_the_wrong_hash_leaves_the_cameras_off_and_the_hub_working(
    mosquitto, tmp_path: Path
) -> None:
    bad = tmp_path / "bad-models"
    bad.mkdir()
    (bad / "pose_detection.tflite").write_bytes(b"not a model at all" * 1000)
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, hub_dir(tmp_path), camera_config({"models_dir": str(bad)})) as hub,
    ):
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        sub.wait_until(has_event("camera_offline", "E"))
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        sub.wait_until(has_event("panic", "E"))
        assert hub.hub.cameras is None
        status = hub.status()["cameras"]["cam-1"]
        assert status["running"] is False and "sha256" in status["error"]
        answer = hub.handle({"cmd": "camera", "name": "cam-1", "action": "walk"})
        assert answer["ok"]  # the scene still plays; nobody watches it
    [trouble] = events(sub.messages, "camera_offline")
    assert (trouble["source"], trouble["zone"], trouble["qualifier"]) == (
        "cam-1",
        "market-gate",
        "E",
    )
    error = trouble["data"]["error"]
    assert "detection model was refused" in error and "sha256" in error
    assert "tuquan model fetch pose-detection" in error

    # Started again with the model in order: the cameras run and the trouble is restored.
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, hub_dir(tmp_path), camera_config(receipts=False)) as hub,
    ):
        camera_ready(hub, frames=1)
        sub.wait_until(has_event("camera_offline", "R"))
    [restore] = events(sub.messages, "camera_offline")
    assert restore["source"] == "cam-1" and restore["qualifier"] == "R"


# -- offline ----------------------------------------------------------------------------------


def test_a_snapshot_taken_while_the_broker_is_down_is_published_when_it_is_back(
    mosquitto, tmp_path: Path
) -> None:
    with sim_hub(mosquitto, tmp_path, camera_config(receipts=False)) as hub:
        camera_ready(hub)
        mosquitto.stop()
        wait_until(lambda: not hub.hub.uplink.connected, what="hub offline")
        act(hub, "walk", seconds=WALK_S)
        publisher = hub.hub.snapshots
        assert publisher is not None
        wait_until(lambda: publisher.stats.stored == 1, timeout=30, what="snapshot stored")
        [marker] = (tmp_path / "snapshots").glob("*.pending")
        event_id = marker.stem
        mosquitto.start()
        with Subscriber(mosquitto, EVENTS, SNAPSHOTS) as sub:  # before the hub's backoff ends
            msgs = sub.wait_until(
                lambda ms: (
                    any(m.topic == TOPICS.snapshot(event_id) for m in ms)
                    and any("/event/person" in m.topic for m in ms)
                ),
                timeout=30,
            )
        wait_until(lambda: not marker.exists(), what="pending mark dropped after the PUBACK")
    [picture] = [m for m in msgs if m.topic == TOPICS.snapshot(event_id)]
    assert picture.payload == (tmp_path / "snapshots" / f"{event_id}.jpg").read_bytes()
    assert events(msgs, "person")[0]["data"]["snapshot"] == f"snapshot/{event_id}"


# -- the receiver's side ----------------------------------------------------------------------


def test_the_receiver_saves_jpegs_and_drops_anything_else(mosquitto, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    with receiver(mosquitto, tmp_path) as rx, Subscriber(mosquitto) as hub:
        hub.publish(TOPICS.snapshot("01a2-good"), jpeg)
        hub.publish(TOPICS.snapshot("01a2-text"), b"hello, not a picture")
        hub.publish(TOPICS.snapshot("01a2-cut"), jpeg[: len(jpeg) // 2])
        hub.publish(TOPICS.snapshot(".hidden"), jpeg)
        hub.publish(HubTopics("other-commune", HUB).snapshot("01a2-x"), jpeg)  # not subscribed
        wait_until(lambda: rx.stats.snapshots + rx.stats.bad_snapshots == 4, what="all four")
        assert (rx.stats.snapshots, rx.stats.bad_snapshots, rx.stats.malformed) == (1, 3, 0)
    folder = tmp_path / "snapshots" / HUB
    assert sorted(p.name for p in folder.iterdir()) == ["01a2-good.jpg"]
    assert (folder / "01a2-good.jpg").read_bytes() == jpeg


# -- a hub without cameras stays small --------------------------------------------------------

NO_CAMERA_HUB = textwrap.dedent(
    """
    import sys, tempfile, tomllib
    from pathlib import Path
    from settings import parse_config
    from gateway.service import Hub
    from hw_sim.simulator import default_config_path

    data = tomllib.loads(default_config_path().read_text())
    for key in ("cameras", "detection", "snapshots", "buses", "nodes"):
        data.pop(key, None)
    cfg = parse_config(data, base_dir=Path("."), env={})
    hub = Hub(cfg, Path(tempfile.mkdtemp()), broker=("127.0.0.1", int(sys.argv[1])))
    hub.start()
    hub.stop(drain_timeout_s=0.5)
    heavy = ("numpy", "cv2", "PIL", "ai_edge_litert", "tflite_runtime", "sensors.camera.pipeline",
             "sensors.detection.runtime", "skimage", "scipy")
    print(" ".join(m for m in heavy if m in sys.modules))
    """
)


def test_a_hub_without_cameras_loads_no_image_or_inference_library(mosquitto) -> None:
    # gpiozero wants a pin factory on a PC; the mock one is part of gpiozero itself.
    env = {"GPIOZERO_PIN_FACTORY": "mock", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", NO_CAMERA_HUB, str(mosquitto.port)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
