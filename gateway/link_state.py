"""The uplink's vocabulary: the link's states, an outage, what the uplink reports and counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The link's state in health: connected and heard from, found silent, or not connected.
LINK_ONLINE, LINK_SILENT, LINK_OFFLINE = "online", "silent", "offline"


@dataclass(frozen=True)
class Liveness:
    """How the uplink proves the link works (the config's ``[uplink]`` keys of these names)."""

    ping_interval_s: float = 5.0
    link_timeout_s: float = 15.0  # nothing heard this long: the link is silent


@dataclass(frozen=True)
class Outage:
    """One loss of an established link."""

    cause: str  # "silent", "disconnected" or "takeover"
    started: float  # time.time() when it was lost
    started_mono: float  # time.monotonic() then


@dataclass(frozen=True)
class LinkStatus:
    """The link as the uplink sees it, handed to ``UplinkHandlers.link_changed``."""

    state: str  # LINK_ONLINE, LINK_SILENT or LINK_OFFLINE
    since: float  # time.time() of the last change of state
    outage: Outage | None  # the loss under way (None while online, and before a first connect)
    ended: Outage | None = None  # on the change back to online: the outage that just ended
    down_s: float | None = None  # ... and how long it lasted


def _nothing() -> None:
    pass


def _ignore_status(status: LinkStatus) -> None:
    pass


@dataclass
class UplinkHandlers:
    """Where the uplink reports. Each runs on paho's network thread and must be quick;
    ``disconnected`` and ``link_changed`` also run on the uplink's watch thread (a silent
    link). ``link_changed`` is called in the order of the changes."""

    connected: Callable[[], None]
    disconnected: Callable[[], None]
    published: Callable[[int, bool], None]  # (mid, broker accepted it)
    receipt: Callable[[dict[str, Any]], None]  # a well-formed receipt, not yet verified
    # name, payload, retained, what remained of its MQTT message expiry (s) or None
    command: Callable[[str, bytes, bool, int | None], None]
    receiver_online: Callable[[], None] = field(default=_nothing)  # the receiver (re)subscribed
    link_changed: Callable[[LinkStatus], None] = field(default=_ignore_status)


@dataclass
class UplinkStats:
    connects: int = 0
    disconnects: int = 0
    bad_receipts: int = 0
    outages: int = 0  # losses of an established link, whatever the cause
    silent: int = 0  # ... of which found silent by the pings
    takeovers: int = 0  # disconnected because another client used our client id
    bad_receiver_status: int = 0
    pings: int = 0
    echoes: int = 0
