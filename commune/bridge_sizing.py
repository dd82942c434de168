"""How much a commune broker must hold for its bridge while the province is out of reach, from
the rates of the hubs behind it (docs/province.md, "Sizing the bridge's queue").

While the bridge is down, the hubs are still connected to their commune broker: each event is
PUBACKed there and waits for a receipt that cannot come. A hub re-sends every event that has no
receipt after its ``receipt_timeout_s`` (gateway/dispatcher.py), again and again, and every copy
goes into the bridge's queue. So an outage of ``T`` seconds at ``r`` events a second per hub,
with a receipt timeout ``τ``, queues per hub:

- events: ``r·T`` originals, plus the re-sends: the events of the first ``T − kτ`` seconds are
  re-sent at ``kτ`` for ``k = 1 .. K = ⌊T/τ⌋``, that is ``r·(K·T − τ·K·(K+1)/2)`` copies;
- health reports: ``T / health_interval_s`` (QoS 1, retained, queued like the rest);
- snapshots: ``snapshots_per_hub_per_hour · T / 3600`` (a snapshot is not re-sent for want of a
  receipt: the broker's PUBACK ends its wait at the hub).

``max_queued_messages`` and ``max_queued_bytes`` are those totals times ``margin`` (status
changes, command results, bursts). Mosquitto keeps the queue in memory, with some hundred bytes
of bookkeeping per message beside its topic and payload (``MEMORY_PER_MESSAGE``); ``memory`` is
the estimate of what the queue costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, StrictInt

from settings import Frozen

MEMORY_PER_MESSAGE = 300  # bytes beside the payload: Mosquitto's structs and the topic
Rate = Annotated[float, Field(strict=True, ge=0, le=10_000, allow_inf_nan=False)]
Interval = Annotated[float, Field(strict=True, ge=1, le=86_400, allow_inf_nan=False)]


class Rates(Frozen):
    """The load behind one commune broker, and the outage its bridge must hold."""

    hubs: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    events_per_hub_per_min: Rate = 1.0
    health_interval_s: Interval = 30.0
    snapshots_per_hub_per_hour: Rate = 0.0
    snapshot_bytes: Annotated[StrictInt, Field(ge=0, le=4_000_000)] = 60_000
    event_bytes: Annotated[StrictInt, Field(ge=100, le=65_536)] = 700
    health_bytes: Annotated[StrictInt, Field(ge=100, le=262_144)] = 1_500
    receipt_timeout_s: Interval = 60.0
    outage_s: Annotated[StrictInt, Field(ge=60, le=7 * 86_400)] = 3600
    margin: Annotated[float, Field(strict=True, ge=1, le=10, allow_inf_nan=False)] = 1.25


@dataclass(frozen=True)
class Sizing:
    rates: Rates
    originals: float  # per hub, over the outage
    resends: float
    health: float
    snapshots: float
    max_queued_messages: int
    max_queued_bytes: int
    memory_bytes: int

    @property
    def copies_per_event(self) -> float:
        return (self.originals + self.resends) / self.originals if self.originals else 1.0

    def comment(self) -> list[str]:
        """The arithmetic, as comment lines for the config file."""
        r = self.rates
        per_hub = self.originals + self.resends + self.health + self.snapshots
        return [
            f"Sized for an outage of {r.outage_s} s with {r.hubs} hub(s) behind this broker:",
            f"  per hub: {self.originals:,.0f} events ({r.events_per_hub_per_min:g}/min)"
            f" + {self.resends:,.0f} re-sends (every {r.receipt_timeout_s:g} s without a"
            f" receipt: {self.copies_per_event:.1f} copies an event)"
            f" + {self.health:,.0f} health (every {r.health_interval_s:g} s)"
            f" + {self.snapshots:,.0f} snapshots = {per_hub:,.0f} messages",
            f"  max_queued_messages = {r.hubs} x {per_hub:,.0f} x {r.margin:g} (margin)"
            f" = {self.max_queued_messages:,}",
            f"  max_queued_bytes = {r.hubs} x ({self.originals + self.resends:,.0f} x"
            f" {r.event_bytes:,} B + {self.health:,.0f} x {r.health_bytes:,} B +"
            f" {self.snapshots:,.0f} x {r.snapshot_bytes:,} B) x {r.margin:g}"
            f" = {self.max_queued_bytes:,}",
            f"  the queue, full, takes about {self.memory_bytes / 1e6:,.0f} MB of the broker's"
            f" memory ({MEMORY_PER_MESSAGE} B of bookkeeping a message)",
        ]


def resends_per_hub(rates: Rates) -> float:
    """Copies re-sent by one hub over the outage (see the module)."""
    per_s = rates.events_per_hub_per_min / 60
    tau, outage = rates.receipt_timeout_s, rates.outage_s
    k = math.floor(outage / tau)
    return per_s * (k * outage - tau * k * (k + 1) / 2)


def size_queue(rates: Rates) -> Sizing:
    originals = rates.events_per_hub_per_min / 60 * rates.outage_s
    resends = resends_per_hub(rates)
    health = rates.outage_s / rates.health_interval_s
    snapshots = rates.snapshots_per_hub_per_hour * rates.outage_s / 3600
    messages = rates.hubs * (originals + resends + health + snapshots) * rates.margin
    payload = (
        rates.hubs
        * rates.margin
        * (
            (originals + resends) * rates.event_bytes
            + health * rates.health_bytes
            + snapshots * rates.snapshot_bytes
        )
    )
    max_messages = max(1000, math.ceil(messages))
    max_bytes = max(1_000_000, math.ceil(payload))
    return Sizing(
        rates=rates,
        originals=originals,
        resends=resends,
        health=health,
        snapshots=snapshots,
        max_queued_messages=max_messages,
        max_queued_bytes=max_bytes,
        memory_bytes=max_bytes + max_messages * MEMORY_PER_MESSAGE,
    )
