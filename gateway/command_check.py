"""Whether a signed command may run on an enrolled hub (docs/topics.md#signed-commands).

In order: the fields are there and typed; the commune's signature (purpose "command") holds;
the command is for this hub, this commune and the topic's name; it has not expired; and its
counter is new (``gateway.replay``). The counter comes last: recording it spends it, so only a
command that passed everything else may do so.

Expiry needs a clock. With the hub's clock synchronised: issued_at no more than 30 s in the
hub's future, and now no later than expires_at. Without (a Pi without RTC before NTP): the
timestamps mean nothing, so the command must have arrived with an MQTT 5 message expiry no
longer than its signed lifetime, which the broker enforces on its own clock, and the counter
keeps each one to a single run. Which checks ran is said in the result.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.signing import PublicKey, verify
from gateway.replay import REPLAY_FILE, ReplayWindow
from gateway.trust import HubKeys

log = logging.getLogger(__name__)

MAX_SKEW_S = 30.0  # issued_at may be this far in the hub's future (the two clocks differ)
MAX_LIFETIME_S = 86_400.0  # a command valid longer than a day is a mistake, not a command
_HEX_ID = re.compile(r"[0-9a-f]{32}")

CHECKS_SYNCED = ["signature", "hub", "expiry", "counter"]
CHECKS_UNSYNCED = ["signature", "hub", "counter", "mqtt-expiry"]


@dataclass(frozen=True)
class Verdict:
    refusal: str | None  # why it must not run, or None
    checks: list[str]  # what was verified (all of them, when it may run)


class SignedCommandCheck:
    def __init__(
        self, commune_key: PublicKey | None, hub: str, commune: str, replay: ReplayWindow | None
    ) -> None:
        self.commune_key = commune_key  # None: the key file cannot be read; everything refused
        self.hub = hub
        self.commune = commune
        self.replay = replay  # None: the counter file cannot be opened; everything refused

    def check(
        self,
        name: str,
        body: dict[str, Any],
        *,
        now: float,
        clock_synced: bool,
        message_expiry_s: int | None,
    ) -> Verdict:
        checks: list[str] = []
        if self.commune_key is None:
            return Verdict("the hub cannot read the commune's key: commands are refused", checks)
        fault = field_fault(body)
        if fault is not None:
            return Verdict(fault, checks)
        if not verify("command", body, self.commune_key):
            return Verdict("bad signature: not signed by this hub's commune key", checks)
        checks.append("signature")
        if body["hub"] != self.hub:
            return Verdict(f"command for another hub ({body['hub'][:64]!r})", checks)
        if body["commune"] != self.commune:
            return Verdict(f"command for another commune ({body['commune'][:64]!r})", checks)
        if body["name"] != name:
            return Verdict(f"signed for {body['name'][:40]!r}, sent on cmd/{name[:40]}", checks)
        checks.append("hub")
        issued, expires = float(body["issued_at"]), float(body["expires_at"])
        lifetime = expires - issued
        if not 0 < lifetime <= MAX_LIFETIME_S:
            return Verdict("expires_at must be after issued_at, by at most a day", checks)
        if clock_synced:
            if issued > now + MAX_SKEW_S:
                return Verdict(f"issued {issued - now:.0f} s in the hub's future", checks)
            if now > expires:
                return Verdict(f"expired {now - expires:.0f} s ago", checks)
            checks.append("expiry")
        elif message_expiry_s is None or not 0 < message_expiry_s <= math.ceil(lifetime):
            return Verdict(
                "the hub's clock is not synchronised and the message came without an MQTT"
                " message expiry within the command's lifetime",
                checks,
            )
        if self.replay is None:
            return Verdict("the hub cannot open its command counter file", checks)
        refusal = self.replay.admit(str(body["kid"]), body["counter"])
        if refusal is not None:
            return Verdict(refusal, checks)
        checks.append("counter")
        if not clock_synced:
            checks.append("mqtt-expiry")
        return Verdict(None, checks)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def field_fault(body: dict[str, Any]) -> str | None:
    """What is missing or mistyped in a signed command, or None."""
    for key in ("name", "hub", "commune", "operator", "id"):
        if not isinstance(body.get(key), str) or not body[key]:
            return f'"{key}" must be a non-empty string'
    if not _HEX_ID.fullmatch(body["id"]):
        return '"id" must be a uuid4 in hex (32 characters)'
    if not isinstance(body.get("args"), dict):
        return '"args" must be an object'
    if not _number(body.get("issued_at")) or not _number(body.get("expires_at")):
        return '"issued_at" and "expires_at" must be Unix seconds'
    counter = body.get("counter")
    if isinstance(counter, bool) or not isinstance(counter, int):
        return '"counter" must be an integer'
    return None


def command_trust(
    keys: HubKeys | None, data_dir: Path, hub: str, commune: str
) -> SignedCommandCheck | None:
    """The check signed commands pass when the hub is enrolled (None: not enrolled, unsigned
    commands run). Keys that could not be read (``keys`` None) leave the hub refusing every
    command (it cannot tell whose they are); the siren and the rest run on."""
    if keys is None:
        log.error("the hub's keys cannot be used: every command is refused")
        return SignedCommandCheck(None, hub, commune, None)
    if not keys.enrolled:
        log.warning(
            "no commune key in %s: this hub takes unsigned commands until it is enrolled",
            data_dir,
        )
        return None
    replay: ReplayWindow | None = None
    try:
        replay = ReplayWindow(data_dir / REPLAY_FILE)
    except (OSError, sqlite3.Error) as exc:
        log.error("the command counter file cannot be opened (%s): commands are refused", exc)
    return SignedCommandCheck(keys.commune, hub, commune, replay)
