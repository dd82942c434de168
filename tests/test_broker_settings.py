"""One ``[broker]`` table, two MQTT clients: the hub and the commune receiver connect as it says.

The same table text goes into a hub's config and a receiver's. Read by each side's loader, it
gives the same connection settings; and against a real Mosquitto that asks for all of it (TLS
with a client certificate, a username and password), both ``tuquan run`` and ``tuquan receive``
get in, and the broker's log shows each sent the table's keepalive and username.
"""

from __future__ import annotations

import dataclasses
import json
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from certs import Certs, make_certs
from test_tls_auth import write_password_file

from commune.config import load_receiver_config
from commune.launch import receiver_broker_settings
from gateway.broker import tls_context
from gateway.service import broker_settings
from hw_sim.control import request
from hw_sim.simulator import default_config_path
from settings import PASSWORD_ENV, load_config
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
TUQUAN = [sys.executable, "-m", "tuquan"]
USER, PASSWORD = "guard-post", "pw-7d1f03b2"
KEEPALIVE = 17  # not the default (30): a client that ignores the key shows k30 in the log
DEFAULT_BROKER = '[broker]\nhost = "127.0.0.1"\nport = 1883\n'


def broker_table(port: int, *, insecure: bool = False) -> str:
    return f"""
[broker]
host = "127.0.0.1"
port = {port}
keepalive_s = {KEEPALIVE}
username = "{USER}"
credentials_file = "credentials.toml"

[broker.tls]
ca_file = "pki/ca.pem"
cert_file = "pki/client-{USER}.pem"
key_file = "pki/client-{USER}.key"
insecure = {"true" if insecure else "false"}
"""


def make_secrets(directory: Path) -> Certs:
    """A CA with the broker's and the client's certificates under ``pki/``, and the client's
    password in ``credentials.toml``: what ``broker_table`` names."""
    (directory / "credentials.toml").write_text(f'password = "{PASSWORD}"\n')
    return make_certs(directory / "pki", clients=[USER])


def write_configs(directory: Path, table: str) -> tuple[Path, Path]:
    """A hub config (the default simulated guard post) and a receiver config in ``directory``,
    both with ``table`` as their ``[broker]``."""
    hub_text = default_config_path().read_text()
    assert hub_text.count(DEFAULT_BROKER) == 1, "the default hub's [broker] table changed"
    # The table goes last: [broker.tls] would take the keys of a table after it.
    hub = directory / "hub.toml"
    hub.write_text(hub_text.replace(DEFAULT_BROKER, "") + table)
    receiver = directory / "receiver.toml"
    receiver.write_text('[receiver]\ncommune = "demo"\n' + table)
    return hub, receiver


def without_client_id(settings: Any) -> dict[str, Any]:
    fields = dataclasses.asdict(settings)
    del fields["client_id"]
    return fields


@pytest.mark.parametrize("override", [None, ("broker.example.net", 8883)])
def test_the_hub_and_the_receiver_take_the_same_settings_from_one_table(
    tmp_path: Path, override: tuple[str, int] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    make_secrets(tmp_path)
    hub_file, receiver_file = write_configs(tmp_path, broker_table(1884, insecure=True))

    hub = broker_settings(load_config(hub_file), override)
    receiver = receiver_broker_settings(load_receiver_config(receiver_file), "demo", override)

    assert without_client_id(receiver) == without_client_id(hub)
    pki = tmp_path.resolve() / "pki"
    assert without_client_id(hub) == {
        "host": override[0] if override else "127.0.0.1",
        "port": override[1] if override else 1884,
        "keepalive_s": KEEPALIVE,
        "username": USER,
        "password": PASSWORD,
        "ca_file": str(pki / "ca.pem"),
        "cert_file": str(pki / f"client-{USER}.pem"),
        "key_file": str(pki / f"client-{USER}.key"),
        "tls": True,
        "tls_insecure": True,
    }
    assert (hub.client_id, receiver.client_id) == ("tuquan-demo-sim-hub", "tuquan-receiver-demo")


@pytest.mark.parametrize(
    ("receiver_key", "broker_key", "expected"),
    [
        ("police-1", "table-id", "police-1"),  # [receiver] client_id is the receiver's own
        (None, "table-id", "table-id"),
        (None, None, "tuquan-receiver-demo"),
    ],
)
def test_the_receivers_client_id(
    tmp_path: Path, receiver_key: str | None, broker_key: str | None, expected: str
) -> None:
    lines = ["[receiver]", 'commune = "demo"']
    lines += [f'client_id = "{receiver_key}"'] if receiver_key else []
    lines += ["[broker]"] + ([f'client_id = "{broker_key}"'] if broker_key else [])
    path = tmp_path / "receiver.toml"
    path.write_text("\n".join(lines) + "\n")
    assert receiver_broker_settings(load_receiver_config(path), "demo").client_id == expected


def test_without_a_config_the_receiver_dials_in_the_clear_without_a_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As before: with no config file, a password in the environment is not the receiver's.
    monkeypatch.setenv(PASSWORD_ENV, "the-hubs-password")
    settings = receiver_broker_settings(None, "demo", ("10.0.0.7", 1885))
    assert (settings.host, settings.port, settings.client_id) == (
        "10.0.0.7",
        1885,
        "tuquan-receiver-demo",
    )
    assert (settings.keepalive_s, settings.username, settings.password) == (30, None, None)
    assert not settings.tls and settings.ca_file is None


def hub_answers(data_dir: Path) -> bool:
    try:
        return bool(request(data_dir, {"cmd": "status"}, timeout=2).get("ok"))
    except (OSError, ValueError):
        return False


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    assert sel.select(timeout), f"no line from the receiver in {timeout} s"
    line = proc.stdout.readline()
    assert line, "the receiver closed its output"
    return dict(json.loads(line))


def test_tuquan_run_and_tuquan_receive_connect_as_one_table_says(
    tmp_path: Path, mosquitto_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    certs = make_secrets(tmp_path)
    passwords = write_password_file(tmp_path / "mosquitto.passwd", {USER: PASSWORD})
    broker = mosquitto_factory(
        name="one-table",
        allow_anonymous=False,
        extra_config="\n".join(
            [
                f"cafile {certs.ca}",
                f"certfile {certs.server.cert}",
                f"keyfile {certs.server.key}",
                "require_certificate true",
                f"password_file {passwords}",
            ]
        ),
    )
    hub_file, receiver_file = write_configs(tmp_path, broker_table(broker.port))
    # The broker wants all of it: a certificate from the CA and the password, over TLS.
    pair = certs.clients[USER]
    with pytest.raises(AssertionError, match="connect refused"):
        Subscriber(broker, username=USER, tls=tls_context(certs.ca, pair.cert, pair.key))

    hub_dir, rx_dir, log_path = tmp_path / "hub", tmp_path / "rx", tmp_path / "processes.log"
    with log_path.open("ab") as log:
        receiver = subprocess.Popen(
            [*TUQUAN, "receive", "--config", str(receiver_file), "--data-dir", str(rx_dir)],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
        hub = subprocess.Popen(
            [*TUQUAN, "run", "--sim", "--config", str(hub_file), "--data-dir", str(hub_dir)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
    try:
        for client_id in ("tuquan-receiver-demo", "tuquan-demo-sim-hub"):
            # Mosquitto logs each CONNECT: protocol, clean start, keepalive, username.
            connected = re.compile(rf"as {client_id} \(p5, c0, k{KEEPALIVE}, u'{USER}'\)")
            wait_until(
                lambda connected=connected: connected.search(broker.log_tail(500)) is not None,
                timeout=60,
                what=f"{client_id} connected with keepalive {KEEPALIVE} as {USER}",
            )
        # A panic goes through the receiver, and its receipt comes back to the hub.
        wait_until(lambda: hub_answers(hub_dir), timeout=30, what="the simulated hub's control")
        assert request(hub_dir, {"cmd": "press", "name": "panic-1"})["ok"] is True
        assert request(hub_dir, {"cmd": "release", "name": "panic-1"})["ok"] is True
        alert = read_json_line(receiver, timeout=30)
        assert (alert["hub"], alert["kind"]) == ("sim-hub", "panic")
        wait_until(
            lambda: request(hub_dir, {"cmd": "status"})["outbox"].get("delivered") == 1,
            timeout=30,
            what="the receipt reached the hub",
        )
    finally:
        for proc in (hub, receiver):
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in (hub, receiver)]
    assert codes == [0, 0], log_path.read_text()[-3000:]
