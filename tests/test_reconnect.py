"""Alarms pressed while the broker is down reach the receiver as soon as the broker and the
receiver are back: with and without broker persistence, whichever of the hub and the receiver
reconnects first.

The hub's receipt timeout is set far beyond the tests' waits, so only the early re-send (on
the hub's reconnect, and on the receiver's "online" message) can deliver in time.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from commune.receiver import Receiver
from commune.store import EventStore
from hw_sim.simulator import SimulatedHub
from testkit.hubs import COMMUNE, outbox_counts, press_and_release, sim_hub
from testkit.waiting import wait_until

WAIT_S = 20.0  # far less than the receipt timeout below


def hub_on(broker: Any, data_dir: Path) -> AbstractContextManager[SimulatedHub]:
    """The default simulated hub without its camera and sensor bus, receipts on, and a receipt
    timeout far beyond the tests' waits."""
    return sim_hub(
        broker,
        data_dir,
        camera=False,
        sensor_bus=False,
        uplink={"receipts": True, "receipt_timeout_s": 600},
    )


def new_receiver(broker: Any, data_dir: Path) -> Receiver:
    r = Receiver(broker.host, broker.port, COMMUNE, data_dir / "receiver.sqlite3", keepalive=5)
    r.start()
    return r


def stored(data_dir: Path) -> list[dict[str, Any]]:
    with EventStore(data_dir / "receiver.sqlite3") as store:
        return [e for e in store.recent(1000) if e["kind"] == "panic"]


@pytest.fixture(params=[False, True], ids=["no-persistence", "persistence"])
def broker(request: pytest.FixtureRequest, mosquitto_factory: Callable[..., Any]) -> Any:
    return mosquitto_factory(name="broker", persistent=request.param)


def test_alarms_of_an_outage_arrive_when_the_hub_is_back_first(broker, tmp_path: Path) -> None:
    receiver = new_receiver(broker, tmp_path)
    try:
        assert receiver.wait_subscribed(10)
        with hub_on(broker, tmp_path / "hub") as hub:
            wait_until(lambda: hub.hub.uplink.connected, what="hub online")
            press_and_release(hub)
            wait_until(lambda: len(stored(tmp_path)) == 1, WAIT_S, "first panic stored")
            broker.stop()
            receiver.stop()
            press_and_release(hub)
            press_and_release(hub)
            broker.start()
            # The hub is back and publishes before any receiver is subscribed: the broker
            # acknowledges and (without persistence) drops.
            wait_until(lambda: outbox_counts(hub)["sent"] >= 2, WAIT_S, "re-published")
            receiver = new_receiver(broker, tmp_path)
            wait_until(lambda: len(stored(tmp_path)) == 3, WAIT_S, "outage panics stored")
            wait_until(lambda: outbox_counts(hub)["delivered"] == 3, WAIT_S, "receipted")
    finally:
        receiver.stop()


def test_alarms_of_an_outage_arrive_when_the_receiver_is_back_first(broker, tmp_path: Path) -> None:
    receiver = new_receiver(broker, tmp_path)
    try:
        assert receiver.wait_subscribed(10)
        with hub_on(broker, tmp_path / "hub") as hub:
            wait_until(lambda: hub.hub.uplink.connected, what="hub online")
            press_and_release(hub)
            wait_until(lambda: len(stored(tmp_path)) == 1, WAIT_S, "first panic stored")
            broker.stop()
            press_and_release(hub)
            press_and_release(hub)
            # The hub stays away (stopped, its outbox on disk) until the receiver is back.
        broker.start()
        wait_until(lambda: receiver.wait_subscribed(0.1), WAIT_S, "receiver subscribed")
        with hub_on(broker, tmp_path / "hub") as hub:
            wait_until(lambda: len(stored(tmp_path)) == 3, WAIT_S, "outage panics stored")
            wait_until(lambda: outbox_counts(hub)["delivered"] == 3, WAIT_S, "receipted")
    finally:
        receiver.stop()
