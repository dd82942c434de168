"""The hub's link to the broker: a silent link found and reported, a client-id takeover seen
and backed off from, the receiver's "online" message, hostile receipts.

Real Mosquitto, the real simulated hub. The silent link is a TCP proxy the test runs on
loopback between hub and broker: it forwards both ways until told to swallow, then reads and
drops every byte without closing anything, as a dead NAT entry does.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from certs import make_certs
from paho.mqtt.enums import CallbackAPIVersion

from core.errors import ConfigError
from core.topics import HubTopics, receiver_status_topic
from gateway.broker import BrokerSettings
from gateway.service import status_led_name
from gateway.uplink import Uplink, UplinkHandlers
from settings import Config
from testkit.hubs import (
    COMMUNE,
    EVENTS,
    outbox_counts,
    parse_sim_config,
    press_and_release,
    sim_config_data,
    sim_hub,
)
from testkit.mqtt import Message, Subscriber, publish_once
from testkit.proxy import BlackHole
from testkit.waiting import wait_until

SILENT_WITHIN_S = 20.0  # the requirement with the default ping_interval_s and link_timeout_s
LED = "status-led"


def config_data(**uplink: Any) -> dict[str, Any]:
    """The default simulated hub without its camera and sensor bus (quicker to start)."""
    return sim_config_data(camera=False, sensor_bus=False, uplink=uplink)


def hub_config(**uplink: Any) -> Config:
    return parse_sim_config(config_data(**uplink))


def events(messages: list[Message], kind: str, qualifier: str | None = None) -> list[Any]:
    found = [m.json() for m in messages if m.topic.endswith(f"/event/{kind}")]
    return [e for e in found if qualifier is None or e["qualifier"] == qualifier]


@pytest.fixture
def black_hole(mosquitto: Any):
    proxy = BlackHole(mosquitto)
    try:
        yield proxy
    finally:
        proxy.close()


def led_blinks(hub: Any, timeout: float = 5.0) -> bool:
    """The status LED seen both on and off (sampled every 10 ms)."""
    seen: set[bool] = set()
    wait_until(
        lambda: seen.add(hub.board.outputs()[LED]) or len(seen) == 2, timeout, "the LED blinking"
    )
    return True


def test_a_silent_link_is_found_shown_and_reported_and_a_panic_of_the_silence_arrives(
    mosquitto: Any, black_hole: BlackHole, tmp_path: Path
) -> None:
    cfg = hub_config(receipts=False)
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(black_hole, tmp_path / "hub", cfg) as hub,
    ):
        wait_until(lambda: hub.status()["online"], what="hub online through the proxy")
        wait_until(lambda: hub.hub.uplink_health()["rtt_ms"] is not None, what="a ping echo")
        wait_until(lambda: hub.board.outputs()[LED], 5, "the status LED on")
        assert hub.hub.uplink_health()["state"] == "online"

        black_hole.swallow()
        wait_until(lambda: not hub.status()["online"], SILENT_WITHIN_S + 5, "the silence noticed")
        health = hub.hub.uplink_health()
        assert health["state"] == "silent" and health["cause"] == "silent", health
        assert health["outages"] == 1 and health["silent"] == 1
        assert led_blinks(hub)
        assert hub.board.outputs()["siren"] is False  # the LED is not the siren

        press_and_release(hub)
        assert hub.board.outputs()["siren"] is True  # the siren needs no link
        wait_until(
            lambda: hub.hub.uplink_health()["trouble_reported"],
            cfg.uplink.trouble_after_s + 5,
            "the outage passing trouble_after_s",
        )
        assert not events(sub.messages, "panic") and not events(sub.messages, "uplink")

        black_hole.heal()
        got = sub.wait_until(
            lambda ms: bool(events(ms, "panic") and events(ms, "uplink", "R")), timeout=90
        )
        wait_until(lambda: hub.status()["online"], what="online again")
        wait_until(lambda: hub.board.outputs()[LED], 5, "the status LED steady on")
        samples = []
        for _ in range(30):  # steady: on at every sample over more than a blink period
            samples.append(hub.board.outputs()[LED])
            time.sleep(0.05)
        assert all(samples), samples
        health = hub.hub.uplink_health()

    [new] = events(got, "uplink", "E")
    [restore] = events(got, "uplink", "R")
    [panic] = events(got, "panic")
    assert new["cid"] == 350 and new["data"] == {"cause": "silent"}
    assert new["ts"] < panic["ts"]  # stamped when the link was lost, before the press
    assert restore["data"]["cause"] == "silent"
    assert restore["data"]["down_s"] >= cfg.uplink.trouble_after_s
    assert health["state"] == "online" and health["last_down_s"] == restore["data"]["down_s"]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_short_blip_is_healed_and_reports_no_trouble(
    tls: bool, mosquitto_factory: Any, tmp_path: Path
) -> None:
    # A link found silent after 2 s that comes back at once is no police matter. Under TLS the
    # drop must work as well: the socket is shut under paho's SSL object.
    broker_table: dict[str, Any] = {}
    extra = ""
    if tls:
        certs = make_certs(tmp_path / "pki", clients=[])
        extra = f"cafile {certs.ca}\ncertfile {certs.server.cert}\nkeyfile {certs.server.key}"
        broker_table = {"tls": {"ca_file": str(certs.ca)}}
    broker = mosquitto_factory(name="broker", extra_config=extra)
    data = config_data(receipts=False, ping_interval_s=0.5, link_timeout_s=2)
    data["broker"].update(broker_table)
    cfg = parse_sim_config(data)
    proxy = BlackHole(broker)
    try:
        with sim_hub(proxy, tmp_path / "hub", cfg) as hub:
            wait_until(lambda: hub.status()["online"], what="hub online")
            wait_until(lambda: hub.hub.uplink_health()["rtt_ms"] is not None, what="an echo")
            proxy.swallow()
            wait_until(lambda: not hub.status()["online"], 10, "the silence noticed")
            proxy.heal()
            wait_until(lambda: hub.status()["online"], 60, "online again")
            press_and_release(hub)
            wait_until(lambda: outbox_counts(hub)["delivered"] == 1, what="the panic delivered")
            counts = outbox_counts(hub)
            health = hub.hub.uplink_health()
    finally:
        proxy.close()
    assert health["outages"] == 1 and health["silent"] == 1
    assert counts["delivered"] == 1  # the panic only: no uplink trouble in the outbox


def test_a_client_id_takeover_is_logged_counted_and_backed_off_from(
    mosquitto: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = hub_config(receipts=False)
    caplog.set_level(logging.INFO, logger="gateway")
    with Subscriber(mosquitto, EVENTS) as sub, sim_hub(mosquitto, tmp_path / "hub", cfg) as hub:
        wait_until(lambda: hub.status()["online"], what="hub online")
        connects_before = hub.hub.uplink.stats.connects

        # A second "hub" with the same client id that comes back a second after each knock.
        intruder = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=mqtt.MQTTv5
        )
        intruder.reconnect_delay_set(min_delay=1, max_delay=1)
        intruder.connect_async(mosquitto.host, mosquitto.port)
        intruder.loop_start()
        try:
            wait_until(lambda: hub.hub.uplink_health()["takeovers"] >= 1, 10, "a takeover")
            assert hub.status()["online"] is False
            end = time.monotonic() + 20.0
            while time.monotonic() < end:
                time.sleep(0.2)
            connects_during = hub.hub.uplink.stats.connects - connects_before
        finally:
            intruder.disconnect()
            intruder.loop_stop()

        # Without a backoff the two knock each other off every second or two.
        assert connects_during <= 2, connects_during
        health = hub.hub.uplink_health()
        assert health["takeovers"] >= 1 and health["cause"] == "takeover"
        told = [r for r in caplog.records if "another client is using" in r.getMessage()]
        assert len(told) == 1, [r.getMessage() for r in told]
        assert f"this hub's client id {cfg.client_id}: a second hub" in told[0].getMessage()

        wait_until(lambda: hub.status()["online"], 60, "online once the intruder left")
        got = sub.wait_until(lambda ms: bool(events(ms, "uplink", "R")), timeout=30)
    [restore] = events(got, "uplink", "R")
    assert restore["data"]["cause"] == "takeover"


def test_the_receivers_online_message_resends_what_is_unreceipted(
    mosquitto: Any, tmp_path: Path
) -> None:
    cfg = hub_config(receipts=True, receipt_timeout_s=600)
    topic = receiver_status_topic(COMMUNE)
    with Subscriber(mosquitto, EVENTS) as sub, sim_hub(mosquitto, tmp_path / "hub", cfg) as hub:
        wait_until(lambda: hub.status()["online"], what="hub online")
        emitted = hub.handle({"cmd": "emit", "kind": "telemetry", "count": 3})
        press_and_release(hub)
        ids = {e["id"] for e in emitted["events"]}
        got = sub.wait_until(lambda ms: len(events(ms, "panic")) == 1 and len(ms) >= 4)
        ids |= {events(got, "panic")[0]["id"]}
        wait_until(lambda: outbox_counts(hub)["sent"] == 4, what="all four sent, no receipts")

        # Not "online", or not a status at all: nothing is sent again.
        publish_once(mosquitto, topic, [json.dumps({"state": "offline"}), b"[[[", b'{"state": 7}'])
        wait_until(lambda: hub.hub.uplink_health()["bad_receiver_status"] == 2, what="counted")
        hub.hub.dispatcher.call(lambda outbox: None).result(timeout=10)  # after any re-send
        assert hub.hub.dispatcher.stats.resent == 0

        # Back with the session the broker kept: what it missed is queued for it, a re-send
        # would arrive twice. (The malformed one after it shows the first was taken.)
        kept = {"state": "online", "receiver": "r1", "session_present": True}
        publish_once(mosquitto, topic, [json.dumps(kept), b"[[["])
        wait_until(lambda: hub.hub.uplink_health()["bad_receiver_status"] == 3, what="counted")
        hub.hub.dispatcher.call(lambda outbox: None).result(timeout=10)
        assert hub.hub.dispatcher.stats.resent == 0

        fresh = {"state": "online", "receiver": "r1", "session_present": False}
        publish_once(mosquitto, topic, json.dumps(fresh), retain=True)

        def twice(messages: list[Message]) -> bool:
            seen = [m.json()["id"] for m in messages]
            return all(seen.count(i) == 2 for i in ids)

        sub.wait_until(twice, timeout=10)  # receipt_timeout_s is 600: only this path sends
        assert hub.status()["online"]


def test_hostile_receipts_are_counted_and_a_genuine_one_still_works(
    mosquitto: Any, tmp_path: Path
) -> None:
    cfg = hub_config(receipts=True, receipt_timeout_s=600)
    with Subscriber(mosquitto, EVENTS) as sub, sim_hub(mosquitto, tmp_path / "hub", cfg) as hub:
        wait_until(lambda: hub.status()["online"], what="hub online")
        press_and_release(hub)
        [msg] = sub.wait_for(1)
        panic_id = msg.json()["id"]
        wait_until(lambda: outbox_counts(hub)["sent"] == 1, what="the panic sent")
        receipt = hub.hub.topics.receipt
        nested = b"[" * 100_000 + b"]" * 100_000
        huge = f'{{"ids": ["{panic_id}"], "n": {"9" * 400}}}'.encode()
        publish_once(mosquitto, receipt, [nested, huge])
        wait_until(lambda: hub.hub.uplink.stats.bad_receipts == 2, what="both counted")
        assert hub.status()["online"]
        assert outbox_counts(hub)["sent"] == 1  # the refused receipt delivered nothing

        publish_once(mosquitto, receipt, json.dumps({"ids": [panic_id]}))
        wait_until(lambda: outbox_counts(hub)["delivered"] == 1, what="the genuine receipt")
        assert hub.hub.uplink.stats.bad_receipts == 2


# -- configuration ----------------------------------------------------------------------------


def config_errors(**uplink: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        hub_config(**uplink)
    return list(info.value.errors)


def test_the_link_timeout_must_be_longer_than_the_ping_interval() -> None:
    [(path, message)] = config_errors(ping_interval_s=10, link_timeout_s=10)
    assert path == "uplink.link_timeout_s" and "ping_interval_s" in message


def test_the_status_led_must_name_an_output_no_rule_drives() -> None:
    [(path, message)] = config_errors(status_led="led-9")
    assert path == "uplink.status_led" and "no output named 'led-9'" in message
    [(path, message)] = config_errors(status_led="siren")
    assert path == "uplink.status_led" and "rules[0]" in message


def test_the_status_led_defaults_to_the_first_led_output() -> None:
    assert status_led_name(hub_config()) == LED
    data = config_data()
    data["outputs"] = [o for o in data["outputs"] if o["kind"] != "led"]
    cfg = parse_sim_config(data)
    assert status_led_name(cfg) is None


class TakeoverBroker:
    """Just enough of an MQTT 5 broker to accept a CONNECT, then end the session with a
    DISCONNECT of reason 142 (Session taken over), as MQTT 5 brokers do when another client
    connects with the same client id. (Mosquitto 2.0.11 closes the connection without a word:
    the test with the real broker above covers that.)"""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()[:2]
        self.connections = 0
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._thread.join(5.0)
        self.listener.close()

    def _serve(self) -> None:
        while not self._closed:
            ready, _, _ = select.select([self.listener], [], [], 0.1)
            if not ready:
                continue
            conn, _ = self.listener.accept()
            self.connections += 1
            with conn:
                conn.settimeout(5.0)
                conn.recv(65536)  # the CONNECT (small, in one segment on loopback)
                conn.sendall(b"\x20\x03\x00\x00\x00")  # CONNACK: accepted, no properties
                time.sleep(0.3)
                conn.sendall(b"\xe0\x02\x8e\x00")  # DISCONNECT, reason 0x8E, no properties


def test_an_mqtt5_session_taken_over_is_known_at_once_and_backed_off_from(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    broker = TakeoverBroker()
    uplink = Uplink(
        BrokerSettings(broker.host, broker.port, client_id="tuquan-c1-hub-1"),
        HubTopics("c1", "hub-1"),
        UplinkHandlers(
            connected=lambda: None,
            disconnected=lambda: None,
            published=lambda mid, ok: None,
            receipt=lambda ids: None,
            command=lambda name, payload, retained, expiry_s: None,
        ),
    )
    uplink.start()
    try:
        wait_until(lambda: uplink.stats.takeovers == 1, 10, "the takeover")
        assert uplink.health()["cause"] == "takeover"
        end = time.monotonic() + 20.0
        while time.monotonic() < end:
            time.sleep(0.2)
        assert broker.connections == 1  # no reconnect yet: it waits at least 30 s
    finally:
        uplink.stop()
        broker.close()
    told = [r for r in caplog.records if "another client is using" in r.getMessage()]
    assert len(told) == 1 and "tuquan-c1-hub-1" in told[0].getMessage()
