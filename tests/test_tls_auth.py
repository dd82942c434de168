"""The hub and the commune receiver over TLS with authentication, and a broker ACL that stops a
hub from speaking for another one. Real Mosquitto, real hub on simulated hardware, real
receiver; every test makes its own CA, password file and ACL under tmp_path.

What Mosquitto 2.0.11 does with a publish its ACL denies (checked here, not assumed):
- MQTT 5, QoS 1: it answers PUBACK with reason code 0x87 (Not authorized), keeps the connection
  open, and delivers the message to nobody;
- QoS 0: it drops the message silently (there is no answer to carry a reason);
- MQTT 3.1.1, QoS 1: the PUBACK cannot carry a reason code, so the client sees an ordinary
  PUBACK for a message nobody receives. The hub speaks MQTT 5 and keeps an event until the
  receiver's receipt, so neither silent case loses an event.
Subscriptions are granted whatever the ACL says; the read ACL is applied to each message at
delivery, so a hub subscribed to ``+/event/+`` still sees only its own topics.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from certs import CertAndKey, Certs, make_certs
from paho.mqtt.enums import CallbackAPIVersion

from commune.receiver import Receiver
from commune.store import EventStore
from core.events import Event
from core.topics import HubTopics
from gateway.broker import tls_context
from gateway.outbox import Outbox
from gateway.service import OUTBOX_FILE
from settings import PASSWORD_ENV, Config
from testkit.hubs import (
    COMMUNE,
    EVENTS,
    HUB,
    outbox_counts,
    parse_sim_config,
    press_and_release,
    sim_config_data,
    sim_hub,
)
from testkit.mqtt import Subscriber, publish
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
OTHER_HUB = "other-hub"
RECEIVER = "commune-receiver"  # the receiver's certificate CN, or its username
WATCHER = "watcher"  # a test subscriber's username
PASSWORDS = {
    HUB: "hub-pw-5c1e0b7a9d",
    RECEIVER: "receiver-pw-88f2",
    WATCHER: "watcher-pw-31d4",
}
NOT_AUTHORIZED = 0x87

HUB_ACL = f"""\
# A hub reads and writes only under its own topics; %u is its certificate's CN.
pattern write tuquan/v1/{COMMUNE}/%u/#
pattern read tuquan/v1/{COMMUNE}/%u/#

user {RECEIVER}
topic read tuquan/v1/{COMMUNE}/+/event/#
topic write tuquan/v1/{COMMUNE}/+/receipt
"""

# A hub allowed everything but its events: the broker refuses each event it publishes.
EVENTS_DENIED_ACL = f"""\
pattern read tuquan/v1/{COMMUNE}/%u/#
pattern write tuquan/v1/{COMMUNE}/%u/status
pattern write tuquan/v1/{COMMUNE}/%u/health
pattern write tuquan/v1/{COMMUNE}/%u/cmd_result
pattern write tuquan/v1/{COMMUNE}/%u/ping
"""


# -- helpers -------------------------------------------------------------------------------


def hub_config(base_dir: Path, env: dict[str, str] | None = None, **sections: Any) -> Config:
    """The default simulated hub's config with some sections' keys replaced; relative files
    (credentials, certificates) are found from ``base_dir``, as from a config file's folder."""
    return parse_sim_config(sim_config_data(**sections), base_dir=base_dir, env=env)


def tls_listener(certs: Certs, *, client_certificates: bool = False) -> str:
    """Mosquitto listener lines: TLS with the server certificate of ``certs``; with
    ``client_certificates`` each client must show one from the same CA, and its CN is its
    username (the ACL's ``%u``)."""
    lines = [
        f"cafile {certs.ca}",
        f"certfile {certs.server.cert}",
        f"keyfile {certs.server.key}",
    ]
    if client_certificates:
        lines += ["require_certificate true", "use_identity_as_username true"]
    return "\n".join(lines)


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file made by mosquitto_passwd itself (hashed as the broker wants)."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for i, (user, password) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run([tool, *create, "-b", str(path), user, password], check=True)
    return path


def client_tls(certs: Certs, pair: CertAndKey | None = None) -> ssl.SSLContext:
    return tls_context(certs.ca, pair.cert if pair else None, pair.key if pair else None)


def wait_for_log(broker: Any, text: str, timeout: float = 5.0) -> str:
    """Wait until Mosquitto's log holds ``text``; returns the log."""
    log = ""

    def found() -> bool:
        nonlocal log
        log = broker.log_path.read_text(errors="replace")
        return text in log

    wait_until(found, timeout, what=f"{text!r} in the broker's log")
    return log


def stored_ids(db_path: Path) -> list[str]:
    with EventStore(db_path) as store:
        return store.ids()


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "pki", clients=[HUB, OTHER_HUB, RECEIVER])


@pytest.fixture
def password_broker(mosquitto_factory: Callable[..., Any], tmp_path: Path, certs: Certs) -> Any:
    """TLS, a password for every client, no anonymous access, no ACL (anyone known may do all)."""
    passwords = write_password_file(tmp_path / "mosquitto.passwd", PASSWORDS)
    return mosquitto_factory(
        name="tls-password",
        allow_anonymous=False,
        extra_config=tls_listener(certs) + f"\npassword_file {passwords}",
    )


@pytest.fixture
def start_receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    receivers: list[Receiver] = []

    def start(broker: Any, **kwargs: Any) -> Receiver:
        receiver = Receiver(
            broker.host, broker.port, COMMUNE, tmp_path / "receiver.sqlite3", **kwargs
        )
        receivers.append(receiver)
        receiver.start()
        assert receiver.wait_subscribed(5), "receiver did not subscribe"
        return receiver

    yield start
    for receiver in receivers:
        receiver.stop()


# -- TLS and passwords ---------------------------------------------------------------------


@pytest.mark.parametrize("source", ["credentials_file", "environment", "environment_over_file"])
def test_a_panic_reaches_the_commune_over_tls_with_the_hubs_password(
    source: str,
    tmp_path: Path,
    certs: Certs,
    password_broker: Any,
    start_receiver: Callable[..., Receiver],
) -> None:
    broker_section: dict[str, Any] = {"username": HUB, "tls": {"ca_file": "pki/ca.pem"}}
    env: dict[str, str] = {}
    if source in ("credentials_file", "environment_over_file"):
        # The file's password is the wrong one when the environment must win.
        file_password = PASSWORDS[HUB] if source == "credentials_file" else "stale-file-password"
        (tmp_path / "hub-credentials.toml").write_text(f'password = "{file_password}"\n')
        broker_section["credentials_file"] = "hub-credentials.toml"
    if source.startswith("environment"):
        env[PASSWORD_ENV] = PASSWORDS[HUB]
    cfg = hub_config(tmp_path, env, broker=broker_section)
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == PASSWORDS[HUB]

    # The broker really wants a password: without one, even over TLS, it refuses.
    with pytest.raises(AssertionError, match="connect refused"):
        Subscriber(password_broker, tls=client_tls(certs), timeout=5)

    receiver = start_receiver(
        password_broker, username=RECEIVER, password=PASSWORDS[RECEIVER], tls=client_tls(certs)
    )
    with (
        Subscriber(
            password_broker,
            EVENTS,
            username=WATCHER,
            password=PASSWORDS[WATCHER],
            tls=client_tls(certs),
            timeout=5,
        ) as sub,
        sim_hub(password_broker, tmp_path / "hub", cfg) as hub,
    ):
        uplink = hub.hub.uplink
        wait_until(lambda: uplink.connected, timeout=5, what="hub online over TLS")
        sock = uplink.client.socket()
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        press_and_release(hub)
        # At least once: pressed as the hub connected, the panic may also be re-sent when the
        # receiver's retained "online" reaches it; every copy is the same event.
        msgs = sub.wait_for(1)
        assert len({m.json()["id"] for m in msgs}) == 1
        msg = msgs[0]
        wait_until(lambda: outbox_counts(hub)["delivered"] == 1, timeout=5, what="receipt over TLS")
    event = msg.json()
    assert msg.topic == TOPICS.event("panic")
    assert (event["hub"], event["kind"], event["cid"]) == (HUB, "panic", 120)
    assert stored_ids(tmp_path / "receiver.sqlite3") == [event["id"]]
    assert receiver.stats.stored == 1 and receiver.stats.malformed == 0
    # Mosquitto took it as sim-hub, authenticated by password, speaking MQTT 5.
    assert re.search(
        rf"as {cfg.client_id} \(p5, c\d, k\d+, u'{HUB}'\)", password_broker.log_tail(200)
    )


def test_a_wrong_password_keeps_the_hub_offline_the_event_kept_and_the_secret_out_of_the_log(
    tmp_path: Path, certs: Certs, password_broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-pw-e4a19c0d77"
    (tmp_path / "hub-credentials.toml").write_text(f'password = "{wrong}"\n')
    cfg = hub_config(
        tmp_path,
        broker={
            "username": HUB,
            "credentials_file": "hub-credentials.toml",
            "tls": {"ca_file": "pki/ca.pem"},
        },
    )

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "refused" in r.getMessage()]

    with sim_hub(password_broker, tmp_path / "hub", cfg) as hub:
        press_and_release(hub)
        wait_until(lambda: refusals(), timeout=5, what="the refusal in the hub's log")
        wait_until(lambda: outbox_counts(hub)["pending"] == 1, timeout=5, what="event committed")
        assert hub.hub.uplink.connected is False
        assert hub.hub.uplink.stats.connects == 0
        assert hub.hub.dispatcher.stats.published == 0
        assert outbox_counts(hub) | {"undelivered_alarm": 1} == {
            "pending": 1,
            "sent": 0,
            "delivered": 0,
            "undelivered_alarm": 1,
        }

    assert "Client <unknown> disconnected, not authorised." in password_broker.log_tail(200)
    # Mosquitto 2.0.11 answers a bad password with CONNACK 0x87 Not authorized (not 0x86).
    [first, *_] = refusals()
    assert first.levelno == logging.ERROR and first.name == "gateway.uplink"
    assert first.getMessage() == "broker refused connection: Not authorized"
    # The event outlived the hub: still in its outbox file, waiting for a broker that lets it in.
    outbox = Outbox(tmp_path / "hub" / OUTBOX_FILE, HUB)
    try:
        assert outbox.counts()["pending"] == 1
    finally:
        outbox.close()
    # The password is nowhere in what was logged: messages, arguments, tracebacks.
    assert caplog.records
    for record in caplog.records:
        assert wrong not in record.getMessage()
        assert wrong not in repr(record.args)
        assert wrong not in (record.exc_text or "")
    assert wrong not in caplog.text


@pytest.mark.parametrize("mismatch", ["unknown_ca", "certificate_for_another_host"])
def test_a_broker_certificate_the_hub_cannot_verify_is_refused_and_the_event_kept(
    mismatch: str,
    tmp_path: Path,
    certs: Certs,
    mosquitto_factory: Callable[..., Any],
) -> None:
    # What the hub's TLS layer tells the broker (TLS alert) when it rejects the certificate.
    if mismatch == "unknown_ca":
        # A server certificate for 127.0.0.1 from a CA the hub has never heard of.
        served = make_certs(tmp_path / "stranger-pki", ca_name="a stranger's CA")
        alert = "alert unknown ca"
    else:
        # From the hub's own CA, but naming another host than the one the hub dials.
        elsewhere = certs.authority.server(["broker.example.net"], filename="elsewhere")
        served = dataclasses.replace(certs, server=elsewhere)
        alert = "alert bad certificate"
    passwords = write_password_file(tmp_path / "mosquitto.passwd", PASSWORDS)
    broker = mosquitto_factory(
        name="tls-stranger",
        allow_anonymous=False,
        extra_config=tls_listener(served) + f"\npassword_file {passwords}",
    )
    (tmp_path / "hub-credentials.toml").write_text(f'password = "{PASSWORDS[HUB]}"\n')
    cfg = hub_config(
        tmp_path,
        broker={
            "username": HUB,
            "credentials_file": "hub-credentials.toml",
            "tls": {"ca_file": "pki/ca.pem"},
        },
    )
    with sim_hub(broker, tmp_path / "hub", cfg) as hub:
        press_and_release(hub)
        wait_for_log(broker, alert)
        wait_until(lambda: outbox_counts(hub)["pending"] == 1, timeout=5, what="event committed")
        assert hub.hub.uplink.connected is False
        assert hub.hub.uplink.stats.connects == 0
        assert hub.hub.dispatcher.stats.published == 0
        assert outbox_counts(hub)["delivered"] == 0 and outbox_counts(hub)["sent"] == 0
    assert "New client connected" not in broker.log_tail(200)


def test_a_hub_that_cannot_verify_the_broker_says_so_in_its_log(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stranger = make_certs(tmp_path / "stranger-pki", ca_name="a stranger's CA")
    broker = mosquitto_factory(name="tls-stranger", extra_config=tls_listener(stranger))
    make_certs(tmp_path / "pki")  # the CA the hub trusts
    cfg = hub_config(tmp_path, broker={"tls": {"ca_file": "pki/ca.pem"}})
    with sim_hub(broker, tmp_path / "hub", cfg) as hub:
        wait_for_log(broker, "alert unknown ca")
        assert hub.hub.uplink.connected is False
    assert [
        r for r in caplog.records if r.name.startswith("gateway") and r.levelno >= logging.WARNING
    ], "no warning or error in the hub's log about the failed connection"


# -- client certificates and the ACL -------------------------------------------------------


@pytest.fixture
def acl_broker(
    mosquitto_factory: Callable[..., Any], tmp_path: Path, certs: Certs, request: Any
) -> Any:
    """TLS with a client certificate required, its CN as username, and an ACL (HUB_ACL, or the
    text a test gives with ``@pytest.mark.parametrize("acl_broker", [...], indirect=True)``)."""
    acl = tmp_path / "mosquitto.acl"
    acl.write_text(getattr(request, "param", HUB_ACL))
    return mosquitto_factory(
        name="tls-acl",
        allow_anonymous=False,
        extra_config=tls_listener(certs, client_certificates=True)
        + f"\nacl_file {acl}\nlog_type debug",  # debug: "Denied PUBLISH from <client>"
    )


def cert_hub_config(tmp_path: Path, **sections: Any) -> Config:
    """The hub authenticated by its certificate (CN sim-hub): no username, no password."""
    tls = {
        "ca_file": "pki/ca.pem",
        "cert_file": f"pki/client-{HUB}.pem",
        "key_file": f"pki/client-{HUB}.key",
    }
    return hub_config(tmp_path, broker={"tls": tls}, **sections)


def test_a_hub_cannot_publish_events_in_another_hubs_name(
    tmp_path: Path, certs: Certs, acl_broker: Any, start_receiver: Callable[..., Receiver]
) -> None:
    new_events: list[dict[str, Any]] = []
    receiver = start_receiver(
        acl_broker,
        tls=client_tls(certs, certs.clients[RECEIVER]),
        on_new_event=new_events.append,
    )
    db_path = tmp_path / "receiver.sqlite3"

    with Subscriber(
        acl_broker, client_id=OTHER_HUB, tls=client_tls(certs, certs.clients[OTHER_HUB]), timeout=5
    ) as other:
        # Eavesdropping: the broker grants the subscription but delivers only what the read ACL
        # allows, so the other hub never sees sim-hub's events.
        other.subscribe(f"tuquan/v1/{COMMUNE}/+/event/+")
        # Its own event, on its own topic: accepted, stored, receipted.
        own = Event(kind="tamper", zone="cabinet", source="tamper-1", seq=1)
        accepted = other.publish(
            HubTopics(COMMUNE, OTHER_HUB).event("tamper"), own.to_json(OTHER_HUB)
        )
        assert accepted is not None and not accepted.is_failure
        # A panic in sim-hub's name, payload and topic both: refused.
        forged = Event(kind="panic", zone="guard-post", source="panic-1", seq=1)
        refused = other.publish(TOPICS.event("panic"), forged.to_json(HUB))
        assert refused is not None and refused.is_failure
        assert refused.value == NOT_AUTHORIZED and str(refused) == "Not authorized"
        # ... and at QoS 0 it vanishes without a word.
        assert other.publish(TOPICS.event("panic"), forged.to_json(HUB), qos=0) is None
        # Nor may it forge a receipt that would make sim-hub forget events.
        fake_receipt = other.publish(TOPICS.receipt, b'{"ids":["x"]}')
        assert fake_receipt is not None and fake_receipt.value == NOT_AUTHORIZED
        assert other.client.is_connected()  # a denial does not cost the connection

        with sim_hub(acl_broker, tmp_path / "hub", cert_hub_config(tmp_path)) as hub:
            wait_until(lambda: hub.hub.uplink.connected, timeout=5, what="hub online")
            press_and_release(hub)
            wait_until(
                lambda: outbox_counts(hub)["delivered"] == 1, timeout=5, what="receipt for sim-hub"
            )
            assert hub.hub.dispatcher.stats.rejected == 0
        # Everything the broker accepted reached its subscribers before this point (one
        # connection, in order): the other hub got only its own event back.
        own_topics = [m.topic for m in other.messages]

    assert own_topics == [HubTopics(COMMUNE, OTHER_HUB).event("tamper")]
    wait_until(lambda: len(new_events) == 2, timeout=5, what="both events handed on")
    assert [(e["hub"], e["kind"]) for e in new_events] == [(OTHER_HUB, "tamper"), (HUB, "panic")]
    assert new_events[0]["id"] == own.id and new_events[1]["id"] != forged.id
    assert sorted(stored_ids(db_path)) == sorted(e["id"] for e in new_events)
    # The forged message never reached the receiver at all (not dropped there as malformed).
    stats = receiver.stats
    assert (stats.received, stats.stored, stats.malformed) == (2, 2, 0)
    log = acl_broker.log_tail(500)
    assert f"u'{HUB}'" in log and f"u'{OTHER_HUB}'" in log and f"u'{RECEIVER}'" in log
    for qos in (1, 0):
        denied = (
            rf"Denied PUBLISH from {OTHER_HUB} \(d0, q{qos}, r0, m\d+, '{TOPICS.event('panic')}'"
        )
        assert len(re.findall(denied, log)) == 1
    assert len(re.findall(rf"Denied PUBLISH from {OTHER_HUB} .*'{TOPICS.receipt}'", log)) == 1


@pytest.mark.parametrize("receipts", [True, False], ids=["receipts", "puback_only"])
@pytest.mark.parametrize("acl_broker", [EVENTS_DENIED_ACL], indirect=True)
def test_an_event_the_broker_refuses_stays_in_the_outbox_and_is_not_resent_in_a_loop(
    receipts: bool, tmp_path: Path, acl_broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = cert_hub_config(tmp_path, uplink={"receipts": receipts})
    with sim_hub(acl_broker, tmp_path / "hub", cfg) as hub:
        dispatcher = hub.hub.dispatcher
        wait_until(lambda: hub.hub.uplink.connected, timeout=5, what="hub online")
        press_and_release(hub)
        wait_until(lambda: dispatcher.stats.rejected == 1, timeout=5, what="PUBACK 0x87")
        # Another event: the next turns of the store thread must not re-send the first one.
        hub.board.press("tamper-1")
        wait_until(lambda: dispatcher.stats.rejected == 2, timeout=5, what="second PUBACK 0x87")
        counts = outbox_counts(hub)
        assert (counts["pending"], counts["sent"], counts["delivered"]) == (2, 0, 0)
        assert dispatcher.stats.published == 2 and dispatcher.stats.acked == 0
        assert hub.hub.uplink.connected and hub.hub.uplink.stats.connects == 1
        time.sleep(0.5)  # watch for a retry loop: nothing more may go out
        assert dispatcher.stats.published == 2 and dispatcher.stats.rejected == 2
    rejections = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert rejections == [
        "broker rejected event seq 1; retrying in 30 s",
        "broker rejected event seq 2; retrying in 30 s",
    ]
    denied = f"Denied PUBLISH from {cfg.client_id} (d0, q1, r0, m"
    assert acl_broker.log_tail(500).count(denied) == 2


def test_an_mqtt311_client_sees_a_denied_publish_acknowledged_like_any_other(
    certs: Certs, acl_broker: Any
) -> None:
    """Why the hub speaks MQTT 5: over 3.1.1 a refused event would look delivered to the broker
    (harmless for the hub only because it waits for the receiver's receipt)."""
    reasons: list[Any] = []
    forger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=OTHER_HUB, protocol=mqtt.MQTTv311)
    forger.tls_set_context(client_tls(certs, certs.clients[OTHER_HUB]))
    forger.on_publish = lambda client, userdata, mid, rc, props: reasons.append(rc)
    with Subscriber(
        acl_broker,
        f"tuquan/v1/{COMMUNE}/+/event/+",
        client_id="police-console",
        tls=client_tls(certs, certs.clients[RECEIVER]),
        timeout=5,
    ) as police:
        forger.connect(acl_broker.host, acl_broker.port)
        forger.loop_start()
        try:
            forged = Event(kind="panic", zone="guard-post", source="panic-1", seq=1)
            publish(forger, TOPICS.event("panic"), forged.to_json(HUB), timeout=5)
            own = Event(kind="tamper", zone="cabinet", source="tamper-1", seq=1)
            publish(forger, HubTopics(COMMUNE, OTHER_HUB).event("tamper"), own.to_json(OTHER_HUB))
        finally:
            forger.disconnect()
            forger.loop_stop()
        [msg] = police.wait_for(1)  # the allowed one, which the broker handled second
    assert [not rc.is_failure for rc in reasons] == [True, True]
    assert msg.json()["id"] == own.id
    assert re.search(rf"Denied PUBLISH from {OTHER_HUB} \(d0, q1, ", acl_broker.log_tail(200))
