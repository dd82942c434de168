"""``[hub]``, ``[broker]`` (with ``[broker.tls]``), ``[uplink]`` and ``[outbox]``: who this hub
is, how it reaches its MQTT broker, and how events wait for and confirm their delivery.

The broker password is never written in the TOML file: it comes from the environment variable
``TUQUAN_BROKER_PASSWORD`` or from ``broker.credentials_file``, and is held as a ``SecretStr``
that no repr, str, log line or error message shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from settings.base import Frozen, load_context
from settings.validators import (
    ConfigFile,
    CredentialsFile,
    Host,
    Id,
    Name,
    NonNegativeSeconds,
    Seconds,
    read_password_file,
)

PASSWORD_ENV = "TUQUAN_BROKER_PASSWORD"
SECRET_MASK = "**********"


class HubConfig(Frozen):
    """``[hub]``: who this hub is. ``id`` and ``commune`` are MQTT topic levels."""

    id: Id
    commune: Id
    name: StrictStr = ""


class TLSConfig(Frozen):
    """``[broker.tls]``: present means TLS is on. Files are absolute after validation."""

    ca_file: ConfigFile | None = None
    cert_file: ConfigFile | None = None
    key_file: ConfigFile | None = Field(default=None, validate_default=True)
    insecure: StrictBool = False

    @field_validator("key_file", mode="after")
    @classmethod
    def _cert_and_key_together(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "cert_file" not in info.data:  # cert_file itself is invalid, already reported
            return value
        has_cert = info.data["cert_file"] is not None
        if has_cert and value is None:
            raise ValueError("required when cert_file is set (client certificate and its key)")
        if value is not None and not has_cert:
            raise ValueError("key_file without cert_file: set both or neither")
        return value


class BrokerConfig(Frozen):
    """``[broker]``: the MQTT broker. ``password`` comes from the environment or a file only."""

    host: Host = "127.0.0.1"
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 1883
    keepalive_s: Annotated[StrictInt, Field(ge=5, le=3600)] = 30
    client_id: Annotated[StrictStr, Field(min_length=1)] | None = None
    credentials_file: CredentialsFile | None = None
    password: SecretStr | None = Field(default=None, validate_default=True, repr=False)
    username: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        default=None, validate_default=True
    )
    tls: TLSConfig | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _password_from_env_or_file(cls, value: Any, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            raise ValueError(
                "a password is not allowed in the config file: put it in the file named by "
                f"broker.credentials_file, or in the environment variable {PASSWORD_ENV}"
            )
        env_password = load_context(info).env.get(PASSWORD_ENV)
        if env_password:
            return SecretStr(env_password)
        path = info.data.get("credentials_file")
        if path is None:
            return None
        try:
            return SecretStr(read_password_file(path))
        except ValueError:  # changed since the check a moment ago; report it where it belongs
            return None

    @field_validator("username", mode="after")
    @classmethod
    def _username_with_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("password") is not None:
            raise ValueError(
                f"required when a password is given (broker.credentials_file or {PASSWORD_ENV}):"
                " MQTT sends no password without a username"
            )
        return value


class UplinkConfig(Frozen):
    """``[uplink]``: when an event counts as delivered, how often health is published, how a
    silent link is found and reported (``status_led`` is checked against ``[[outputs]]``)."""

    receipts: StrictBool = True
    receipt_timeout_s: Seconds = 60.0
    health_interval_s: Seconds = 30.0
    ping_interval_s: Seconds = 5.0
    link_timeout_s: Seconds = 15.0
    trouble_after_s: NonNegativeSeconds = 20.0
    status_led: Name | None = None

    @field_validator("link_timeout_s", mode="after")
    @classmethod
    def _longer_than_the_pings(cls, value: float, info: ValidationInfo) -> float:
        ping = info.data.get("ping_interval_s")
        if ping is not None and value <= ping:
            raise ValueError(
                f"must be more than ping_interval_s ({ping:g} s): a link is silent only once a "
                "ping has had time to come back"
            )
        return value


class OutboxConfig(Frozen):
    """``[outbox]``: the SQLite store of events not yet delivered."""

    max_events: Annotated[StrictInt, Field(ge=100)] = 100_000
    delivered_retention_s: NonNegativeSeconds = 86_400.0
