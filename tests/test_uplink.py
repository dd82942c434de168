"""The uplink on its own against a real Mosquitto: its reconnect backoff after a broker restart,
its retained status and will, and the pings that find a silent link and see it back.

No hub: the uplink reports to handlers that note what they are told and when. While the broker
is down, a "door" listens on its port in its place: it notes each connection attempt and closes
it at once, so the test sees when the uplink tries again. The times are compared with each
other (a gap longer than the one before), never with a fixed number of seconds, but for the
floor of paho's backoff: a hub never retries sooner than a second after a loss.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.topics import HubTopics
from gateway.broker import BrokerSettings
from gateway.uplink import (
    LINK_ONLINE,
    LINK_SILENT,
    LinkStatus,
    Liveness,
    Uplink,
    UplinkHandlers,
)
from testkit.broker import Broker
from testkit.mqtt import HasAddress, Subscriber
from testkit.proxy import BlackHole
from testkit.waiting import wait_until

TOPICS = HubTopics("c1", "hub-1")
QUICK = Liveness(ping_interval_s=0.5, link_timeout_s=2.0)
MIN_DELAY_S = 1.0  # the least reconnect delay the uplink draws
TAKEOVER_SUSPECT_S = 11.0  # past the uplink's 10 s: a close after this is no takeover


class Noted:
    """Handlers that note each call (with its time.monotonic()) and each link status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str, float]] = []
        self.links: list[LinkStatus] = []

    def _note(self, name: str) -> None:
        with self._lock:
            self.calls.append((name, time.monotonic()))

    def _link(self, status: LinkStatus) -> None:
        with self._lock:
            self.links.append(status)

    def times(self, name: str) -> list[float]:
        with self._lock:
            return [t for n, t in self.calls if n == name]

    def states(self) -> list[str]:
        with self._lock:
            return [s.state for s in self.links]

    def handlers(self) -> UplinkHandlers:
        return UplinkHandlers(
            connected=lambda: self._note("connected"),
            disconnected=lambda: self._note("disconnected"),
            published=lambda mid, accepted: None,
            receipt=lambda ids: None,
            command=lambda name, payload, retained, expiry_s: None,
            link_changed=self._link,
        )


@pytest.fixture
def make_uplink() -> Iterator[Callable[..., tuple[Uplink, Noted]]]:
    """``make_uplink(broker, liveness=...)``: a started uplink and what its handlers noted."""
    started: list[Uplink] = []

    def make(broker: HasAddress, liveness: Liveness | None = None) -> tuple[Uplink, Noted]:
        noted = Noted()
        settings = BrokerSettings(broker.host, broker.port, client_id="tuquan-c1-hub-1")
        uplink = Uplink(settings, TOPICS, noted.handlers(), liveness=liveness)
        started.append(uplink)
        uplink.start()
        return uplink, noted

    yield make
    for uplink in started:
        uplink.stop()


class Door:
    """Listens on a stopped broker's port; notes each connection attempt and closes it."""

    def __init__(self, broker: Broker) -> None:
        assert not broker.running
        self.listener = socket.create_server((broker.host, broker.port))
        self.attempts: list[float] = []  # time.monotonic() of each accepted connection
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            ready, _, _ = select.select([self.listener], [], [], 0.05)
            if ready:
                conn, _ = self.listener.accept()
                self.attempts.append(time.monotonic())
                conn.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5.0)
        self.listener.close()

    def __enter__(self) -> Door:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def online_through(
    proxy: BlackHole, make_uplink: Callable[..., tuple[Uplink, Noted]]
) -> tuple[Uplink, Noted]:
    """An uplink with quick pings, online through the proxy."""
    uplink, noted = make_uplink(proxy, liveness=QUICK)
    wait_until(lambda: uplink.online, what="online through the proxy")
    return uplink, noted


def retained_status(broker: Broker) -> bytes:
    """The hub's status as a new subscriber gets it from the broker."""
    with Subscriber(broker, TOPICS.status) as sub:
        [message] = sub.wait_for(1)
    assert message.retain
    return message.payload


def attempts_after_a_stop(
    broker: Broker, noted: Noted, count: int, timeout: float = 60.0
) -> tuple[float, list[float]]:
    """Stop the broker with the uplink connected; (when the uplink heard it go, the times of
    its first ``count`` attempts to come back). The broker stays stopped."""
    before = len(noted.times("disconnected"))
    broker.stop()
    with Door(broker) as door:
        wait_until(lambda: len(door.attempts) >= count, timeout, f"{count} reconnect attempts")
        attempts = door.attempts[:count]
    return noted.times("disconnected")[before], attempts


# -- reconnect and backoff ---------------------------------------------------------------------


def test_after_a_broker_restart_it_reconnects_with_a_backoff_that_grows_and_then_resets(
    mosquitto: Broker, make_uplink: Callable[..., tuple[Uplink, Noted]]
) -> None:
    uplink, noted = make_uplink(mosquitto)
    wait_until(lambda: uplink.connected, what="connected")

    down, (first, second) = attempts_after_a_stop(mosquitto, noted, 2)
    mosquitto.start()  # the third attempt finds it
    # The handler, not the counter: the counter goes up before the handler runs.
    wait_until(lambda: len(noted.times("connected")) == 2, 60, "connected again")
    back = noted.times("connected")[-1]
    gaps = [first - down, second - first, back - second]
    assert gaps[0] >= MIN_DELAY_S, gaps  # not at once: 4,000 hubs would hammer the broker
    assert gaps[0] < gaps[1] < gaps[2], gaps  # each wait longer than the one before
    assert uplink.connected and uplink.online

    # Connected again, the backoff starts over from its first delay. (Once the connection is
    # older than the uplink's takeover suspicion: a broker that closes a connection just made,
    # within a minute of closing the one before, is taken for another client using the hub's
    # id, as Mosquitto 2.0 gives no reason, and that waits 30 s or more on purpose.)
    time.sleep(TAKEOVER_SUSPECT_S)
    down, (first,) = attempts_after_a_stop(mosquitto, noted, 1)
    assert MIN_DELAY_S <= first - down < gaps[1], (first - down, gaps)
    mosquitto.start()
    wait_until(lambda: uplink.stats.connects == 3, 60, "connected a third time")


@pytest.mark.slow
def test_the_reconnect_backoff_stops_growing(
    mosquitto: Broker, make_uplink: Callable[..., tuple[Uplink, Noted]]
) -> None:
    # Doubling from a second or two, the waits reach their cap within a minute and a half;
    # from then on they stay the same (doubling never gives two waits alike).
    uplink, noted = make_uplink(mosquitto)
    wait_until(lambda: uplink.connected, what="connected")
    before = len(noted.times("disconnected"))
    mosquitto.stop()
    with Door(mosquitto) as door:

        def plateau() -> bool:
            times = [noted.times("disconnected")[before], *door.attempts]
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            return len(gaps) >= 2 and gaps[-1] < 1.2 * gaps[-2]

        wait_until(plateau, 180, "two reconnect waits alike")
        times = [noted.times("disconnected")[before], *door.attempts]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) >= 4, gaps  # it did grow first (at least 1, 2, 4 s), then stopped
    assert all(b > a for a, b in zip(gaps[:-2], gaps[1:-1], strict=True)), gaps


# -- status and will --------------------------------------------------------------------------


def test_the_status_is_retained_online_offline_by_the_will_on_a_lost_link_and_on_a_clean_stop(
    mosquitto: Broker, make_uplink: Callable[..., tuple[Uplink, Noted]]
) -> None:
    with BlackHole(mosquitto) as proxy:
        uplink, _ = online_through(proxy, make_uplink)
        wait_until(lambda: retained_status(mosquitto) == b"online", what="online retained")

        with Subscriber(mosquitto, TOPICS.status) as sub:
            sub.wait_for(1)
            proxy.swallow()
            # The uplink finds the link silent and drops it: the broker sees the connection
            # end without a DISCONNECT and publishes the will.
            got = sub.wait_until(lambda ms: ms[-1].payload == b"offline", timeout=30)
        assert [m.payload for m in got] == [b"online", b"offline"]
        assert retained_status(mosquitto) == b"offline"

        proxy.heal()
        wait_until(lambda: uplink.stats.connects == 2, 60, "connected again")
        wait_until(lambda: retained_status(mosquitto) == b"online", what="online again")

        uplink.stop()  # a clean disconnect fires no will: the uplink says it itself
        assert retained_status(mosquitto) == b"offline"


def test_an_offline_status_written_by_someone_else_is_put_right(
    mosquitto: Broker, make_uplink: Callable[..., tuple[Uplink, Noted]]
) -> None:
    uplink, _ = make_uplink(mosquitto)
    wait_until(lambda: uplink.online, what="online")
    wait_until(lambda: retained_status(mosquitto) == b"online", what="online retained")
    with Subscriber(mosquitto) as outsider:
        for _ in range(2):
            outsider.publish(TOPICS.status, b"offline", retain=True)
            wait_until(lambda: retained_status(mosquitto) == b"online", what="put right")
    assert uplink.own_status.overwritten == 2
    assert uplink.health()["status_overwritten"] == 2
    assert uplink.stats.connects == 1  # nothing else happened to the link
    uplink.stop()  # its own clean "offline" is not taken for someone else's
    assert retained_status(mosquitto) == b"offline"


# -- liveness ---------------------------------------------------------------------------------


def test_an_idle_link_stays_online_on_its_pings(
    mosquitto: Broker, make_uplink: Callable[..., tuple[Uplink, Noted]]
) -> None:
    uplink, noted = make_uplink(mosquitto, liveness=QUICK)
    wait_until(lambda: uplink.online, what="online")
    # Three link timeouts with nothing of the hub's own to send: only the pings and their
    # echoes show the link alive.
    wait_until(lambda: uplink.stats.echoes >= 12, 30, "12 ping echoes")
    assert uplink.stats.silent == 0 and uplink.stats.connects == 1
    assert noted.states() == [LINK_ONLINE]
    assert uplink.health()["rtt_ms"] is not None


def test_a_silent_link_is_marked_silent_dropped_and_seen_back(
    mosquitto: Broker, make_uplink: Callable[..., tuple[Uplink, Noted]]
) -> None:
    with BlackHole(mosquitto) as proxy:
        uplink, noted = online_through(proxy, make_uplink)
        wait_until(lambda: uplink.stats.echoes >= 1, what="a ping echo")

        proxy.swallow()  # TCP stays open, nothing passes
        wait_until(lambda: uplink.health()["state"] == LINK_SILENT, 30, "the silence found")
        health: dict[str, Any] = uplink.health()
        assert health["cause"] == "silent" and health["silent"] == 1 and health["outages"] == 1
        assert not uplink.connected and not uplink.online
        assert noted.times("disconnected")  # the dispatcher was told the link is gone

        proxy.heal()
        wait_until(lambda: uplink.online, 60, "online again")
        assert noted.states() == [LINK_ONLINE, LINK_SILENT, LINK_ONLINE]
        silent, back = noted.links[1], noted.links[2]
        assert silent.outage is not None and silent.outage.cause == "silent"
        assert back.ended is not None and back.ended.cause == "silent" and back.outage is None
        assert back.down_s is not None and uplink.health()["last_down_s"] == back.down_s
        assert uplink.stats.connects == 2
