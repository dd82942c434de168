"""A receiver run until SIGTERM: from its config file (``commune.config``) and the command
line's overrides, or from arguments (``run_receiver``).

The ``[broker]`` table becomes connection settings the way a hub's does
(``gateway.broker.settings_from_table``), so the receiver honours every key a hub honours:
host and port (or ``--broker``), keepalive, username and password, TLS and its files.

The client id is ``[receiver] client_id``, else ``[broker] client_id``, else
``tuquan-receiver-<commune>`` (``commune.scope``: ``tuquan-receiver-+`` for every commune).
The communes are ``[receiver] commune``/``communes`` or the command line's ``--commune``.
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from commune.config import ReceiverConfig
from commune.dc09.config import Dc09Config
from commune.dc09.forwarder import Dc09Forwarder
from commune.locations import DB_FILENAME
from commune.receiver import Receiver, default_client_id
from commune.scope import CommuneScope
from gateway.broker import BrokerSettings, settings_from_table, settings_tls_context
from settings import BrokerConfig


def receiver_broker_settings(
    cfg: ReceiverConfig | None,
    commune: str | CommuneScope,
    override: tuple[str, int] | None = None,
) -> BrokerSettings:
    """How the receiver of ``commune`` reaches its broker; without a config, the defaults of
    ``[broker]`` (a local broker, no TLS, no password)."""
    table = cfg.broker if cfg is not None else BrokerConfig.model_construct()
    own_id = cfg.receiver.client_id if cfg is not None else None
    return settings_from_table(
        table, own_id or table.client_id or default_client_id(commune), override
    )


def run_configured_receiver(
    broker: BrokerSettings,
    commune: str | CommuneScope,
    data_dir: Path,
    *,
    share_group: str | None = None,
    store: str | Path | None = None,
    session_expiry_s: int | None = None,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    dc09: Dc09Config | None = None,
) -> int:
    """``run_receiver`` connected as ``broker`` says; returns its exit status."""
    return run_receiver(
        broker.host,
        broker.port,
        commune,
        data_dir,
        client_id=broker.client_id,
        username=broker.username,
        password=broker.password,
        tls=settings_tls_context(broker),
        share_group=share_group,
        session_expiry_s=session_expiry_s,
        keepalive=broker.keepalive_s,
        store=store,
        out=out,
        stop=stop,
        dc09=dc09,
    )


def run_receiver(
    host: str,
    port: int,
    commune: str | CommuneScope,
    data_dir: str | Path,
    *,
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    share_group: str | None = None,
    session_expiry_s: int | None = None,
    keepalive: int = 30,
    store: str | Path | None = None,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    dc09: Dc09Config | None = None,
) -> int:
    """Run a receiver until SIGTERM/SIGINT (or ``stop`` is set); returns the exit status (0).

    Events are stored in ``store`` (a SQLite file or a PostgreSQL URL; by default
    ``<data_dir>/receiver.sqlite3``), the commune's key in ``data_dir``, camera snapshots in
    ``<data_dir>/snapshots/<hub>/<event-id>.jpg``. Each stored event is written to ``out``
    (stdout by default) as one JSON line, at least once (see ``Receiver``): the police
    console's alert feed. With ``dc09`` (``[forward.dc09]``), the alarms, troubles and restores
    are forwarded to a monitoring centre too (``commune.dc09``). Raises ReceiverError if the
    store cannot be opened.
    """
    data_path = Path(data_dir)
    data_path.mkdir(parents=True, exist_ok=True)
    stream = out if out is not None else sys.stdout
    stop_event = stop if stop is not None else threading.Event()

    location = store if store is not None else data_path / DB_FILENAME
    forwarder = Dc09Forwarder(location, dc09) if dc09 is not None else None

    def print_event(event: dict[str, Any]) -> None:
        stream.write(json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n")
        stream.flush()
        if forwarder is not None:
            forwarder.wake()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop_event.set())

    receiver = Receiver(
        host,
        port,
        commune,
        store if store is not None else data_path / DB_FILENAME,
        data_dir=data_path,
        client_id=client_id,
        username=username,
        password=password,
        tls=tls,
        on_new_event=print_event,
        share_group=share_group,
        session_expiry_s=session_expiry_s,
        keepalive=keepalive,
    )
    try:
        if forwarder is not None:
            forwarder.start()  # first: it keeps its place in the events before any is stored
        receiver.start()
        while not stop_event.wait(0.5):
            pass
    finally:
        receiver.stop()
        if forwarder is not None:
            forwarder.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
