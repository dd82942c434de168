"""``console.run.run_console`` wires a real receiver on a real Mosquitto, the real duty desk and
the web server in one process: a hub's panic published on MQTT is stored, receipted and on the
queue page without anyone asking the desk; setting ``stop`` ends all three."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import httpx
import uvicorn
from console_kit import COMMUNE, PASSWORD, Browser, console_config

from commune.db import Db
from commune.launch import receiver_broker_settings
from console.accounts import Accounts
from console.run import run_console
from core.events import Event
from core.topics import HubTopics
from testkit.broker import Broker, free_port
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until


def test_run_console_receives_shows_and_stops(mosquitto: Broker, tmp_path: Path) -> None:
    config = console_config(tmp_path)
    data = tmp_path / "data"
    port = free_port()
    servers: list[uvicorn.Server] = []

    broker = receiver_broker_settings(config, COMMUNE, (mosquitto.host, mosquitto.port))
    stop = threading.Event()
    exit_status: list[int] = []
    runner = threading.Thread(
        target=lambda: exit_status.append(
            run_console(
                config,
                data,
                ("127.0.0.1", port),
                broker,
                stop,
                on_server=servers.append,
            )
        ),
        daemon=True,
    )
    runner.start()
    try:
        wait_until(lambda: servers and servers[0].started, 30, "the console to listen")
        assert (data / "receiver.sqlite3").exists() and (data / "commune.key").exists()

        topics = HubTopics(COMMUNE, "cho-1")
        event = dataclasses.replace(Event(kind="panic", zone="panic-1", source="panic-1"), seq=1)
        with Subscriber(mosquitto, topics.receipt) as hub:
            wait_until(lambda: _publish_until_receipted(hub, topics, event), 30, "a receipt")

        Accounts(Db(data / "receiver.sqlite3")).add_user("op1", "operator", PASSWORD)
        client = Browser(f"http://127.0.0.1:{port}")
        try:
            assert client.login("op1").status_code == 303
            # The desk opens the alert by itself once the receiver has stored the event.
            wait_until(
                lambda: (
                    'data-hub="cho-1" data-kind="panic"'
                    in client.get("/", headers={"accept-language": "en"}).text
                ),
                30,
                "the panic on the queue page",
            )
        finally:
            client.close()
    finally:
        stop.set()
        runner.join(60)
    assert not runner.is_alive() and exit_status == [0]
    try:
        httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
        raise AssertionError("the console still answers after stop")
    except httpx.TransportError:
        pass


def _publish_until_receipted(hub: Subscriber, topics: HubTopics, event: Event) -> bool:
    """Publish like a hub's outbox (again, until the receiver, still subscribing, answers)."""
    hub.publish(topics.event(event.kind), event.to_json("cho-1"))
    try:
        hub.wait_for(1, timeout=1)
    except AssertionError:
        return False
    return True
