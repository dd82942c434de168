"""The duty desk: what the police console runs beside the receiver, in the same process.

- follows the stored events into alerts (``commune.alerts``);
- records each hub's retained ``status``, its ``health`` (verified against the hub's enrolled
  key) and its ``cmd_result``s from MQTT (``commune.hub_watch``);
- supervises the hubs (``commune.supervision``): a hub offline, silent past its window, or
  expected and never heard raises a communication-trouble event (Contact ID 350) of the
  receiver's own, restored when it is back; so do alarms left undelivered and a clock left
  unsynchronised;
- escalates alerts nobody acknowledges and sends the notifications (``commune.notify``);
- sends operators' commands, signed by the commune for the operator.

Listeners (``listen``) are told of every change, on the desk's thread: ``{"type": "alert",
"id": ..., "action": ...}``, ``{"type": "hub", "hub": ...}``, ``{"type": "command", "id":
...}``, and ``{"type": "changed"}`` when another process wrote to the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from commune.alerts import Alert, AlertBook
from commune.audit import AuditLog
from commune.db import Db
from commune.hubs import CommandRecord, HubBook

Listener = Callable[[dict[str, Any]], None]


class Desk:
    """See the module docstring. ``db``, ``alerts``, ``hubs`` and ``audit`` may be read from
    any thread."""

    db: Db
    alerts: AlertBook
    hubs: HubBook
    audit: AuditLog

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each change notice; returns the function that stops it."""
        raise NotImplementedError

    def acknowledge(self, alert_id: int, user: str) -> Alert:
        """Acknowledge (stops the alert's escalation ladder); raises AlertError."""
        raise NotImplementedError

    def close(self, alert_id: int, user: str, outcome: str, note: str = "") -> Alert:
        raise NotImplementedError

    def send_command(
        self,
        hub: str,
        name: str,
        args: Mapping[str, Any],
        operator: str,
        alert_id: int | None = None,
    ) -> CommandRecord:
        """Sign ``name`` for ``operator``, publish it to the hub, record and audit it; the
        hub's ``cmd_result`` is recorded on the record when it comes (``hubs.command(id)``).
        Raises CommandSendError when it cannot be signed or published."""
        raise NotImplementedError
