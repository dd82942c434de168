"""The outbox as the store thread sees it: the SQLite file while the disk works, memory while
it does not, and a fresh file when the old one is damaged. It never raises a storage error.

Faults and what happens (docs/operations.md, "Faults and what the hub does"):

* **Damaged file** (not a database, fails ``PRAGMA quick_check`` at start, or "malformed" at
  run time): the file and its WAL are moved aside as ``outbox.sqlite3.damaged-<time>`` (never
  deleted), the undelivered events it still yields are saved into a fresh file, and numbering
  resumes after the highest seq known (``outbox.seq``, gateway/outbox_files.py), so no seq that
  may have been published is used again. A ``storage_fault`` (Contact ID 300) and its restore
  report it, with the quarantined file's name.
* **Empty or missing file** while ``outbox.seq`` says events were numbered: the same report;
  numbering resumes after the reserved block.
* **Full, read-only or failing disk**: new alarms and trouble reports are kept in memory with
  their seq and published at once; telemetry and detections are refused (their submitter is
  told); a ``storage_fault`` goes out at once from memory. Writes are retried every
  ``RETRY_S``; once one works, everything held in memory is committed and the restore sent.
  One log line when the state changes, not one per retry.

One thread (the dispatcher's store thread) uses an instance; nothing here locks.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from core.events import NEW, RESTORE, Event, Priority
from core.signing import SigningKey
from gateway.held_events import Held, HeldEvents
from gateway.outbox import DELIVERED, PENDING, SENT, Outbox, OutboxDamaged, OutboxStats, Row
from gateway.outbox_files import SEQ_BLOCK, SeqRecord, quarantine, salvage
from gateway.signed_payloads import event_payload
from gateway.storage_faults import StorageHealth, StorageRefused, is_damage, reason_of

__all__ = ["MEMORY_LIMIT", "GuardedOutbox", "StorageRefused"]

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_S = 2.0  # how often writes are tried again while the disk refuses them
MEMORY_LIMIT = 10_000  # trouble reports held in memory at most; alarms are never refused
_ALARM = int(Priority.ALARM)
_KEPT_IN_MEMORY = (int(Priority.ALARM), int(Priority.TROUBLE))


class GuardedOutbox:
    """Same calls as ``Outbox`` (the ones the dispatcher makes), never a storage exception.

    ``report`` receives the hub's own ``storage_fault`` events (``Hub.emit``); it is called
    on the store thread and must only queue them. ``signer`` (the hub's key) signs each
    event's payload once, whether it is written to the file or held in memory; rows saved from
    a damaged file keep the payload they had.
    """

    def __init__(
        self,
        path: Path,
        hub: str,
        *,
        max_events: int = 100_000,
        delivered_retention_s: float = 86_400.0,
        report: Callable[[Event], object] | None = None,
        signer: SigningKey | None = None,
    ) -> None:
        self.path = Path(path)
        self.hub = hub
        self.signer = signer
        self.max_events = max_events
        self.delivered_retention_s = delivered_retention_s
        self.report = report
        self.seq_record = SeqRecord(self.path.with_name(self.path.name + ".seq"))
        self.db: Outbox | None = None
        self.generation = 0  # bumped when rows reappear (a fresh file): rescan from the start
        self.late_opens = 0  # the file opened after start (the disk refused it at first)
        self.storage = StorageHealth(since=time.time())
        self._held = HeldEvents()
        self._last_seq = 0
        # Seqs reserved by a run that did not stop cleanly and never used: (first, last).
        self.unused_seqs: tuple[int, int] | None = None
        self._payloads: dict[str, bytes] = {}  # made before their commit (``payload``), by id
        self._next_retry = 0.0
        self._stats = OutboxStats()

    # -- opening --------------------------------------------------------------------------

    def open(self) -> None:
        """Open the file, moving a damaged one aside. On a disk that refuses, run from memory."""
        reserved = self.seq_record.load()
        if self.seq_record.problem:
            log.warning("outbox: %s", self.seq_record.problem)
        lost: str | None = None
        if reserved and (not self.path.exists() or self.path.stat().st_size == 0):
            lost = "missing" if not self.path.exists() else "empty"
        if lost == "empty":
            self._move_aside(f"the outbox file was empty although {reserved} seqs were reserved")
        elif lost == "missing":
            self._fault_event(
                "lost",
                f"the outbox file was missing although {reserved} seqs were reserved",
                resumed_at=reserved + 1,
            )
        if self.db is None and self.storage.state == "ok":
            self._open_db(resume_after=reserved if lost else 0)
        if self.db is not None:
            behind = self.db.last_seq < reserved - 2 * SEQ_BLOCK
            if behind:  # an older copy put back: its events after it are gone
                self._fault_event(
                    "lost",
                    f"the outbox file ends at seq {self.db.last_seq} but seqs up to "
                    f"{reserved} were reserved: it is older than this hub",
                    resumed_at=reserved + 1,
                )
                self._write(lambda db: db.set_last_seq(reserved), None)
                self._last_seq = max(self._last_seq, reserved)
            elif reserved > self.db.last_seq:
                # The last run did not stop cleanly (a crash, a power cut, kill -9): an alarm
                # may have gone out under any seq it had reserved, before its commit.
                self.unused_seqs = (self.db.last_seq + 1, reserved)
                log.warning(
                    "outbox: the last run did not stop cleanly; seqs %d to %d were reserved"
                    " and are never used",
                    *self.unused_seqs,
                )
                self._write(lambda db: db.set_last_seq(reserved), None)
                self._last_seq = max(self._last_seq, reserved)
            log.info(
                "outbox %s holds %d undelivered events; next seq %d",
                self.path,
                self.db.undelivered,
                self._last_seq + 1,
            )
        self.seq_record.reserve_through(self._last_seq)

    def _open_db(self, resume_after: int = 0) -> None:
        """Open the file (or a fresh one after moving a damaged one aside)."""
        try:
            db = self._new_outbox(check=True)
        except Exception as exc:
            if not is_damage(exc):
                self._degrade(exc)
                return
            self._recover(exc)
            return
        self._use(db, resume_after)

    def _new_outbox(self, check: bool) -> Outbox:
        return Outbox(
            self.path,
            self.hub,
            max_events=self.max_events,
            delivered_retention_s=self.delivered_retention_s,
            check=check,
            signer=self.signer,
        )

    def _use(self, db: Outbox, resume_after: int) -> None:
        self.db = db
        top = max(resume_after, self._last_seq)
        if top > db.last_seq:
            db.set_last_seq(top)
        self._last_seq = max(self._last_seq, db.last_seq)

    def _recover(self, exc: BaseException) -> None:
        """The file is damaged: move it aside, keep what it yields, start a fresh one."""
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None
        self._move_aside(f"{type(exc).__name__}: {exc}")

    def _move_aside(self, why: str) -> None:
        try:
            moved = quarantine(self.path)
        except OSError as err:
            log.error(
                "outbox %s is damaged (%s) and cannot be moved aside: %s", self.path, why, err
            )
            self._degrade(err)
            return
        saved = salvage(moved, self.hub) if moved is not None else None
        top = max(self.seq_record.reserved, saved.max_seq if saved else 0, self._last_seq)
        name = moved.name if moved is not None else None
        log.error(
            "outbox %s is damaged (%s): moved aside as %s; %d undelivered events saved from it; "
            "numbering resumes at %d",
            self.path,
            why,
            name,
            len(saved.rows) if saved else 0,
            top + 1,
        )
        if name:
            self.storage.quarantined = [*(self.storage.quarantined or []), name]
        try:
            db = self._new_outbox(check=False)
            self._use(db, top)
            if saved and saved.rows:
                db.insert_rows(
                    [(s, i, k, p, PENDING, bytes(pl)) for s, i, k, p, _, pl in saved.rows]
                )
        except Exception as err:
            self.db = None
            self._last_seq = max(self._last_seq, top)
            log.error("a fresh outbox could not be started either: %s", err)
            self._degrade(err)
        self.generation += 1
        data: dict[str, Any] = {"quarantined": name, "saved": len(saved.rows) if saved else 0}
        self._fault_event("damaged", why, resumed_at=top + 1, **data)
        if self.db is not None:
            self._fault_event("damaged", "a fresh outbox file is in use", restore=True, **data)

    # -- faults ---------------------------------------------------------------------------

    def _fault_event(self, fault: str, error: str, *, restore: bool = False, **data: Any) -> None:
        if self.report is None:
            return
        event = Event(
            kind="storage_fault",
            zone="hub",
            source="outbox",
            qualifier=RESTORE if restore else NEW,
            data={"fault": fault, "error": error[:300], "file": self.path.name, **data},
        )
        try:
            self.report(event)
        except Exception:
            log.exception("could not report a storage fault")

    def _degrade(self, exc: BaseException) -> None:
        """The disk refuses writes: from now on new events are held in memory."""
        if self.storage.state != "ok":
            return
        self._next_retry = time.monotonic() + RETRY_S
        reason = reason_of(exc)
        self.storage = replace(self.storage, state=reason, since=time.time(), error=str(exc)[:300])
        log.error(
            "outbox %s cannot be written (%s: %s): alarms and trouble are kept in memory and "
            "sent at once, telemetry and detections are refused, until it can",
            self.path,
            reason,
            exc,
        )
        self._fault_event(reason, f"{type(exc).__name__}: {exc}")

    def _fault(self, exc: Exception) -> None:
        if is_damage(exc):
            self._recover(exc)
        else:
            self._degrade(exc)

    def _write(self, fn: Callable[[Outbox], T], default: T) -> T:
        """A write to the file; its failure is a fault, handled, and ``default`` returned."""
        if self.db is None:
            return default
        try:
            return fn(self.db)
        except Exception as exc:
            if not isinstance(exc, sqlite3.Error | OSError | OutboxDamaged):
                raise
            self.storage.write_errors += 1
            self._fault(exc)
            return default

    _read = _write  # a read that fails is a fault of the same kinds

    def maintain(self) -> None:
        """Store thread, every turn: while degraded, try to write what memory holds."""
        if self.storage.state == "ok" and self.db is not None:
            return
        now = time.monotonic()
        if now < self._next_retry:
            return
        self._next_retry = now + RETRY_S
        if self.db is None:
            try:
                self._use(self._new_outbox(check=False), self._last_seq)
                self.generation += 1  # its pending rows are new to the pump
                self.late_opens += 1  # and its sent rows have no receipt this run knows of
            except Exception as exc:
                if is_damage(exc):
                    self._recover(exc)
                return
        rows = [h.stored() for h in self._held]
        try:
            self.db.insert_rows(rows)  # type: ignore[union-attr]
            # Seqs given out in memory and already delivered are used too: never again.
            self.db.set_last_seq(self._last_seq)  # type: ignore[union-attr]
        except Exception as exc:
            if is_damage(exc):
                self._recover(exc)
            return
        previous = self.storage
        down_s = round(time.time() - previous.since, 1)
        log.warning(
            "outbox %s writable again after %.0f s: %d events held in memory are on disk",
            self.path,
            down_s,
            len(rows),
        )
        self._held.clear()
        # Rows whose sent/delivered marks could not be written are pending again: rescan.
        self.generation += 1
        self.storage = StorageHealth(
            since=time.time(),
            refused=previous.refused,
            quarantined=previous.quarantined,
            write_errors=previous.write_errors,
        )
        self.seq_record.reserve_through(self._last_seq)
        self._fault_event(previous.state, "the outbox is written again", restore=True,
                          down_s=down_s, written=len(rows), refused=previous.refused)  # fmt: skip

    # -- writes ---------------------------------------------------------------------------

    def insert(self, events: Sequence[Event], *, again: bool = True) -> list[Event]:
        """Commit, or hold in memory; a refused event comes back with seq 0."""
        if not events:
            return []
        if self.storage.state == "ok" and self.db is not None:
            self.seq_record.reserve_through(self._last_seq + len(events))
            try:
                stored = self.db.insert(events, self._payloads)
            except Exception as exc:
                if not isinstance(exc, sqlite3.Error | OSError | OutboxDamaged):
                    raise
                self._fault(exc)
                if again and self.storage.state == "ok" and self.db is not None:
                    return self.insert(events, again=False)  # a fresh file after damage
            else:
                self._last_seq = max(self._last_seq, self.db.last_seq)
                self._stats.inserted += len(stored)
                self._forget_payloads(events)
                return stored
        held = [self._hold(e) for e in events]
        self._forget_payloads(events)
        return held

    def _forget_payloads(self, events: Sequence[Event]) -> None:
        if self._payloads:
            for event in events:
                self._payloads.pop(event.id, None)

    def number(self, events: Sequence[Event]) -> list[Event] | None:
        """The events with their seqs, given before their commit so that alarms among them
        can be published while it is in flight. Every seq given is durably reserved first
        (``outbox.seq``), so a crash before the commit cannot give a published seq to another
        event. None where that cannot be promised (the record cannot be written, an event
        already has a seq or is already stored): those events go out after their commit."""
        if any(e.seq for e in events) or any(self.state_of(e.id) is not None for e in events):
            return None
        top = self._last_seq + len(events)
        if not self.seq_record.reserve_through(top) or top > self.seq_record.reserved:
            return None
        numbered = [replace(e, seq=self._last_seq + 1 + i) for i, e in enumerate(events)]
        self._last_seq = top
        return numbered

    def payload(self, event: Event) -> bytes:
        """The event's message as it is stored and published; made once: its commit stores
        these bytes."""
        made = self._payloads[event.id] = event_payload(event, self.hub, self.signer)
        return made

    def _hold(self, event: Event) -> Event:
        seq = self._held.seq_of(event.id)
        if seq is not None:
            return replace(event, seq=seq)
        priority = int(event.priority)
        if priority not in _KEPT_IN_MEMORY or (
            priority != _ALARM and len(self._held) >= MEMORY_LIMIT
        ):
            self.storage.refused += 1
            return replace(event, seq=0)
        if event.seq:  # numbered before its commit (and maybe published already): keeps it
            self._last_seq = max(self._last_seq, event.seq)
        else:
            self._last_seq += 1
            event = replace(event, seq=self._last_seq)
        payload = self._payloads.get(event.id) or event_payload(event, self.hub, self.signer)
        self._held.add(Held(event.seq, event.id, event.kind, priority, payload))
        return event

    def mark_sent(self, seqs: Sequence[int]) -> int:
        rest = self._held.mark(seqs, SENT)
        return self._write(lambda db: db.mark_sent(rest), 0) + len(seqs) - len(rest)

    def mark_delivered(self, seqs: Sequence[int] = (), ids: Sequence[str] = ()) -> int:
        rest_seqs = self._held.mark(seqs, DELIVERED)
        done, rest_ids = self._held.deliver_ids(ids)
        done += len(seqs) - len(rest_seqs)
        return done + self._write(lambda db: db.mark_delivered(rest_seqs, rest_ids), 0)

    def requeue_unconfirmed(self, older_than_s: float) -> list[tuple[int, int]]:
        cutoff = time.time() - older_than_s
        back = self._held.requeue(lambda h: h.sent_at < cutoff)
        return back + self._write(lambda db: db.requeue_unconfirmed(older_than_s), back[:0])

    def requeue_sent(self, priority: int | None = None) -> list[tuple[int, int]]:
        back = self._held.requeue(lambda h: priority is None or h.priority == priority)
        return back + self._write(lambda db: db.requeue_sent(priority), back[:0])

    def requeue_all_sent(self) -> int:
        return self._write(lambda db: db.requeue_all_sent(), 0)

    def prune_delivered(self) -> int:
        return self._write(lambda db: db.prune_delivered(), 0)

    # -- reads ----------------------------------------------------------------------------

    def pending_alarms(self, after_seq: int, limit: int) -> list[Row]:
        none: list[Row] = []
        rows = self._read(lambda db: db.pending_alarms(after_seq, limit), none)
        return self._held.merge_alarms(rows, after_seq, limit)

    def pending_after(self, priority: int, seq: int, limit: int) -> list[Row]:
        none: list[Row] = []
        rows = self._read(lambda db: db.pending_after(priority, seq, limit), none)
        return self._held.merge_after(rows, priority, seq, limit)

    def counts(self) -> dict[str, int]:
        out = self._read(lambda db: db.counts(), {"pending": 0, "sent": 0, "delivered": 0})
        return self._held.add_counts(out)

    def held(self, seq: int) -> bool:
        """True while the event is only in memory (not on disk, not delivered)."""
        return seq in self._held

    def state_of(self, event_id: str) -> int | None:
        state = self._held.state_of(event_id)
        if state is not None:
            return state
        return self._read(lambda db: db.state_of(event_id), None)

    def health(self) -> dict[str, Any]:
        s = self.storage
        out: dict[str, Any] = {"state": s.state, "in_memory": len(self._held)}
        if s.state != "ok":
            out.update(since=round(s.since, 3), error=s.error)
        for key in ("refused", "write_errors"):
            if getattr(s, key):
                out[key] = getattr(s, key)
        if s.quarantined:
            out["quarantined"] = s.quarantined
        if self.unused_seqs:
            out["unused_seqs"] = list(self.unused_seqs)
        return out

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def undelivered(self) -> int:
        return (self.db.undelivered if self.db is not None else 0) + len(self._held)

    @property
    def stats(self) -> OutboxStats:
        return self.db.stats if self.db is not None else self._stats

    @property
    def conn(self) -> sqlite3.Connection:
        """The file's connection (tests make the disk refuse writes through it)."""
        assert self.db is not None, "no outbox file is open"
        return self.db.conn

    def close(self) -> None:
        """Close the file. Events still only in memory are logged whole: the last record."""
        for held in self._held:
            log.error(
                "event %s (seq %d) was never written to disk nor receipted: %s",
                held.id,
                held.seq,
                held.payload.decode(errors="replace"),
            )
        if self.db is not None:
            if not self._held and self.db.last_seq >= self._last_seq:
                self.seq_record.release(self._last_seq)  # a clean stop: no gap next time
            try:
                self.db.close()
            except sqlite3.Error:
                log.exception("closing the outbox")
