"""What a fleet run does: how many hubs, on which brokers and communes, at which rates, for how
long, with which drill; checked before anything starts (``FleetError`` names the field)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from core.errors import TuquanError

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # a topic level: a commune or a hub id
MAX_HUBS = 100_000


class FleetError(TuquanError):
    """A fleet that cannot run as asked; the message names the option."""


@dataclass(frozen=True)
class BrokerTarget:
    """One commune broker and the commune its hubs belong to."""

    host: str
    port: int
    commune: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HubTiming:
    """What every simulated hub shares: the link's and the outbox's timings."""

    keepalive_s: int = 30
    session_expiry_s: int = 3600
    receipt_timeout_s: float = 60.0
    health_s: float = 30.0
    ping_s: float = 0.0  # 0: no pings of its own (a real hub pings every 5 s)
    max_inflight: int = 64
    keep_sessions: bool = False  # at the end, leave the sessions on the brokers


@dataclass(frozen=True)
class FleetProfile:
    hubs: int
    brokers: tuple[BrokerTarget, ...]
    timing: HubTiming = field(default_factory=HubTiming)
    telemetry_per_min: float = 1.0
    duration_s: float = 60.0
    drill: int = 0  # panics ...
    drill_within_s: float = 10.0  # ... spread over the last seconds of the run
    settle_s: float = 60.0  # after the load, how long to wait for the last receipts
    full_hubs: int = 0
    hub_prefix: str = "fleet"
    sign: bool = False
    connect_timeout_s: float = 120.0
    loops: int = 1
    connectors: int = 2
    connect_rate: float = 500.0
    seed: int | None = None

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise FleetError(problem)

    def problem(self) -> str | None:
        t = self.timing
        checks: list[tuple[bool, str]] = [
            (0 <= self.hubs <= MAX_HUBS, f"--hubs must be 0..{MAX_HUBS}, not {self.hubs}"),
            (self.hubs + self.full_hubs > 0, "--hubs and --full-hubs: no hub to run"),
            (self.full_hubs >= 0, f"--full-hubs must be >= 0, not {self.full_hubs}"),
            (bool(self.brokers), "--broker: at least one is needed"),
            (_finite(self.telemetry_per_min, 0.0, 600.0), "--telemetry-per-min must be 0..600"),
            (_finite(self.duration_s, 0.0, 30 * 86400.0), "--duration-s must be 0..2592000"),
            (0 <= self.drill <= 1_000_000, f"--drill must be 0..1000000, not {self.drill}"),
            (_finite(self.drill_within_s, 0.0, 86400.0), "--drill-within-s must be 0..86400"),
            (not self.drill or self.drill_within_s <= self.duration_s,
             "--drill-within-s is longer than the run (--duration-s)"),
            (_finite(self.settle_s, 0.0, 86400.0), "--settle-s must be 0..86400"),
            (_finite(t.health_s, 0.1, 86400.0), "--health-s must be 0.1..86400"),
            (t.ping_s == 0 or _finite(t.ping_s, 0.1, 3600.0), "--ping-s must be 0 or 0.1..3600"),
            (1 <= t.keepalive_s <= 3600, f"--keepalive-s must be 1..3600, not {t.keepalive_s}"),
            (0 <= t.session_expiry_s <= 2**32 - 1, "--session-expiry-s must be 0..4294967295"),
            (_finite(t.receipt_timeout_s, 0.1, 86400.0), "--receipt-timeout-s must be 0.1..86400"),
            (1 <= self.loops <= 64, "--loops must be 1..64"),
            (1 <= self.connectors <= 64, "--connectors must be 1..64"),
            (_finite(self.connect_rate, 1.0, 1e6), "--connect-rate must be 1..1000000"),
            (_finite(self.connect_timeout_s, 0.0, 86400.0), "--connect-timeout-s must be 0..86400"),
            (bool(NAME.fullmatch(self.hub_prefix)) and len(self.hub_prefix) <= 40,
             f"--hub-prefix {self.hub_prefix!r}: lower-case letters, digits, '-', '_'"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                return message
        for target in self.brokers:
            if not NAME.fullmatch(target.commune):
                return f"--commune {target.commune!r}: lower-case letters, digits, '-', '_'"
            if not 0 < target.port < 65536:
                return f"--broker {target.address}: the port must be 1..65535"
        return None

    @property
    def communes(self) -> list[str]:
        """Each commune once, in the brokers' order."""
        return list(dict.fromkeys(b.commune for b in self.brokers))

    def hub_ids(self) -> list[str]:
        width = max(4, len(str(self.hubs)))
        return [f"{self.hub_prefix}-{n:0{width}d}" for n in range(1, self.hubs + 1)]

    def full_hub_ids(self) -> list[str]:
        return [f"{self.hub_prefix}-full-{n}" for n in range(1, self.full_hubs + 1)]

    def broker_of(self, index: int) -> BrokerTarget:
        """Hubs are spread over the brokers round-robin."""
        return self.brokers[index % len(self.brokers)]


def _finite(value: float, low: float, high: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and low <= value <= high


def broker_targets(
    addresses: list[tuple[str, int]], communes: list[str], prefix: str = "fleet"
) -> tuple[BrokerTarget, ...]:
    """Brokers with their communes: one commune for all, one per broker, or (none given)
    ``<prefix>-c1``, ``<prefix>-c2``... one per broker."""
    if not addresses:
        raise FleetError("--broker: at least one is needed")
    if not communes:
        communes = [f"{prefix}-c{n}" for n in range(1, len(addresses) + 1)]
    elif len(communes) == 1:
        communes = communes * len(addresses)
    elif len(communes) != len(addresses):
        raise FleetError(
            f"--commune: give one for all brokers or one per broker ({len(addresses)}),"
            f" not {len(communes)}"
        )
    return tuple(BrokerTarget(h, p, c) for (h, p), c in zip(addresses, communes, strict=True))
