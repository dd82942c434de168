"""The receiver's store as ``tuquan watch`` uses it: opened without ever creating it, followed
into alerts, read as one board, and acted on for one operator.

Other processes (the receiver, the web console) write the same store meanwhile; SQLite's WAL
and ``BEGIN IMMEDIATE`` transactions, or PostgreSQL's own (``commune.db``), make that safe.
``data_version`` says when one of them committed, so the board is read again only then.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from commune.alerts import CLOSED, Alert, AlertBook, AlertChange
from commune.audit import AuditLog
from commune.db import STORE_ERRORS, open_db, shown_location
from commune.hubs import ExpectedHub, HubBook, HubRow, sign_of_life
from core.errors import TuquanError

FOLLOW_BATCH = 2000  # events per follow() transaction
FOLLOW_BATCHES_PER_LOOK = 10  # a long backlog is followed over several looks, between redraws
BOARD_ALERTS = 500  # the most open alerts one board holds


class StoreError(TuquanError):
    """The store cannot be used: missing, not a SQLite file, damaged, unreadable."""


@dataclass(frozen=True)
class Board:
    """One reading of the store: the open alerts in queue order and every hub."""

    alerts: tuple[Alert, ...]
    open_count: int  # open alerts in the store (``alerts`` holds at most BOARD_ALERTS)
    hubs: tuple[HubRow, ...]

    @cached_property
    def names(self) -> dict[str, str]:
        """Each hub's configured name, by id (hubs without one are left out)."""
        return {row.hub: row.name for row in self.hubs if row.name}


class WatchStore:
    """The alert, hub and audit tables of one receiver store, for one process.

    ``expected`` are the hubs a receiver config lists: shown even if the store has never
    heard of them, and named as the config names them where the store does not. Only shown:
    the store's ``hubs`` rows are the web console's to rewrite from its config."""

    def __init__(self, path: Path | str, expected: tuple[ExpectedHub, ...] = ()) -> None:
        self.path = path
        shown = shown_location(path)
        if isinstance(path, Path) and not path.exists():
            raise StoreError(
                f"no receiver store at {path} (is this the receiver's --data-dir? "
                "tuquan receive makes the file when it first runs)"
            )
        if isinstance(path, Path) and not path.is_file():
            raise StoreError(f"{path} is not a file")
        self.expected = expected
        try:
            self.db = open_db(path)
        except STORE_ERRORS as exc:
            raise StoreError(f"cannot open {shown}: {exc}") from None
        try:
            # Creates the alert, hub and audit tables if no console ever ran on this store.
            self.audit = AuditLog(self.db)
            self.alerts = AlertBook(self.db, self.audit)
            self.hubs = HubBook(self.db)
            self._sign_of_life = sign_of_life(self.hubs)
            self.board()  # a file damaged past its first page shows here, not mid-watch
        except STORE_ERRORS as exc:
            self.db.close()
            raise StoreError(f"cannot use {shown}: {exc}") from None

    def data_version(self) -> int:
        return self.db.data_version()

    def follow(self) -> tuple[list[AlertChange], bool]:
        """Open or join alerts for the events stored since the shared position (each batch one
        transaction with the position and the hubs' last events); the changes, and whether the
        store is caught up (False: more events wait for the next look)."""
        changes: list[AlertChange] = []
        for _ in range(FOLLOW_BATCHES_PER_LOOK):
            before = self.alerts.position()
            changes.extend(self.alerts.follow(FOLLOW_BATCH, self._sign_of_life, max_batches=1))
            if self.alerts.position() == before:
                return changes, True
        return changes, False

    def board(self) -> Board:
        hubs = {row.hub: row for row in self.hubs.all()}
        for hub in self.expected:
            known = hubs.get(hub.hub)
            hubs[hub.hub] = _unheard(hub) if known is None else _described(known, hub)
        counts = self.alerts.counts()
        return Board(
            alerts=tuple(self.alerts.open_alerts(limit=BOARD_ALERTS)),
            open_count=sum(n for state, n in counts.items() if state != CLOSED),
            hubs=tuple(hubs[h] for h in sorted(hubs)),
        )

    def acknowledge(self, alert_id: int, operator: str) -> Alert:
        return self.alerts.acknowledge(alert_id, operator)

    def close_alert(self, alert_id: int, operator: str, outcome: str, note: str) -> Alert:
        return self.alerts.close(alert_id, operator, outcome, note)

    def close(self) -> None:
        self.db.close()


def _described(row: HubRow, hub: ExpectedHub) -> HubRow:
    """``row`` with what the config says of the hub where the store says nothing."""
    return replace(
        row,
        expected=True,
        name=row.name or hub.name or None,
        place=row.place or hub.place or None,
        supervision_s=row.supervision_s or hub.supervision_s,
    )


def _unheard(hub: ExpectedHub) -> HubRow:
    return HubRow(
        hub=hub.hub,
        expected=True,
        name=hub.name or None,
        place=hub.place or None,
        latitude=hub.latitude,
        longitude=hub.longitude,
        contact=hub.contact or None,
        supervision_s=hub.supervision_s,
        first_seen_at=None,
        status=None,
        status_at=None,
        health=None,
        health_at=None,
        health_verified=None,
        last_event_at=None,
        last_event_kind=None,
        backlog_since=None,
        unsynced_since=None,
    )
