"""A receiver run from its config file (``commune.config``) and the command line's overrides.

The ``[broker]`` table becomes connection settings the way a hub's does
(``gateway.broker.settings_from_table``), so the receiver honours every key a hub honours:
host and port (or ``--broker``), keepalive, username and password, TLS and its files.

The client id is ``[receiver] client_id``, else ``[broker] client_id``, else
``tuquan-receiver-<commune>``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TextIO

from commune.config import ReceiverConfig
from commune.receiver import default_client_id, run_receiver
from gateway.broker import BrokerSettings, settings_from_table, settings_tls_context
from settings import BrokerConfig


def receiver_broker_settings(
    cfg: ReceiverConfig | None, commune: str, override: tuple[str, int] | None = None
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
    commune: str,
    data_dir: Path,
    *,
    share_group: str | None = None,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
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
        keepalive=broker.keepalive_s,
        out=out,
        stop=stop,
    )
