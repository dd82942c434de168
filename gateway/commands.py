"""Commands from the commune (``cmd/<name>``), on paho's network thread: parsed as hostile input,
refused when retained, checked, dispatched through a table of handlers, answered on
``cmd_result``. A bad command is counted, logged and answered (where it has a name); it never
reaches a handler.

An enrolled hub (``gateway.trust.HubKeys``: the commune's key is configured) runs only commands
the commune signed (``gateway.command_check``), each once; it refuses unsigned ones. A hub not
enrolled yet takes unsigned commands as before, refusing stale ones by their optional "ts".
An enrolled hub signs its results with its own key (purpose "cmd_result").
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from core.safe_json import loads_untrusted
from core.signing import SigningKey
from gateway.command_check import SignedCommandCheck

log = logging.getLogger(__name__)

COMMAND_MAX_BYTES = 16_384  # a command is a few hundred bytes
COMMAND_MAX_AGE_S = 120.0  # an unsigned command's optional "ts" older than this is stale
COMMAND_MAX_AHEAD_S = 30.0  # ... and one this far in the hub's future (clock skew, replay)

# A handler takes the command's body and returns the result's fields (``ok`` False to refuse).
# A signed command's handler body is its "args" with "by" set to the operator.
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _never_synced() -> bool:
    return False


class Commands:
    def __init__(
        self,
        handlers: Mapping[str, Handler],
        answer: Callable[[dict[str, Any]], object],
        *,
        signed: SignedCommandCheck | None = None,
        hub_key: SigningKey | None = None,
        clock_synced: Callable[[], bool] = _never_synced,
    ) -> None:
        self.handlers = dict(handlers)
        self.answer = answer  # publishes a result on cmd_result
        self.signed = signed  # None: not enrolled, unsigned commands accepted
        self.hub_key = hub_key
        self.clock_synced = clock_synced
        self.malformed = 0  # commands dropped or refused: bad JSON, retained, stale, unknown
        self.refused = 0  # commands refused by the trust checks: unsigned, bad signature...
        self._logged_faults: set[str] = set()

    def handle(
        self, name: str, payload: bytes, retained: bool = False, expiry_s: int | None = None
    ) -> None:
        """``expiry_s``: what remained of the message's MQTT 5 expiry interval when it arrived."""
        try:
            body = loads_untrusted(payload, max_bytes=COMMAND_MAX_BYTES) if payload else {}
            if not isinstance(body, dict):
                raise ValueError("command body must be a JSON object")
        except ValueError as exc:  # bad JSON, NaN, huge numbers, deep nesting, too long
            self.malformed += 1
            log.warning("dropped malformed command %s: %s", name[:40], exc)
            return
        if self.signed is not None:
            self._answer(self._signed(name, body, retained, expiry_s))
        else:
            self._answer(self._unsigned(name, body, retained))

    def _unsigned(self, name: str, body: dict[str, Any], retained: bool) -> dict[str, Any]:
        request_id = str(body.get("request_id", ""))[:64]
        result: dict[str, Any] = {"cmd": name[:40], "request_id": request_id, "ok": True}
        refusal = refusal_of(body, retained, time.time())
        if refusal is not None:
            # A retained or stale `silence` would silence an alarm nobody has seen yet.
            self.malformed += 1
            log.warning("refused command %s: %s", name[:40], refusal)
            result.update(ok=False, error=refusal, hub_ts=round(time.time(), 3))
            return result
        if "sig" in body and isinstance(body.get("args"), dict):  # signed, on a hub not enrolled
            result.update(self._run(name, handler_body(body)))
        else:
            result.update(self._run(name, body))
        return result

    def _signed(
        self, name: str, body: dict[str, Any], retained: bool, expiry_s: int | None
    ) -> dict[str, Any]:
        assert self.signed is not None
        now = time.time()
        synced = self.clock_synced()
        command_id = body.get("id")
        result: dict[str, Any] = {
            "cmd": name[:40],
            "request_id": str(body.get("request_id", command_id or ""))[:64],
            "ok": True,
            "command_id": command_id[:64] if isinstance(command_id, str) else None,
            "operator": str(body.get("operator", ""))[:64] or None,
            "checks": [],
            "clock_synced": synced,
        }
        if retained:
            refusal: str | None = "retained commands are refused"
        elif "sig" not in body:
            refusal = "unsigned command refused: this hub runs only commands its commune signed"
        else:
            verdict = self.signed.check(
                name, body, now=now, clock_synced=synced, message_expiry_s=expiry_s
            )
            refusal = verdict.refusal
            result["checks"] = verdict.checks
        if refusal is not None:
            self.refused += 1
            self._log_refusal(name, refusal)
            result.update(ok=False, error=refusal, hub_ts=round(now, 3))
            return result
        result.update(self._run(name, handler_body(body)))
        return result

    def _run(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name in self.handlers:
            return self.handlers[name](body)
        self.malformed += 1
        return {"ok": False, "error": f"unknown command {name[:40]!r}"}

    def _log_refusal(self, name: str, refusal: str) -> None:
        """A warning the first time for each kind of fault, then at debug: a flood of replays
        must not fill the log."""
        key = re.sub(r"\d+", "N", refusal)
        level = logging.DEBUG if key in self._logged_faults else logging.WARNING
        self._logged_faults.add(key)
        log.log(level, "refused command %s: %s", name[:40], refusal)

    def close(self) -> None:
        if self.signed is not None and self.signed.replay is not None:
            self.signed.replay.close()

    def _answer(self, result: dict[str, Any]) -> None:
        # Signed once enrolled; before, the result is today's, unsigned.
        signed = self.signed is not None and self.hub_key is not None
        self.answer(self.hub_key.sign("cmd_result", result) if signed and self.hub_key else result)


def handler_body(command: dict[str, Any]) -> dict[str, Any]:
    """What a handler sees of a signed command: its args, and the operator as "by"."""
    return {**command["args"], "by": str(command.get("operator", "remote"))}


def refusal_of(body: dict[str, Any], retained: bool, now: float) -> str | None:
    """Why an unsigned command must not be carried out, or None.

    Commands are not retained: a retained one would run again at every reconnect. The optional
    "ts" (Unix seconds, when the console sent it) bounds how late a command queued in the
    hub's session may still act.
    """
    if retained:
        return "retained commands are refused"
    if "ts" not in body:
        return None
    ts = body["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return "ts must be Unix seconds"
    if now - ts > COMMAND_MAX_AGE_S:
        return f"stale command: sent {now - ts:.0f} s ago (limit {COMMAND_MAX_AGE_S:.0f} s)"
    if ts - now > COMMAND_MAX_AHEAD_S:
        return "ts is in the future"
    return None
