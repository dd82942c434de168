"""Trust end to end through a Mosquitto bridge: the hub on its commune's broker, the receiver on
the province's, two real brokers on loopback bridged both ways. An outsider on either broker can
neither get a forged panic alerted as genuine nor make the hub drop an event with a forged
receipt; the genuine panic alerts and is receipted across the bridge."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commune.commands import CounterStore, publish_command, sign_command
from commune.locations import DB_FILENAME
from commune.store import EventStore
from commune.trust import load_commune_key
from core.events import Event
from core.signing import SigningKey, verify
from core.topics import HubTopics
from gateway.outbox import DELIVERED
from gateway.trust import HubKeys, trust_commune
from hw_sim.simulator import SimulatedHub
from testkit.broker import Broker
from testkit.hubs import COMMUNE, HUB, press_and_release, sim_hub
from testkit.mqtt import Subscriber
from testkit.receivers import Receivers, wait_stats
from testkit.waiting import wait_until
from tuquan.cli import main as tuquan

TOPICS = HubTopics(COMMUNE, HUB)
UPLINK = {"receipts": True, "receipt_timeout_s": 600}


@pytest.fixture
def bridged(tmp_path: Path) -> Iterator[tuple[Broker, Broker]]:
    """(commune broker, province broker): the commune's bridges tuquan/v1/# both ways."""
    province = Broker(tmp_path / "province")
    province.start()
    commune = Broker(
        tmp_path / "commune",
        extra_config="\n".join(
            [
                "connection province",
                f"address {province.host}:{province.port}",
                "topic tuquan/v1/# both 1",
                "cleansession false",
                "restart_timeout 1 5",
            ]
        ),
    )
    commune.start()
    try:
        yield commune, province
    finally:
        commune.stop()
        province.stop()


class SyncedClock:
    def synced(self) -> bool:
        return True


def result_of(sub: Subscriber, command_id: str) -> dict[str, Any] | None:
    for message in sub.messages:
        if message.topic == TOPICS.cmd_result and message.json().get("command_id") == command_id:
            return message.json()  # type: ignore[no-any-return]
    return None


def state_of(hub: SimulatedHub, event_id: str) -> int | None:
    return hub.hub.dispatcher.call(lambda o: o.state_of(event_id)).result(timeout=10)


def wire(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def test_forgeries_through_a_bridge(bridged: tuple[Broker, Broker], tmp_path: Path) -> None:
    commune_broker, province = bridged
    hub_dir, rx_dir = tmp_path / "hub", tmp_path / "receiver"
    rx_dir.mkdir()
    # Enrolment, as an installer does it: each side learns the other's public key.
    hub_key = HubKeys(hub_dir).signing.public
    commune_key = load_commune_key(rx_dir)
    assert tuquan(["keys", "trust", HUB, hub_key.text, "--data-dir", str(rx_dir)]) == 0
    trust_commune(hub_dir, commune_key.public)
    outsider = SigningKey.generate()

    with (
        Receivers(province, COMMUNE, rx_dir / DB_FILENAME) as receivers,
        Subscriber(province, f"tuquan/v1/{COMMUNE}/#") as at_province,
        Subscriber(commune_broker) as on_commune,
        sim_hub(commune_broker, hub_dir, camera=False, sensor_bus=False, uplink=UPLINK) as hub,
    ):
        receiver = receivers.start()
        wait_until(lambda: hub.hub.uplink.online, what="hub online")
        # A forged panic in the hub's name, published on the hub's own broker.
        forged = outsider.sign(
            "event", Event(kind="panic", zone="gate", source="x", seq=1).to_dict(HUB)
        )
        on_commune.publish(TOPICS.event("panic"), wire(forged))
        wait_stats(receiver, lambda s: s.unverified == 1)
        # The genuine panic crosses the bridge, is stored verified and receipted back.
        press_and_release(hub)
        wait_stats(receiver, lambda s: s.stored == 1)
        assert receiver.stats.unverified == 1
        wait_until(lambda: any(m.topic == TOPICS.receipt for m in at_province.messages))
        receipts = [m for m in at_province.messages if m.topic == TOPICS.receipt]
        assert all(forged["id"] not in m.json()["ids"] for m in receipts)

        # Commands from the province's side: an outsider's silence is refused, the siren
        # sounds on; the commune's own silences it. (A synchronised clock: the bridge speaks
        # MQTT 3.1.1 and drops the MQTT 5 message expiry an unsynchronised hub would need.)
        hub.hub.clock = SyncedClock()  # type: ignore[assignment]
        assert hub.board.outputs()["siren"] is True
        counter = CounterStore(rx_dir / "command-counter")
        fake_counter = CounterStore(tmp_path / "outsider-counter")
        for key, store in ((outsider, fake_counter), (commune_key, counter)):
            command = sign_command(
                key, COMMUNE, HUB, "silence", {}, "officer-7", counter_store=store
            )
            publish_command(at_province.client, command).wait_for_publish(10)
            wait_until(lambda c=command: result_of(at_province, c["id"]), 10, "the result")
            result = result_of(at_province, command["id"])
            assert result is not None
            assert verify("cmd_result", result, hub_key)
            if key is outsider:
                assert result["ok"] is False and hub.board.outputs()["siren"] is True
            else:
                assert result["ok"] is True and hub.board.outputs()["siren"] is False

        # The receiver goes away; a fire stays undelivered at the hub.
        receivers.stop_all()
        fire = Event(kind="fire", zone="kitchen", source="heat-1")
        hub.hub.emit(fire).result(timeout=10)
        wait_until(lambda: any(m.topic == TOPICS.event("fire") for m in at_province.messages))
        # An outsider on the province broker sends receipts for it: unsigned and forged.
        for body in (
            {"ids": [fire.id]},
            outsider.sign("receipt", {"hub": HUB, "ids": [fire.id], "ts": time.time()}),
        ):
            at_province.publish(TOPICS.receipt, wire(body))
        wait_until(lambda: hub.hub.receipts.forged >= 2, what="forged receipts refused")
        assert state_of(hub, fire.id) != DELIVERED
        # The real receiver comes back: the fire is delivered, the record has no gap.
        receiver = receivers.start()
        wait_until(lambda: state_of(hub, fire.id) == DELIVERED, 30, "fire delivered")
        receivers.stop_all()
        with EventStore(rx_dir / DB_FILENAME) as store:
            seqs = sorted(e["seq"] for _, e in store.rows_after(0, 1000) if e["hub"] == HUB)
        assert seqs == list(range(seqs[0], seqs[-1] + 1))
        assert len(seqs) == 3  # the panic, the silence, the fire: the forgery is not among them
