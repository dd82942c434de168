"""The duty desk end to end (real Mosquitto, the simulated hub, the receiver, the desk on one
SQLite file): an alarm opens an alert; the desk records the hub's status and signed health;
a silence command signed for the operator turns the siren off and its result is recorded; a
hub that goes offline, falls silent or never comes raises a communication trouble (350) that
its return restores; and everything survives a restart of the station."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from notify_kit import ENV, WEBHOOK_SECRET, Endpoint, webhook

from commune.alerts import ACKNOWLEDGED, CLOSED, NEW, RESTORED
from commune.config import ReceiverConfig, parse_receiver_config
from commune.desk import Desk
from commune.notify.webhook import verify_signature
from commune.station import Station
from commune.store import EventStore
from commune.trust import load_commune_key
from core.signing import SigningKey
from core.topics import HubTopics
from gateway.broker import BrokerSettings
from gateway.trust import trust_commune
from testkit.broker import Broker
from testkit.hubs import COMMUNE, HUB, press_and_release, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)


def station_config(tmp_path: Path, **tables: Any) -> ReceiverConfig:
    data = {
        "receiver": {"commune": COMMUNE},
        "hubs": [{"id": HUB, "name": "Chợ An Đông", "latitude": 10.757, "longitude": 106.673}],
        "supervision": {"window_s": 120},
        **tables,
    }
    return parse_receiver_config(data, base_dir=tmp_path, env={})


@pytest.fixture
def station_factory(mosquitto: Broker, tmp_path: Path) -> Iterator[Callable[..., Station]]:
    started: list[Station] = []

    def start(config: ReceiverConfig | None = None) -> Station:
        broker = BrokerSettings(mosquitto.host, mosquitto.port, client_id="tuquan-receiver-demo")
        station = Station(tmp_path / "commune", config or station_config(tmp_path), broker)
        station.start()
        started.append(station)
        assert station.receiver.wait_subscribed(10)
        wait_until(station.desk.watch.connected.is_set, what="the desk connected")
        return station

    yield start
    for station in started:
        station.stop()


def alerts_of(desk: Desk, kind: str) -> list[Any]:
    return [a for a in desk.alerts.search(limit=1000) if a.kind == kind]


def hub_of(desk: Desk) -> Any:
    row = desk.hubs.get(HUB)
    assert row is not None
    return row


def test_a_panic_opens_one_alert_and_silence_signed_for_the_operator_stops_the_siren(
    station_factory: Callable[..., Station], mosquitto: Broker, tmp_path: Path
) -> None:
    station = station_factory()
    desk = station.desk
    trust_commune(tmp_path / "hub", load_commune_key(tmp_path / "commune").public)
    notices: list[dict[str, Any]] = []
    desk.listen(notices.append)
    with sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False) as hub:
        wait_until(lambda: hub_of(desk).status == "online", what="the hub's status recorded")
        wait_until(lambda: hub_of(desk).health is not None, what="the hub's health recorded")
        press_and_release(hub)
        wait_until(lambda: alerts_of(desk, "panic"), what="the panic alert")
        [alert] = alerts_of(desk, "panic")
        assert alert.state == NEW and alert.hub == HUB and alert.priority == 0
        assert {"type": "alert", "id": alert.id, "action": "opened"} in notices
        assert "siren" in hub.status()["sounding"]

        desk.acknowledge(alert.id, "officer-7")
        record = desk.send_command(HUB, "silence", {}, "officer-7", alert_id=alert.id)
        wait_until(
            lambda: (c := desk.hubs.command(record.id)) is not None and c.ok is not None,
            what="the silence command's result",
        )
        result = desk.hubs.command(record.id)
        assert result is not None and result.ok is True and result.result is not None
        assert result.result["silenced"] == ["siren"]
        assert hub.status()["sounding"] == []
        # The hub's "silenced" report joins the incident rather than opening an alert.
        wait_until(lambda: desk.alerts.get(alert.id).events >= 2, what="silenced joins")  # type: ignore[union-attr]
        assert not alerts_of(desk, "silenced")
        actions = [(r.actor, r.action) for r in desk.audit.for_alert(alert.id)]
        assert ("officer-7", "acknowledged") in actions
        assert ("officer-7", "command_sent") in actions
        assert ("system", "command_result") in actions
        assert desk.alerts.get(alert.id).state == ACKNOWLEDGED  # type: ignore[union-attr]


def test_a_hub_that_stops_raises_communication_trouble_and_its_return_restores_it(
    station_factory: Callable[..., Station], mosquitto: Broker, tmp_path: Path
) -> None:
    desk = station_factory().desk
    with sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False):
        wait_until(lambda: hub_of(desk).status == "online", what="the hub online")
    # A clean stop says "offline": the trouble is raised at once, not after the window.
    wait_until(lambda: alerts_of(desk, "comm_trouble"), what="the communication trouble")
    [trouble] = alerts_of(desk, "comm_trouble")
    assert trouble.state == NEW and trouble.cid == 350 and trouble.origin == "receiver"
    with sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False):
        wait_until(
            lambda: desk.alerts.get(trouble.id).state == CLOSED,  # type: ignore[union-attr]
            what="the trouble restored",
        )
    closed = desk.alerts.get(trouble.id)
    assert closed is not None and closed.outcome == RESTORED and closed.closed_by == "system"
    kinds = [(e["kind"], e["qualifier"]) for e in desk.alerts.events_of(trouble.id)]
    assert kinds == [("comm_trouble", "E"), ("comm_trouble", "R")]


def test_an_expected_hub_never_heard_and_a_silent_one_raise_trouble(
    station_factory: Callable[..., Station], tmp_path: Path
) -> None:
    config = station_config(
        tmp_path,
        hubs=[{"id": "never-came", "supervision_s": 2}, {"id": HUB}],
        supervision={"window_s": 2},
    )
    desk = station_factory(config).desk
    # A hub heard once (a retained health, here published as a stand-in) and then silent.
    health = {"hub": HUB, "outbox": {}, "clock_synced": True}
    with Subscriber(desk.watch.broker, TOPICS.health) as sub:
        sub.publish(TOPICS.health, json.dumps(health), retain=True)
        wait_until(lambda: hub_of(desk).health is not None, what="the health recorded")
    wait_until(
        lambda: {a.hub for a in alerts_of(desk, "comm_trouble")} == {"never-came", HUB},
        what="both troubles",
    )
    reasons = {t["hub"]: t["reason"] for t in desk.troubles()}
    assert reasons["never-came"] == "expected, never heard from"
    assert reasons[HUB].startswith("silent since")


def test_an_enrolled_hubs_forged_health_is_not_taken(
    station_factory: Callable[..., Station], mosquitto: Broker, tmp_path: Path
) -> None:
    """With signatures in use, a health the hub's key did not sign keeps nobody alive."""
    station = station_factory()
    desk = station.desk
    genuine = SigningKey.generate()
    with EventStore(tmp_path / "commune" / "receiver.sqlite3") as store:
        store.enrol_hub_key(HUB, genuine.public.text, genuine.public.fingerprint, "2026")
    forger = SigningKey.generate()
    forged = forger.sign("health", {"hub": HUB, "outbox": {}, "clock_synced": True})
    signed = genuine.sign("health", {"hub": HUB, "outbox": {}, "clock_synced": True})
    with Subscriber(mosquitto, TOPICS.health) as sub:
        sub.publish(TOPICS.health, json.dumps(forged))
        wait_until(lambda: desk.counts["unverified_reports"] == 1, what="the forgery counted")
        assert desk.hubs.get(HUB) is None or hub_of(desk).health is None
        sub.publish(TOPICS.health, json.dumps(signed))
        wait_until(lambda: hub_of(desk).health_verified is True, what="the genuine health")
        for bad in (b"[" * 100_000, b"1e999999", b'{"hub": "other"}', b"\xff\xfe"):
            sub.publish(TOPICS.health, bad)
        wait_until(lambda: desk.counts["bad_reports"] >= 3, what="the bad ones counted")
    assert hub_of(desk).health_verified is True


def test_alerts_states_and_audit_survive_a_restart_of_the_station(
    station_factory: Callable[..., Station], mosquitto: Broker, tmp_path: Path
) -> None:
    first = station_factory()
    with sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False) as hub:
        press_and_release(hub)
        wait_until(lambda: alerts_of(first.desk, "panic"), what="the panic alert")
        [alert] = alerts_of(first.desk, "panic")
        first.desk.acknowledge(alert.id, "officer-7")
        first.stop()
        second = station_factory()
        assert second.desk.alerts.get(alert.id) == first.desk.alerts.get(alert.id)
        second.desk.close(alert.id, "officer-9", "real", "patrol sent")
        press_and_release(hub)  # a new panic after the close is a new alert
        wait_until(lambda: len(alerts_of(second.desk, "panic")) == 2, what="a second alert")
    actions = [(r.actor, r.action) for r in second.desk.audit.for_alert(alert.id)]
    assert actions[0] == ("system", "opened")
    assert ("officer-7", "acknowledged") in actions and ("officer-9", "closed") in actions


def test_a_hub_cannot_raise_the_receivers_own_troubles(
    station_factory: Callable[..., Station], mosquitto: Broker
) -> None:
    """comm_trouble and its restore are the receiver's word; a hub's is malformed."""
    station = station_factory()
    fake = {
        "id": "01a234e3-b3ef-721f-a3a1-99c1587e4f01",
        "hub": HUB,
        "seq": 1,
        "kind": "comm_trouble",
        "zone": "link",
        "source": "x",
        "ts": "2026-12-02T00:00:00.000Z",
        "clock_synced": True,
        "qualifier": "R",
        "data": {},
    }
    with Subscriber(mosquitto, TOPICS.receipt) as sub:
        sub.publish(TOPICS.event("comm_trouble"), json.dumps(fake))
        wait_until(lambda: station.receiver.stats.malformed == 1, what="refused at the edge")
    assert station.desk.alerts.search() == []


def test_an_unknown_command_is_refused_before_it_is_signed(
    station_factory: Callable[..., Station], tmp_path: Path
) -> None:
    from commune.commands import COUNTER_FILE, CommandSendError, CounterStore

    desk = station_factory().desk
    counter = CounterStore(tmp_path / "commune" / COUNTER_FILE)
    before = counter.last()
    with pytest.raises(CommandSendError, match="unknown command"):
        desk.send_command(HUB, "open-the-gate", {}, "officer-7")
    assert counter.last() == before
    assert all(r.action != "command_sent" for r in desk.audit.recent())


def test_an_alarm_nobody_acknowledges_climbs_the_ladder_and_the_acknowledgement_is_told(
    station_factory: Callable[..., Station], mosquitto: Broker, tmp_path: Path
) -> None:
    """The whole ladder in the running station: the first step's webhook gets the signed
    escalation; an operator's acknowledgement stops the ladder and tells who was told."""
    with Endpoint() as endpoint:
        config = parse_receiver_config(
            {
                "receiver": {"commune": COMMUNE},
                "escalation": {
                    "steps": [
                        {"name": "to-truong", "after_s": 1, "notify": ["duty"]},
                        {"name": "truong-cong-an", "after_s": 3600, "notify": ["duty"]},
                    ]
                },
                "notify": {"duty": webhook(endpoint.url)},
            },
            base_dir=tmp_path,
            env=ENV,
        )
        desk = station_factory(config).desk
        with sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False) as hub:
            press_and_release(hub)
            wait_until(lambda: alerts_of(desk, "panic"), what="the panic alert")
            first = endpoint.requests.at(0)
            body = first.json()
            assert body["type"] == "alert.escalated" and body["step"]["name"] == "to-truong"
            assert body["alert"]["kind"] == "panic" and body["alert"]["hub"] == HUB
            assert verify_signature(
                WEBHOOK_SECRET,
                first.headers["x-tuquan-timestamp"],
                first.body,
                first.headers["x-tuquan-signature"],
            )
            desk.acknowledge(body["alert"]["id"], "officer-7")
            told = endpoint.requests.at(1)
            assert told.json()["type"] == "alert.acknowledged"
            assert "officer-7" in told.json()["text"]


def test_made_up_hubs_and_oversized_reports_add_nothing(
    station_factory: Callable[..., Station], mosquitto: Broker, tmp_path: Path
) -> None:
    """An outsider on the broker: statuses of invented hubs (with enrolment on), topic levels
    no hub id has, a 1 MB health; none becomes a hub row, the expected hub's still counts."""
    desk = station_factory().desk
    key = SigningKey.generate()
    with EventStore(tmp_path / "commune" / "receiver.sqlite3") as store:
        store.enrol_hub_key(HUB, key.public.text, key.public.fingerprint, "2026")
    wait_until(lambda: desk.signatures_in_use, what="enrolment seen")
    with Subscriber(mosquitto, TOPICS.status) as sub:
        for n in range(20):
            sub.publish(f"tuquan/v1/{COMMUNE}/made-up-{n}/status", "online")
        sub.publish(f"tuquan/v1/{COMMUNE}/Not_A_Hub/status", "online")
        sub.publish(f"tuquan/v1/{COMMUNE}/{'x' * 200}/status", "online")
        sub.publish(TOPICS.health, b"{" + b" " * 1_000_000 + b"}")
        sub.publish(TOPICS.status, "online")  # the expected hub's: taken
        wait_until(lambda: hub_of(desk).status == "online", what="the expected hub's status")
        wait_until(lambda: desk.counts["bad_reports"] >= 20, what="the made-up ones refused")
        wait_until(lambda: desk.watch.dropped >= 3, what="the oversized and bad ids dropped")
    assert [h.hub for h in desk.hubs.all()] == [HUB]


def test_a_damaged_store_stops_the_console_with_a_message_and_is_left_as_it_was(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    garbage = bytes(range(256)) * 20
    (tmp_path / "receiver.sqlite3").write_bytes(garbage)
    config = tmp_path / "r.toml"
    config.write_text('[receiver]\ncommune = "demo"\n[broker]\nport = 9\n')
    done = subprocess.run(
        [sys.executable, "-m", "tuquan", "console", "--config", str(config)]
        + ["--data-dir", str(tmp_path), "--listen", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot open the store" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "receiver.sqlite3").read_bytes() == garbage


def test_a_full_disk_holds_alerts_back_and_loses_none(tmp_path: Path, mosquitto: Broker) -> None:
    """Events stored, then the disk fills: the desk cannot open their alerts, says so once and
    keeps trying; once there is space every alert opens, once."""
    from notify_kit import fill, small_disk

    with small_disk(tmp_path) as disk:
        data = disk / "commune"
        data.mkdir()
        with EventStore(data / "receiver.sqlite3") as store:
            store.store_batch([received_panic(f"h{n}") for n in range(30)])
        broker = BrokerSettings(mosquitto.host, mosquitto.port, client_id="tuquan-receiver-demo")
        desk = Desk(data, station_config(tmp_path), broker)
        load_commune_key(data)  # made before the disk fills (without it the desk cannot start)
        filler = fill(disk)
        desk.start()
        try:
            wait_until(lambda: desk.counts["failed_rounds"] >= 3, what="rounds failing")
            assert desk.alerts.search() == []
            filler.unlink()
            wait_until(lambda: len(desk.alerts.search()) == 30, what="every alert, once")
            assert desk.alerts.follow() == []
        finally:
            desk.stop()


def received_panic(hub: str) -> Any:
    from commune.store import ReceivedEvent
    from core.events import Event, utc_now_iso

    event = Event(kind="panic", zone="z", source="test")
    return ReceivedEvent.from_event(
        event, hub=hub, commune=COMMUNE, payload="{}", received_at=utc_now_iso()
    )


def test_another_process_acting_is_told_and_the_receivers_storing_is_not(
    station_factory: Callable[..., Station], tmp_path: Path
) -> None:
    """``changed`` tells the pages that someone else (tuquan watch) acted on an alert; the
    receiver's own commits (telemetry every minute from every hub) do not make them reload."""
    from commune.alerts import AlertBook
    from commune.db import Db

    desk = station_factory().desk
    notices: list[dict[str, Any]] = []
    desk.listen(notices.append)
    path = tmp_path / "commune" / "receiver.sqlite3"
    with EventStore(path) as store:
        store.store_batch([received_panic("h1")])
        wait_until(lambda: desk.alerts.search(), what="the alert")
        store.store_batch([received_telemetry(f"h{n}") for n in range(5)])
        wait_until(lambda: desk.alerts.position() > 1, what="the telemetry followed")
    assert not any(n["type"] == "changed" for n in notices)
    other = AlertBook(Db(path))  # another process's connection, as tuquan watch has
    other.acknowledge(desk.alerts.search()[0].id, "truc-ban-2")
    wait_until(lambda: any(n["type"] == "changed" for n in notices), what="told")


def received_telemetry(hub: str) -> Any:
    from commune.store import ReceivedEvent
    from core.events import Event, utc_now_iso

    event = Event(kind="telemetry", zone="z", source="test")
    return ReceivedEvent.from_event(
        event, hub=hub, commune=COMMUNE, payload="{}", received_at=utc_now_iso()
    )
