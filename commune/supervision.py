"""Supervision of hubs: which receiver-side troubles each hub has now.

What an alarm-receiving centre does for its panels (Contact ID 350, communication trouble):
the police must learn that a hub went dark, not discover it. A hub has

- ``comm_trouble`` when its retained ``status`` says ``offline`` (its last will, or a clean
  stop), when it has been silent (no health, no event) for longer than its window, or when it
  is expected (``[[hubs]]``) and has never been heard once the desk has run for a window;
- ``alarm_backlog`` when its health has reported undelivered alarms for longer than
  ``alarm_backlog_min`` (alarms that are not getting through);
- ``clock_unsynced`` when its health has said ``clock_synced: false`` for longer than
  ``clock_unsynced_h`` (event times then come from a clock nobody set).

Signs of life: a health that verified (or any health while no hub is enrolled), a stored event
(verified at the edge), and an ``online`` status only while signatures are not in use — a
status message carries no signature, so with enrolment on it cannot keep a dead hub alive.
The durations are measured with the receiver's clock (``received_at``), never the hub's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from commune.desk_config import SupervisionConfig
from commune.hubs import HubRow

COMM_TROUBLE = "comm_trouble"
ALARM_BACKLOG = "alarm_backlog"
CLOCK_UNSYNCED = "clock_unsynced"
ZONES = {COMM_TROUBLE: "link", ALARM_BACKLOG: "outbox", CLOCK_UNSYNCED: "clock"}


@dataclass(frozen=True)
class Trouble:
    kind: str
    reason: str

    @property
    def zone(self) -> str:
        return ZONES[self.kind]


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def window_s(hub: HubRow, config: SupervisionConfig) -> float:
    return float(hub.supervision_s) if hub.supervision_s else config.default_window_s


def last_sign_of_life(hub: HubRow, *, signed: bool) -> str | None:
    """The newest time the hub showed it was alive (see the module docstring)."""
    times = [hub.last_event_at]
    if hub.health_at and (hub.health_verified or (not signed and hub.health_verified is None)):
        times.append(hub.health_at)
    if not signed and hub.status == "online":
        times.append(hub.status_at)
    present = [t for t in times if t]
    return max(present) if present else None


def assess(
    hub: HubRow, now: float, config: SupervisionConfig, *, running_since: float, signed: bool
) -> dict[str, Trouble]:
    """The troubles ``hub`` has at ``now`` (Unix s), by kind; ``running_since`` is when the desk
    started watching, ``signed`` whether hubs are enrolled (signatures in use)."""
    troubles: dict[str, Trouble] = {}
    window = window_s(hub, config)
    seen = last_sign_of_life(hub, signed=signed)
    if hub.status == "offline" and (seen is None or hub.status_at is None or seen <= hub.status_at):
        troubles[COMM_TROUBLE] = Trouble(COMM_TROUBLE, f"offline since {hub.status_at}")
    elif seen is None:
        if hub.expected and now - running_since > window:
            troubles[COMM_TROUBLE] = Trouble(COMM_TROUBLE, "expected, never heard from")
    elif now - seconds(seen) > window:
        troubles[COMM_TROUBLE] = Trouble(COMM_TROUBLE, f"silent since {seen} (window {window:g} s)")
    if hub.backlog_since and now - seconds(hub.backlog_since) > config.alarm_backlog_min * 60:
        troubles[ALARM_BACKLOG] = Trouble(
            ALARM_BACKLOG, f"undelivered alarms reported since {hub.backlog_since}"
        )
    if hub.unsynced_since and now - seconds(hub.unsynced_since) > config.clock_unsynced_h * 3600:
        troubles[CLOCK_UNSYNCED] = Trouble(
            CLOCK_UNSYNCED, f"clock unsynchronised since {hub.unsynced_since}"
        )
    return troubles
