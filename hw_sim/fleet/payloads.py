"""The bytes a simulated hub publishes, in the hub's own shapes (docs/topics.md): events built
by ``core.events.Event`` and signed by ``gateway.signed_payloads`` as the outbox does, and a
health object with the fields a real hub's health has (``gateway/dispatcher.py`` and
``gateway/service.py``), for a hub with no inputs, buses or cameras."""

from __future__ import annotations

import json
import time
from typing import Any

from core.events import KINDS, Event, utc_iso
from core.signing import SigningKey
from gateway.signed_payloads import event_payload, health_payload

TELEMETRY = "telemetry"
PANIC = "panic"
SILENCED = "silenced"


def event_bytes(
    hub: str, seq: int, kind: str, zone: str, source: str, data: dict[str, Any],
    signer: SigningKey | None,
) -> tuple[str, int, bytes]:  # fmt: skip
    """(id, priority, payload) of a new event with this ``seq``; the clock counts as
    synchronised (the fleet runs on a machine that keeps time)."""
    event = Event(kind=kind, zone=zone, source=source, data=data, clock_synced=True, seq=seq)
    return event.id, int(KINDS[kind].priority), event_payload(event, hub, signer)


def telemetry_data(seq: int, uptime_s: float) -> dict[str, Any]:
    """A small reading, as a hub's periodic report would carry."""
    return {"supply_mv": 5000 - seq % 40, "temp_c": 30 + seq % 7, "uptime_s": round(uptime_s)}


def panic_data() -> dict[str, Any]:
    return {"input": "panic-1", "pin": 17, "drill": True}


def health_object(
    *,
    hub: str,
    started: float,
    last_seq: int,
    pending: int,
    sent: int,
    undelivered: dict[str, int],
    in_flight: int,
    resent: int,
    uplink: dict[str, Any],
    malformed_commands: int,
    refused_commands: int,
    bad_receipts: int,
    forged_receipts: int,
) -> dict[str, Any]:
    health: dict[str, Any] = {
        "hub": hub,
        "uptime_s": round(time.monotonic() - started, 1),
        "last_seq": last_seq,
        "outbox": {"pending": pending, "sent": sent, "delivered": last_seq - pending - sent,
                   **{f"undelivered_{k}": v for k, v in undelivered.items()}},
        "evicted": 0,
        "storage": {"state": "ok", "in_memory": pending + sent},
        "in_flight": in_flight,
        "resent": resent,
        "uplink": uplink,
        "clock_synced": True,
        "inputs": {},
        "sounding": [],
        "output_faults": {},
        "malformed_commands": malformed_commands,
        "refused_commands": refused_commands,
        "bad_receipts": bad_receipts,
        "forged_receipts": forged_receipts,
        "buses": {},
        "modbus": {},
        "cameras": {},
        "detector": None,
        "snapshots": None,
    }  # fmt: skip
    return health


def health_bytes(health: dict[str, Any], signer: SigningKey | None) -> bytes:
    signed = health_payload(health, signer)
    return json.dumps(signed, separators=(",", ":")).encode()


def uplink_health(state: str, since: float, outages: int) -> dict[str, Any]:
    """Health's ``uplink`` object, as far as a simulated link knows it."""
    return {
        "state": state,
        "since": utc_iso(since),
        "cause": None,
        "rtt_ms": None,
        "outages": outages,
        "silent": 0,
        "takeovers": 0,
        "last_down_s": None,
        "bad_receiver_status": 0,
        "status_overwritten": 0,
    }
