"""The bytes the hub publishes for an event and for its health, signed by the hub's key.

An event is signed once, when the outbox commits it: the stored payload already holds ``kid``
and ``sig``, so every re-send (after a reconnect, a missing receipt, a restart) is byte for byte
the same message. Without a key (benchmarks, a bare outbox in tests) the payload is the event's
JSON as before. The JSON is compact with sorted keys either way; the signature is over the
canonical form (core/signing.py), which a receiver rebuilds from the parsed object.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from core.events import Event
from core.signing import SigningKey

log = logging.getLogger(__name__)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no such numbers and
    the canonical form refuses them. A sensor's reading must not keep its event from going out."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def sign(signer: SigningKey, purpose: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` signed for ``purpose``; non-finite numbers become null (logged) if there are any."""
    try:
        return signer.sign(purpose, obj)
    except ValueError:
        log.warning("a %s held NaN or infinite numbers: sent as null", purpose)
        return signer.sign(purpose, finite(obj))


def event_payload(event: Event, hub: str, signer: SigningKey | None) -> bytes:
    """What the outbox stores and publishes for ``event`` (its seq already given)."""
    if signer is None:
        return event.to_json(hub)
    return _dumps(sign(signer, "event", event.to_dict(hub)))


def health_payload(health: Mapping[str, Any], signer: SigningKey | None) -> dict[str, Any]:
    """The health object as published: with ``kid`` and ``sig`` when the hub has a key."""
    return dict(health) if signer is None else sign(signer, "health", health)
