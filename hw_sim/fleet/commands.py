"""Commands to a simulated hub: the hub's own command handling (``gateway.commands``: hostile
input, retained and stale commands refused, unknown ones answered), over a small table of
handlers. A hub that trusts a commune key (``--commune-key``) is enrolled: like a real one it
runs only commands the commune signed (``gateway.command_check``), each once (its counter
window is a file per hub, made at its first command), and signs its results when it has a key.

Built for a hub at its first command: most hubs of a fleet never get one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.signing import PublicKey, SigningKey
from gateway.command_check import SignedCommandCheck
from gateway.commands import Commands
from gateway.replay import ReplayWindow

log = logging.getLogger(__name__)


def hub_commands(
    *,
    hub: str,
    commune: str,
    status: Callable[[], dict[str, Any]],
    silence: Callable[[str], None],
    answer: Callable[[dict[str, Any]], object],
    commune_key: PublicKey | None,
    hub_key: SigningKey | None,
    replay_dir: Path,
) -> Commands:
    """The command handling of one simulated hub: ``ping``, ``status``, ``silence`` (nothing
    sounds on a simulated hub; it reports the ``silenced`` event a real one reports) and
    ``snapshot`` (it has no camera)."""

    def ping(body: dict[str, Any]) -> dict[str, Any]:
        return {"ts": time.time()}

    def hub_status(body: dict[str, Any]) -> dict[str, Any]:
        return status()

    def silence_cmd(body: dict[str, Any]) -> dict[str, Any]:
        silence(str(body.get("by", "remote"))[:64])
        return {"silenced": []}

    def snapshot(body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": False, "error": "no snapshot for that event"}

    handlers = {"ping": ping, "status": hub_status, "silence": silence_cmd, "snapshot": snapshot}
    signed: SignedCommandCheck | None = None
    if commune_key is not None:
        replay: ReplayWindow | None = None
        try:
            replay_dir.mkdir(parents=True, exist_ok=True)
            replay = ReplayWindow(replay_dir / f"{hub}.sqlite3")
        except (OSError, sqlite3.Error) as exc:
            log.error("hub %s: its command counter file cannot be opened (%s)", hub, exc)
        signed = SignedCommandCheck(commune_key, hub, commune, replay)
    return Commands(handlers, answer, signed=signed, hub_key=hub_key, clock_synced=lambda: True)
