"""The commune broker's bridge to the province broker, generated (``tuquan bridge-config``),
and the province broker's ACL lines for the bridge's user (docs/province.md, "Brokers and
bridges").

Up (``out``): every hub's events, snapshots, status, health and command results. Down (``in``):
receipts, commands and the receivers' status. The bridge speaks MQTT 5
(``bridge_protocol_version mqttv50``): a command's message expiry, which a hub whose clock is
not set relies on, survives only that way. ``cleansession false`` keeps the commune side's
queue for the bridge across an outage; the broker-wide lines hold an outage of
``Rates.outage_s`` at the province's rates (``commune.bridge_sizing``).

What the bridge still drops (Mosquitto 2.0.11: its queue on a restart of the commune broker,
whatever the province publishes while the bridge is down), the hubs' re-sends make good: a hub
keeps every event until a receipt names it.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from commune.bridge_sizing import Rates, Sizing, size_queue
from commune.scope import commune_name
from core.errors import TuquanError
from core.topics import ROOT, HubTopics, province_receiver_status_topic, receiver_status_topic
from settings import Frozen, pydantic_errors
from settings.validators import hostname_or_ip

CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
AUTOSAVE_INTERVAL_S = 30  # a crash of the commune broker loses at most this much of its queue


def address(value: str) -> str:
    """``host:port`` of the province broker (an IPv6 address in brackets)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (a port from 1 to 65535)")
    hostname_or_ip(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    return value


def absolute_path(value: str) -> str:
    """A file for the commune broker to read: absolute (Mosquitto runs from its own folder)."""
    if not PurePosixPath(value).is_absolute() or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} must be an absolute path without spaces")
    return value


def valid_client_id(value: str) -> str:
    if not CLIENT_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a usable client id: 1 to 64 letters, digits, '.', '_', '+' or '-'"
        )
    return value


def conf_word(value: str) -> str:
    """A user name or password as Mosquitto's config reads it: one word, printable."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(
            "must be one word of printable characters (Mosquitto's config splits at spaces)"
        )
    return value


def not_empty(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError("name at least one")
    return values


Path_ = Annotated[StrictStr, AfterValidator(absolute_path)]


class BridgePlan(Frozen):
    """What ``tuquan bridge-config`` needs; every field is one of its flags."""

    communes: Annotated[tuple[StrictStr, ...], AfterValidator(not_empty)]
    province: Annotated[
        tuple[Annotated[StrictStr, AfterValidator(address)], ...], AfterValidator(not_empty)
    ]
    client_id: Annotated[StrictStr, AfterValidator(valid_client_id)] | None = None
    username: Annotated[StrictStr, AfterValidator(conf_word)] | None = None
    password: SecretStr | None = None
    cafile: Path_ | None = None
    certfile: Path_ | None = None
    keyfile: Path_ | None = None
    tls_version: Literal["tlsv1.2", "tlsv1.3"] = "tlsv1.2"
    keepalive_s: Annotated[StrictInt, Field(ge=5, le=3600)] = 30
    rates: Rates

    @field_validator("communes")
    @classmethod
    def _communes(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for i, value in enumerate(values):
            if value == "+":
                raise ValueError(
                    "a bridge carries named communes, not '+': name this broker's communes"
                )
            commune_name(value)
            if value in values[:i]:
                raise ValueError(f"commune {value!r} is named twice")
        return values

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            conf_word(value.get_secret_value())
        return value

    @property
    def label(self) -> str:
        return "+".join(self.communes)

    @property
    def remote_clientid(self) -> str:
        """Stable, so the province broker knows the bridge again after every reconnect."""
        return self.client_id or f"tuquan-bridge-{self.label}"[:64]


class BridgeConfigError(TuquanError):
    """Inputs that make no bridge: ``errors`` lists (field, message), every one at once."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{k}: {m}" if k else m for k, m in errors))
        self.errors = errors


def make_plan(fields: dict[str, Any]) -> BridgePlan:
    """``BridgePlan`` from its fields (``rates`` a dict of ``Rates``' fields); every problem,
    each at its field, in one ``BridgeConfigError``."""
    try:
        plan = BridgePlan.model_validate(fields)
    except ValidationError as exc:
        errors = pydantic_errors(exc, BridgePlan)
        raise BridgeConfigError(errors) from None
    errors = []
    if (plan.certfile is None) != (plan.keyfile is None):
        missing = "keyfile" if plan.keyfile is None else "certfile"
        errors.append((missing, "give certfile and keyfile together"))
    if plan.certfile is not None and plan.cafile is None:
        errors.append(("cafile", "a client certificate needs the province's CA (cafile) too"))
    if plan.password is not None and plan.username is None:
        errors.append(("username", "a password needs a username (MQTT sends none without one)"))
    if errors:
        raise BridgeConfigError(errors)
    return plan


def notification_topic(remote_clientid: str) -> str:
    """Where Mosquitto says whether a bridge is connected ("1"/"0", retained)."""
    return f"$SYS/broker/connection/{remote_clientid}/state"


def up_topics(commune: str) -> list[str]:
    base = f"{ROOT}/{commune}/+"
    return [
        f"{base}/event/+",
        f"{base}/snapshot/+",
        f"{base}/status",
        f"{base}/health",
        f"{base}/cmd_result",
    ]


def down_topics(commune: str) -> list[str]:
    base = f"{ROOT}/{commune}/+"
    return [f"{base}/receipt", f"{base}/cmd/+", receiver_status_topic(commune)]


def bridge_conf(plan: BridgePlan, sizing: Sizing | None = None) -> str:
    """The commune broker's lines: broker-wide settings for the outage, then the bridge."""
    sizing = sizing or size_queue(plan.rates)
    lines = [
        f"# tuquan: the bridge of commune(s) {plan.label} to the province broker"
        " (generated by tuquan bridge-config).",
        "# Put it in the commune broker's include_dir (Debian: /etc/mosquitto/conf.d/): its",
        "# broker-wide lines come after, and so replace, those of tuquan broker-config.",
        "#",
        *(f"# {line}" for line in sizing.comment()),
        "persistence true",
        f"autosave_interval {AUTOSAVE_INTERVAL_S}",
        f"max_queued_messages {sizing.max_queued_messages}",
        f"max_queued_bytes {sizing.max_queued_bytes}",
        # A hub's pings are QoS 0: nobody waits for them after an outage.
        "queue_qos0_messages false",
        "",
        "connection tuquan-province",
        f"address {' '.join(plan.province)}",
        "bridge_protocol_version mqttv50",
        "try_private true",
        "cleansession false",
        "local_cleansession false",
        f"remote_clientid {plan.remote_clientid}",
        f"keepalive_interval {plan.keepalive_s}",
        "restart_timeout 2 30",
        # "1" retained on $SYS/broker/connection/<remote_clientid>/state at both ends when the
        # bridge connects; "0" at the province (its will) when the link dies: the province sees
        # which communes are cut off. (2.0.11 says "0" on the commune side only at start.)
        "notifications true",
    ]
    if plan.username is not None:
        lines.append(f"remote_username {plan.username}")
    if plan.password is not None:
        lines.append(f"remote_password {plan.password.get_secret_value()}")
    if plan.cafile is not None:
        lines += [f"bridge_cafile {plan.cafile}", f"bridge_tls_version {plan.tls_version}"]
        if plan.certfile is not None:
            lines += [f"bridge_certfile {plan.certfile}", f"bridge_keyfile {plan.keyfile}"]
    for commune in plan.communes:
        lines += [f"topic {t} out 1" for t in up_topics(commune)]
        lines += [f"topic {t} in 1" for t in down_topics(commune)]
    return "\n".join(lines) + "\n"


def province_acl(
    plan: BridgePlan, receivers: tuple[str, ...] = (), consoles: tuple[str, ...] = ()
) -> str:
    """The province broker's ACL lines: the bridge's user writes what goes up and reads what
    comes down for its communes only; each province receiver user reads every commune's hubs
    and writes receipts and the receivers' status; each console user reads everything and
    writes commands."""
    user = plan.username or plan.remote_clientid
    sizing = size_queue(plan.rates)
    lines = [
        f"# tuquan: the province broker's ACL for the bridge of {plan.label}"
        " (generated by tuquan bridge-config).",
        "# A healed bridge hands the province its whole queue at once, and the province broker",
        "# queues it for each receiver (or share group) that reads it: its max_queued_messages",
        "# and max_queued_bytes must hold the sum of the queues of the bridges that may heal",
        "# together (every one, after a restart of the province broker). This bridge's:",
        f"#   max_queued_messages {sizing.max_queued_messages}",
        f"#   max_queued_bytes {sizing.max_queued_bytes}",
        "",
        f"user {user}",
        f"topic write {notification_topic(plan.remote_clientid)}",
    ]
    for commune in plan.communes:
        lines += [f"topic write {t}" for t in up_topics(commune)]
        lines += [f"topic read {t}" for t in down_topics(commune)]
    every = HubTopics("+", "+")
    for receiver in receivers:
        lines += [
            "",
            f"user {receiver}",
            f"topic read {every.base}/event/#",
            f"topic read {every.base}/snapshot/#",
            f"topic read {every.status}",
            f"topic read {every.health}",
            f"topic read {every.cmd_result}",
            f"topic write {every.receipt}",
            f"topic readwrite {receiver_status_topic('+')}",
            f"topic readwrite {province_receiver_status_topic()}",
        ]
    for console in consoles:
        lines += ["", f"user {console}", f"topic read {ROOT}/#", f"topic write {every.cmd_filter}"]
    return "\n".join(lines) + "\n"
