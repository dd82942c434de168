"""The receiver's keys: the commune's signing key, and the enrolled hubs' public keys.

- ``<receiver data dir>/commune.key`` (Ed25519, PEM, 0600) signs every receipt. It is made on
  the receiver's first start (or by ``tuquan keys init --receiver``); hubs trust its public key
  (``tuquan keys show --receiver``, then ``tuquan keys trust --commune KEY`` at the hub).
- The ``hub_keys`` table of the receiver's store lists the keys enrolled with
  ``tuquan keys trust HUB KEY``. Once any key was ever enrolled ("enrolment on"), an event is
  stored only if its signature verifies with a key of its own hub that is not revoked; what
  does not verify is quarantined. With no key enrolled at all, nothing is verified, as before.

Key rotation: enrolling a new key for a hub makes it the hub's active key, and the hub's
previous keys stay acceptable for events whose ``kid`` names them, until they are revoked
(``tuquan keys revoke HUB --key FINGERPRINT``). A hub whose key was replaced still has events
signed with the old key in its outbox (signed once, when committed, and re-sent byte for byte);
they are delivered, not lost. A key known to be stolen is revoked by fingerprint; revoking the
hub revokes all its keys. Only a revocation takes a key out of use, so a rotation for hygiene
ends with revoking the old key once the hub's outbox has drained.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commune.store import EventStore, HubKeyRecord
from core.signing import KeyFileError, PublicKey, SigningKey, signature_of, verify

log = logging.getLogger(__name__)

COMMUNE_KEY_FILE = "commune.key"


def load_commune_key(data_dir: Path) -> SigningKey:
    """The commune's signing key in ``data_dir``, made there (0600) if there is none."""
    key, made = SigningKey.load_or_create(data_dir / COMMUNE_KEY_FILE)
    if made:
        log.warning(
            "made the commune's signing key %s (fingerprint %s): enrol it at each hub with"
            " `tuquan keys trust --commune %s`",
            data_dir / COMMUNE_KEY_FILE,
            key.public.fingerprint,
            key.public.text,
        )
    return key


@dataclass(frozen=True)
class Verdict:
    """Whether an event verified: ``verified`` None when no hub is enrolled (nothing checked);
    ``reason`` says why it did not."""

    verified: bool | None
    reason: str = ""


NOT_CHECKED = Verdict(None)


class HubKeyring:
    """The enrolled keys as the writer thread sees them, read again from the store whenever
    another connection (``tuquan keys``) has committed to it. Used on the writer thread only."""

    def __init__(self) -> None:
        self._version: int | None = None
        self._keys: dict[str, list[HubKeyRecord]] = {}
        self._public: dict[tuple[str, str], PublicKey] = {}

    def refresh(self, store: EventStore) -> None:
        version = store.data_version()
        if version == self._version:
            return
        was_on = self.enabled if self._version is not None else None
        self._version = version
        keys: dict[str, list[HubKeyRecord]] = {}
        for record in store.hub_keys():
            keys.setdefault(record.hub, []).append(record)
        self._keys = keys
        self._public = {}
        for record in (r for rs in keys.values() for r in rs):
            try:
                self._public[(record.hub, record.fingerprint)] = PublicKey.from_text(record.key)
            except KeyFileError as exc:  # written by `tuquan keys trust`, which checks keys
                log.error("enrolled key of hub %s is unusable: %s", record.hub, exc)
        if was_on is None:
            if self.enabled:
                log.info("verifying events: %d hub(s) enrolled", self.active_hubs)
            else:
                log.warning(
                    "no hub is enrolled: events are stored and receipted without verifying"
                    " their signatures (enrol hubs with `tuquan keys trust HUB KEY`)"
                )
        elif self.enabled and not was_on:
            log.warning("a hub was enrolled: from now on events that do not verify are quarantined")

    @property
    def enabled(self) -> bool:
        """Enrolment is on: some key was enrolled (revoking every hub does not turn it off)."""
        return bool(self._keys)

    def knows(self, hub: str) -> bool:
        """Whether ``hub`` has ever had a key enrolled here."""
        return hub in self._keys

    @property
    def active_hubs(self) -> int:
        return sum(any(r.revoked_at is None for r in rs) for rs in self._keys.values())

    def check(self, hub: str, obj: Mapping[str, Any], purpose: str = "event") -> Verdict:
        """The verdict on ``obj`` of ``hub`` (the topic's hub, which the payload's agrees
        with), signed for ``purpose`` ("event", or "health", "cmd_result")."""
        if not self.enabled:
            return NOT_CHECKED
        records = self._keys.get(hub)
        if not records:
            return Verdict(False, f"hub {hub} is not enrolled")
        acceptable = {r.fingerprint: r for r in records if r.revoked_at is None}
        if not acceptable:
            return Verdict(False, f"hub {hub} is revoked")
        kid = obj.get("kid")
        if signature_of(obj) is None or not isinstance(kid, str):
            return Verdict(False, "unsigned" if "sig" not in obj else "malformed signature")
        record = acceptable.get(kid)
        if record is None:
            revoked = any(r.fingerprint == kid for r in records)
            shown = kid[:40]
            return Verdict(
                False,
                f"key {shown} of hub {hub} is revoked"
                if revoked
                else f"signed with key {shown}, not enrolled for hub {hub}",
            )
        public = self._public.get((hub, kid))
        if public is None or not verify(purpose, obj, public):
            return Verdict(False, f"bad signature by key {kid} of hub {hub}")
        return Verdict(True)
