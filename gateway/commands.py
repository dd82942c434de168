"""Commands from the commune (``cmd/<name>``), on paho's network thread: parsed as hostile input,
refused when retained or stale, dispatched through a table of handlers, answered on
``cmd_result``. A bad command is counted, logged and answered (where it has a name); it never
reaches a handler."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from core.safe_json import loads_untrusted

log = logging.getLogger(__name__)

COMMAND_MAX_BYTES = 16_384  # a command is a few hundred bytes
COMMAND_MAX_AGE_S = 120.0  # a command's optional "ts" older than this is refused as stale
COMMAND_MAX_AHEAD_S = 30.0  # ... and one this far in the hub's future (clock skew, replay)

# A handler takes the command's body and returns the result's fields (``ok`` False to refuse).
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class Commands:
    def __init__(
        self, handlers: Mapping[str, Handler], answer: Callable[[dict[str, Any]], object]
    ) -> None:
        self.handlers = dict(handlers)
        self.answer = answer  # publishes a result on cmd_result
        self.malformed = 0  # commands dropped or refused: bad JSON, retained, stale, unknown

    def handle(self, name: str, payload: bytes, retained: bool = False) -> None:
        try:
            body = loads_untrusted(payload, max_bytes=COMMAND_MAX_BYTES) if payload else {}
            if not isinstance(body, dict):
                raise ValueError("command body must be a JSON object")
        except ValueError as exc:  # bad JSON, NaN, huge numbers, deep nesting, too long
            self.malformed += 1
            log.warning("dropped malformed command %s: %s", name[:40], exc)
            return
        request_id = str(body.get("request_id", ""))[:64]
        result: dict[str, Any] = {"cmd": name[:40], "request_id": request_id, "ok": True}
        refusal = refusal_of(body, retained, time.time())
        if refusal is not None:
            # A retained or stale `silence` would silence an alarm nobody has seen yet.
            self.malformed += 1
            log.warning("refused command %s: %s", name[:40], refusal)
            result.update(ok=False, error=refusal, hub_ts=round(time.time(), 3))
        elif name in self.handlers:
            result.update(self.handlers[name](body))
        else:
            self.malformed += 1
            result.update(ok=False, error=f"unknown command {name[:40]!r}")
        self.answer(result)


def refusal_of(body: dict[str, Any], retained: bool, now: float) -> str | None:
    """Why a command must not be carried out, or None.

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
