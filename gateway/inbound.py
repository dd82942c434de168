"""What the broker hands the uplink, parsed as hostile input: receipts, the receiver's status and
the echo of the hub's own ping. Deep nesting, huge numbers, NaN and oversized payloads are refused
(``None`` or ValueError), so no RecursionError or OverflowError escapes a paho callback."""

from __future__ import annotations

from typing import Any

from core.safe_json import loads_untrusted

RECEIPT_MAX_BYTES = 256 * 1024  # a receipt names at most a few thousand ids
RECEIVER_STATUS_MAX_BYTES = 4096
PING_MAX_BYTES = 256


def parse_receipt(payload: bytes) -> dict[str, Any] | None:
    """A receipt: an object with ``"ids": ["<event id>", ...]`` (and, signed by the commune,
    ``hub``, ``ts``, ``kid``, ``sig``: gateway/receipts.py checks those). Anything else is None."""
    try:
        obj = loads_untrusted(payload, max_bytes=RECEIPT_MAX_BYTES)
    except (ValueError, RecursionError, OverflowError):  # the last two: a wall behind the first
        return None
    if not isinstance(obj, dict):
        return None
    ids = obj.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) and len(i) <= 64 for i in ids):
        return None
    return obj


def parse_receiver_status(payload: bytes) -> tuple[str, bool]:
    """The ``state`` of ``{"state": "online", ...}`` and whether the broker kept the receiver's
    session (``"session_present": true``; anything else reads as false, so an older receiver's
    "online" still makes hubs re-send); ValueError saying what is wrong otherwise."""
    obj = loads_untrusted(payload, max_bytes=RECEIVER_STATUS_MAX_BYTES)
    state = obj.get("state") if isinstance(obj, dict) else None
    if not isinstance(state, str):
        raise ValueError('no "state" string')
    return state, obj.get("session_present") is True


def parse_ping_echo(payload: bytes) -> int | None:
    """The ping number of ``{"n": 7, "ts": ...}``, or None if it is not one of ours."""
    try:
        obj = loads_untrusted(payload, max_bytes=PING_MAX_BYTES)
    except ValueError:
        return None
    n = obj.get("n") if isinstance(obj, dict) else None
    return n if isinstance(n, int) else None
