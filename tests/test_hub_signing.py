"""The hub's signatures against a real Mosquitto: its events and health carry them, signed once
(a re-send is the same bytes), and an enrolled hub acts only on receipts the commune signed."""

from __future__ import annotations

import json
import logging
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from core.events import Event
from core.signing import PublicKey, SigningKey, verify
from core.topics import HubTopics
from gateway.outbox import DELIVERED
from gateway.trust import HUB_KEY_FILE, trust_commune
from hw_sim.simulator import SimulatedHub
from testkit.hubs import COMMUNE, EVENTS, HUB, press_and_release, sim_hub
from testkit.mqtt import Subscriber
from testkit.proxy import BlackHole
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
# Receipts on, and no re-send by timeout within a test: only what a test does re-sends.
UPLINK = {"receipts": True, "receipt_timeout_s": 600}


def hub_key(hub: SimulatedHub) -> PublicKey:
    assert hub.hub.keys is not None
    return hub.hub.keys.signing.public


def state_of(hub: SimulatedHub, event_id: str) -> int | None:
    return hub.hub.dispatcher.call(lambda o: o.state_of(event_id)).result(timeout=10)


def fire(hub: SimulatedHub) -> str:
    """A fire reported by the hub (the simulated board has no fire input)."""
    event = Event(kind="fire", zone="kitchen", source="heat-1")
    hub.hub.emit(event).result(timeout=10)
    return event.id


def test_an_events_payload_verifies_and_is_the_same_bytes_when_sent_again_after_a_reconnect(
    mosquitto, tmp_path: Path
) -> None:
    with (
        BlackHole(mosquitto) as proxy,
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(
            proxy,
            tmp_path,
            camera=False,
            sensor_bus=False,
            uplink={**UPLINK, "ping_interval_s": 0.3, "link_timeout_s": 1.0},
        ) as hub,
    ):
        wait_until(lambda: hub.hub.uplink.online, what="hub online")
        press_and_release(hub)
        first = sub.wait_until(lambda ms: any(m.topic.endswith("/panic") for m in ms))
        [sent] = [m for m in first if m.topic.endswith("/panic")]
        event = sent.json()
        assert verify("event", event, hub_key(hub))
        assert event["kid"] == hub_key(hub).fingerprint
        # Any change to what was signed, the purpose included, fails.
        assert not verify("event", {**event, "zone": "elsewhere"}, hub_key(hub))
        assert not verify("health", event, hub_key(hub))
        # The link goes silent and comes back: the unreceipted panic goes out again at once.
        proxy.swallow()
        wait_until(lambda: not hub.hub.uplink.online, what="the link found silent")
        proxy.heal()
        again = sub.wait_until(lambda ms: sum(m.topic.endswith("/panic") for m in ms) >= 2)
        resent = [m for m in again if m.topic.endswith("/panic")][1]
        assert resent.payload == sent.payload
        assert hub.hub.dispatcher.stats.resent >= 1


def test_the_key_is_made_once_owner_only_and_kept_across_restarts(
    mosquitto, tmp_path: Path
) -> None:
    with sim_hub(mosquitto, tmp_path, camera=False, sensor_bus=False) as hub:
        first = hub_key(hub)
    key_file = tmp_path / HUB_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()
    with sim_hub(mosquitto, tmp_path, camera=False, sensor_bus=False) as hub:
        assert hub_key(hub).fingerprint == first.fingerprint
    assert key_file.read_bytes() == pem


def test_health_is_signed_as_built_and_as_published(mosquitto, tmp_path: Path) -> None:
    with (
        Subscriber(mosquitto, TOPICS.health) as sub,
        sim_hub(mosquitto, tmp_path, camera=False, sensor_bus=False) as hub,
    ):
        health = hub.hub.health()
        assert verify("health", health, hub_key(hub))
        assert health["forged_receipts"] == 0
        assert not verify("event", health, hub_key(hub))
        [published] = sub.wait_for(1)
        assert verify("health", published.json(), hub_key(hub))


def signed_receipt(key: SigningKey, ids: list[str], hub: str = HUB) -> bytes:
    receipt = key.sign("receipt", {"hub": hub, "ids": ids, "ts": time.time()})
    return json.dumps(receipt, separators=(",", ":")).encode()


def flip_one_byte(payload: bytes) -> bytes:
    """The genuine receipt with one digit of its timestamp changed."""
    obj = json.loads(payload)
    text = repr(obj["ts"])
    digit = text[-1]
    obj["ts"] = float(text[:-1] + ("1" if digit != "1" else "2"))
    return json.dumps(obj, separators=(",", ":")).encode()


def forgeries(commune: SigningKey, ids: list[str]) -> dict[str, bytes]:
    """Receipts an enrolled hub must refuse, each naming ``ids``."""
    genuine = signed_receipt(commune, ids)
    sig_flipped = json.loads(genuine)
    sig_flipped["sig"] = ("B" if sig_flipped["sig"][0] != "B" else "C") + sig_flipped["sig"][1:]
    as_event = commune.sign("event", {"hub": HUB, "ids": ids, "ts": time.time()})
    return {
        "wrong key": signed_receipt(SigningKey.generate(), ids),
        "flipped byte": flip_one_byte(genuine),
        "flipped signature": json.dumps(sig_flipped).encode(),
        "another hub": signed_receipt(commune, ids, hub="another-hub"),
        "unsigned": json.dumps({"ids": ids}).encode(),
        "unsigned, new form": json.dumps({"hub": HUB, "ids": ids, "ts": time.time()}).encode(),
        "signed for another purpose": json.dumps(as_event).encode(),
    }


def event_seqs(messages: list[Any]) -> list[int]:
    return sorted({m.json()["seq"] for m in messages if "/event/" in m.topic})


def test_an_enrolled_hub_keeps_events_a_forged_receipt_names_until_the_genuine_one(
    mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    commune = SigningKey.generate()
    trust_commune(tmp_path, commune.public)
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, camera=False, sensor_bus=False, uplink=UPLINK) as hub,
    ):
        assert hub.hub.keys is not None and hub.hub.keys.enrolled
        wait_until(lambda: hub.hub.uplink.online, what="hub online")
        press_and_release(hub)
        fire_id = fire(hub)
        msgs = sub.wait_until(
            lambda ms: {"panic", "fire"} <= {m.topic.rsplit("/", 1)[1] for m in ms}
        )
        ids = [m.json()["id"] for m in msgs if m.topic.endswith(("/panic", "/fire"))]
        assert fire_id in ids and len(ids) == 2
        forged = forgeries(commune, ids)
        for payload in forged.values():
            sub.publish(TOPICS.receipt, payload)
        sub.publish(TOPICS.receipt, forged["unsigned"])  # a second one for the same reason
        wait_until(lambda: hub.hub.receipts.forged == len(forged) + 1, 30, "forgeries counted")
        # Refusing happens before anything is queued: nothing of them can reach the outbox.
        assert all(state_of(hub, i) != DELIVERED for i in ids)
        health = hub.hub.health()
        assert health["forged_receipts"] == len(forged) + 1
        assert health["bad_receipts"] == len(forged) + 1
        refusals = [r.getMessage() for r in caplog.records if "refused a receipt" in r.getMessage()]
        # Once per cause (unsigned, another key, a signature that fails, another hub's name).
        assert len(refusals) == len(set(refusals)) == 4
        sub.publish(TOPICS.receipt, signed_receipt(commune, ids))
        wait_until(lambda: [state_of(hub, i) for i in ids] == [DELIVERED] * 2, what="delivered")
        assert hub.hub.receipts.forged == len(forged) + 1
        press_and_release(hub)
        sub.wait_until(lambda ms: sum(m.topic.endswith("/panic") for m in ms) >= 2)
        seqs = event_seqs(sub.messages)
        assert seqs == list(range(seqs[0], seqs[-1] + 1))


def test_a_hub_not_enrolled_takes_receipts_old_and_new_signed_or_not(
    mosquitto, tmp_path: Path
) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, camera=False, sensor_bus=False, uplink=UPLINK) as hub,
    ):
        assert hub.hub.keys is not None and not hub.hub.keys.enrolled
        wait_until(lambda: hub.hub.uplink.online, what="hub online")
        ids = [fire(hub) for _ in range(3)]
        sub.wait_until(lambda ms: sum(m.topic.endswith("/fire") for m in ms) == 3)
        sub.publish(TOPICS.receipt, json.dumps({"ids": [ids[0]]}).encode())
        sub.publish(
            TOPICS.receipt, json.dumps({"hub": HUB, "ids": [ids[1]], "ts": time.time()}).encode()
        )
        sub.publish(TOPICS.receipt, signed_receipt(SigningKey.generate(), [ids[2]]))
        wait_until(lambda: [state_of(hub, i) for i in ids] == [DELIVERED] * 3, what="delivered")
        assert hub.hub.receipts.forged == 0


def test_a_damaged_key_file_leaves_the_siren_and_the_alarm_working_unsigned(
    mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / HUB_KEY_FILE).write_bytes(b"\x00 not a key \xff")
    caplog.set_level(logging.ERROR, logger="gateway")
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, camera=False, sensor_bus=False, uplink=UPLINK) as hub,
    ):
        assert hub.hub.keys is None
        wait_until(lambda: hub.hub.uplink.online, what="hub online")
        press_and_release(hub)
        assert hub.board.outputs()["siren"] is True
        messages = sub.wait_until(lambda ms: any(m.topic.endswith("/panic") for m in ms))
        panic = next(m for m in messages if m.topic.endswith("/panic"))
        assert "sig" not in panic.json() and panic.json()["kind"] == "panic"
    assert any("keys cannot be used" in r.getMessage() for r in caplog.records)
    assert (tmp_path / HUB_KEY_FILE).read_bytes() == b"\x00 not a key \xff"  # never overwritten
