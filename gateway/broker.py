"""Connection settings of our MQTT clients, built one way from a ``[broker]`` table.

The hub's uplink and the commune receiver read the same ``[broker]`` keys (docs/config.md): host
and port (or the command line's ``--broker HOST:PORT`` instead), keepalive, username and
password, and ``[broker.tls]`` with its files. Both turn the table into ``BrokerSettings`` here,
and both build their TLS context from those settings here, so neither can honour a key the
other ignores.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the uplink imports this module; it needs no config models to run
    from settings import BrokerConfig


@dataclass(frozen=True)
class BrokerSettings:
    """What an MQTT client of ours needs to reach a broker (``settings_from_table``)."""

    host: str
    port: int
    client_id: str
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls: bool = False
    tls_insecure: bool = False

    def __repr__(self) -> str:  # never show the password
        return f"BrokerSettings(host={self.host!r}, port={self.port}, client_id={self.client_id!r})"


def settings_from_table(
    table: BrokerConfig, client_id: str, override: tuple[str, int] | None = None
) -> BrokerSettings:
    """The settings a client connects with: ``table``'s, at ``override`` (host, port) if given.

    ``client_id`` is the caller's: a hub and a receiver name themselves differently.
    """
    host, port = override if override else (table.host, table.port)
    tls = table.tls
    return BrokerSettings(
        host=host,
        port=port,
        client_id=client_id,
        keepalive_s=table.keepalive_s,
        username=table.username,
        password=table.password.get_secret_value() if table.password else None,
        tls=tls is not None,
        ca_file=str(tls.ca_file) if tls and tls.ca_file else None,
        cert_file=str(tls.cert_file) if tls and tls.cert_file else None,
        key_file=str(tls.key_file) if tls and tls.key_file else None,
        tls_insecure=bool(tls and tls.insecure),
    )


def tls_context(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    *,
    insecure: bool = False,
) -> ssl.SSLContext:
    """A client TLS context: verify the broker against ``ca_file`` (system CAs if None) and,
    with ``cert_file``, authenticate with a client certificate. ``insecure`` skips the check
    that the certificate names the host dialled (the chain is still verified)."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    if insecure:
        ctx.check_hostname = False
    return ctx


def settings_tls_context(settings: BrokerSettings) -> ssl.SSLContext | None:
    """The TLS context ``settings`` ask for, or None for plain TCP."""
    if not (settings.tls or settings.ca_file):
        return None
    return tls_context(
        settings.ca_file, settings.cert_file, settings.key_file, insecure=settings.tls_insecure
    )
