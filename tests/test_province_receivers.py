"""Several receivers and consoles on one PostgreSQL record (a real server, a real Mosquitto,
the simulated hub, ``tuquan receive`` processes): two receivers share one subscription and
each event is stored once and receipted; one of them killed -9 mid-stream loses nothing. Two
consoles on one store: one of them does the desk's work (every alarm opens one alert, every
silent hub one trouble), the other's pages still hear of each alert, and when the first stops
the second takes the duty over."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from commune.config import ReceiverConfig, parse_receiver_config
from commune.station import Station
from commune.trust import load_commune_key
from core.events import Event
from core.topics import HubTopics, receiver_status_topic
from gateway.broker import BrokerSettings
from testkit.broker import Broker
from testkit.hubs import COMMUNE, HUB, outbox_counts, press_and_release, sim_hub
from testkit.mqtt import Subscriber
from testkit.receivers import receipt_ids
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
TOPICS = HubTopics(COMMUNE, HUB)


def shared_key_dirs(tmp_path: Path, *names: str) -> list[Path]:
    """Data folders of receivers of one commune: each its own, one commune key in all."""
    first = tmp_path / names[0]
    load_commune_key(first)  # made on first use
    dirs = [first]
    for name in names[1:]:
        other = tmp_path / name
        other.mkdir(parents=True)
        shutil.copy2(first / "commune.key", other / "commune.key")
        dirs.append(other)
    return dirs


def receive_process(
    broker: Broker, data_dir: Path, url: str, client_id: str
) -> subprocess.Popen[bytes]:
    config = data_dir / "receiver.toml"
    config.write_text(
        f'[receiver]\ncommune = "{COMMUNE}"\nshare_group = "police"\nclient_id = "{client_id}"\n'
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tuquan",
            "receive",
            "--config",
            str(config),
            "--broker",
            f"{broker.host}:{broker.port}",
            "--data-dir",
            str(data_dir),
            "--store",
            url,
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )


def stored(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT id FROM events")]


def test_two_receivers_share_a_subscription_one_killed_mid_stream_nothing_lost(
    mosquitto: Broker, pg_url: str, tmp_path: Path
) -> None:
    a_dir, b_dir = shared_key_dirs(tmp_path, "receiver-a", "receiver-b")
    procs = [
        receive_process(mosquitto, a_dir, pg_url, "receiver-a"),
        receive_process(mosquitto, b_dir, pg_url, "receiver-b"),
    ]
    try:
        with (
            Subscriber(mosquitto, TOPICS.receipt) as receipts,
            Subscriber(mosquitto, receiver_status_topic(COMMUNE)) as statuses,
            sim_hub(
                mosquitto,
                tmp_path / "hub",
                camera=False,
                sensor_bus=False,
                uplink={"receipt_timeout_s": 3},
            ) as hub,
        ):
            wait_until(
                lambda: online_receivers(statuses) == {"receiver-a", "receiver-b"},
                timeout=60,
                what="both receivers subscribed",
            )
            emitted: list[str] = []

            def stream() -> None:
                for n in range(300):
                    event = Event(kind="telemetry", zone="z", source="test", data={"n": n})
                    hub.hub.emit(event).result(timeout=30)
                    emitted.append(event.id)
                    if n % 10 == 0:
                        threading.Event().wait(0.02)

            streamer = threading.Thread(target=stream)
            streamer.start()
            wait_until(lambda: len(receipt_ids(receipts.messages)) >= 50, timeout=60)
            procs[0].send_signal(signal.SIGKILL)  # mid-stream: what it held is re-sent
            procs[0].wait(10)
            streamer.join(120)
            wait_until(
                lambda: outbox_counts(hub)["pending"] == 0 and outbox_counts(hub)["sent"] == 0,
                timeout=180,
                what="every event receipted (the hub re-sends what the dead one held)",
            )
            receipted = set(receipt_ids(receipts.messages))
        ids = stored(pg_url)
        assert len(ids) == len(set(ids))  # each event once, whichever receiver stored it
        assert set(emitted) <= set(ids)
        assert set(emitted) <= receipted
        assert receipted <= set(ids)  # no receipt for an event the record lacks
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def online_receivers(statuses: Subscriber) -> set[str]:
    """The receivers that said "online" (each does once its subscription is in place)."""
    return {m.json()["receiver"] for m in statuses.messages if m.json().get("state") == "online"}


# -- two consoles on one store -------------------------------------------------------------


def station_config(tmp_path: Path, url: str) -> ReceiverConfig:
    data = {
        "receiver": {"commune": COMMUNE, "store": url, "share_group": "police"},
        "hubs": [{"id": HUB, "name": "Chợ An Đông"}],
        "supervision": {"window_s": 120},
    }
    return parse_receiver_config(data, base_dir=tmp_path, env={})


@pytest.fixture
def stations(
    mosquitto: Broker, pg_url: str, tmp_path: Path
) -> Iterator[Callable[[str, Path], Station]]:
    started: list[Station] = []

    def start(name: str, data_dir: Path) -> Station:
        broker = BrokerSettings(mosquitto.host, mosquitto.port, client_id=f"console-{name}")
        station = Station(data_dir, station_config(tmp_path, pg_url), broker)
        station.start()
        started.append(station)
        assert station.receiver.wait_subscribed(10)
        return station

    yield start
    for station in started:
        station.stop()


def events_of(station: Station, alert_id: int) -> int:
    alert = station.desk.alerts.get(alert_id)
    return alert.events if alert is not None else 0


def panics(station: Station) -> list[Any]:
    return [a for a in station.desk.alerts.search(limit=100) if a.kind == "panic"]


def test_two_consoles_one_store_one_desk_does_the_work_and_the_other_takes_over(
    stations: Callable[[str, Path], Station], mosquitto: Broker, tmp_path: Path
) -> None:
    a_dir, b_dir = shared_key_dirs(tmp_path, "console-a", "console-b")
    first = stations("a", a_dir)
    wait_until(lambda: first.desk.leadership.held, timeout=30, what="the first console leads")
    second = stations("b", b_dir)
    heard: list[dict[str, Any]] = []
    second.desk.listen(heard.append)
    with sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False) as hub:
        press_and_release(hub)
        wait_until(lambda: panics(first), timeout=30, what="the panic's alert")
        [alert] = panics(first)
        assert not second.desk.leadership.held
        # The other console's pages are told too, from the audit trail.
        wait_until(
            lambda: {"type": "alert", "id": alert.id, "action": "opened"} in heard,
            timeout=30,
            what="the second console told of the alert",
        )
        second.desk.acknowledge(alert.id, "officer-7")  # any console takes actions
        first.stop()
        wait_until(lambda: second.desk.leadership.held, timeout=30, what="the second takes over")
        wait_until(
            lambda: outbox_counts(hub)["pending"] == 0 and outbox_counts(hub)["sent"] == 0,
            timeout=60,
        )
        before = events_of(second, alert.id)
        press_and_release(hub)  # within the incident window: joins the same alert
        wait_until(
            lambda: events_of(second, alert.id) > before,
            timeout=60,
            what="the second panic followed by the new holder",
        )
    # The hub stopped cleanly: one communication trouble, raised by the holder alone.
    wait_until(
        lambda: [a for a in second.desk.alerts.search(limit=100) if a.kind == "comm_trouble"],
        timeout=60,
    )
    troubles = [a for a in second.desk.alerts.search(limit=100) if a.kind == "comm_trouble"]
    assert len(troubles) == 1
    assert len(panics(second)) == 1  # never a second alert for one incident
