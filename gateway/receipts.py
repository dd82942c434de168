"""Which receipts the hub acts on: a receipt makes it drop events from its outbox, so once the
hub is enrolled (it trusts a commune key, gateway/trust.py) only a receipt the commune signed
for this hub counts.

Enrolled: ``{"hub", "ids", "ts", "kid", "sig"}`` signed for purpose "receipt" by the commune's
key and naming this hub. Anything else (unsigned, another key, a changed byte, another hub's
name) is counted as forged, logged once per cause, and changes nothing: the events it names
stay undelivered and are sent again. Not enrolled: any well-formed receipt counts, signed or
not, as before enrolment existed.

The uplink calls a gate on paho's network thread; it only verifies and hands ids on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.signing import KeyFileError, PublicKey, verify
from gateway.trust import COMMUNE_KEY_FILE, HubKeys, read_commune_key

log = logging.getLogger(__name__)


class ReceiptGate:
    def __init__(
        self,
        hub: str,
        commune: PublicKey | None,
        deliver: Callable[[list[str]], None],
        *,
        enrolled: bool | None = None,
    ) -> None:
        """``enrolled`` defaults to having a commune key; enrolled without one (its file
        unreadable) refuses every receipt."""
        self.hub = hub
        self.commune = commune
        self.enrolled = commune is not None if enrolled is None else enrolled
        self.deliver = deliver
        self.forged = 0
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, receipt: Mapping[str, Any]) -> None:
        fault = self.fault(receipt)
        if fault is None:
            self.deliver(list(receipt["ids"]))
            return
        with self._lock:
            self.forged += 1
            first = fault not in self._logged
            self._logged.add(fault)
        if first:  # once per cause: a flood of forgeries must not fill the log
            log.error(
                "refused a receipt naming %d events: %s; they stay undelivered"
                " (further receipts refused for this reason are only counted)",
                len(receipt["ids"]),
                fault,
            )

    def fault(self, receipt: Mapping[str, Any]) -> str | None:
        """Why ``receipt`` must not be acted on, or None if it may."""
        if not self.enrolled:
            return None
        key = self.commune
        if key is None:
            return "the commune's key cannot be read"
        if "sig" not in receipt or "kid" not in receipt:
            return "it is not signed"
        if receipt["kid"] != key.fingerprint:
            return "it is signed by a key other than the commune's"
        if not verify("receipt", receipt, key):
            return "its signature does not verify"
        if receipt.get("hub") != self.hub:
            return "it is for another hub"
        return None


def receipt_gate(
    hub: str, keys: HubKeys | None, data_dir: Path, deliver: Callable[[list[str]], None]
) -> ReceiptGate:
    """The hub's gate. Enrolled with a commune key file that cannot be read: every receipt is
    refused; not enrolled: unsigned receipts count, and the log says so once."""
    commune_file = data_dir / COMMUNE_KEY_FILE
    commune = keys.commune if keys is not None else None
    if keys is None:
        with contextlib.suppress(KeyFileError):
            commune = read_commune_key(data_dir)
    enrolled = commune is not None or commune_file.exists()
    if not enrolled:
        log.warning(
            "this hub trusts no commune key (%s): it accepts unsigned receipts", commune_file
        )
    return ReceiptGate(hub, commune, deliver, enrolled=enrolled)
