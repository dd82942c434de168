"""Committing a batch of valid events without letting one message jam the receiver.

Two kinds of storage failure, told apart by the exception:
- *transient*: the disk, the file or the database server is sick (``sqlite3.OperationalError``:
  full, I/O error, locked; a bare ``sqlite3.DatabaseError``; ``OSError``; on PostgreSQL a lost
  connection, a failover, a read-only standby, a server shutting down, a missing table, a
  commit the synchronous standby did not confirm). Nothing is wrong with the messages, so the
  batch is retried with backoff while the broker keeps it unacknowledged.
- *for good*: the message itself cannot be stored (``OverflowError``, ``ValueError``,
  ``TypeError``, ``sqlite3.IntegrityError``/``InterfaceError``/``DataError``, psycopg's
  ``DataError``/``IntegrityError`` such as a NUL in text or a number out of range, anything
  else).
  Retrying would fail forever and hold back every message behind it, so the batch is stored
  again one message at a time to find the poison, which goes to the store's ``quarantine``
  table; the rest of the batch is stored as usual.

Runs on the receiver's writer thread, which owns the store.
"""

from __future__ import annotations

import enum
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from commune.store import EventStore, ReceivedEvent

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
_REASON_CHARS = 500

T = TypeVar("T")


class Outcome(enum.Enum):
    NEW = "new"  # stored for the first time
    DUPLICATE = "duplicate"  # already stored
    QUARANTINED = "quarantined"  # refused by the store for good; never receipted


class Stopped(Exception):
    """The receiver is stopping while the store keeps failing: leave the batch unacknowledged."""


@dataclass(frozen=True)
class Pending:
    """One valid event with the message that carried it (kept for the quarantine)."""

    topic: str
    payload: bytes
    event: ReceivedEvent


def is_transient(exc: BaseException) -> bool:
    """True if retrying may succeed: the failure is the disk's, the file's or the server's, not
    the message's."""
    if isinstance(exc, sqlite3.OperationalError | OSError):
        return True
    if isinstance(exc, psycopg.Error):
        return not isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
    # IntegrityError, DataError, InterfaceError... are subclasses: those are the message's.
    return type(exc) is sqlite3.DatabaseError


def retrying(what: str, action: Callable[[], T], stopping: threading.Event) -> T:
    """``action()`` until it succeeds; a transient failure is retried with backoff (logged when
    it starts and when it ends, not per retry); any other is raised. Stopped if ``stopping``
    is set while waiting."""
    delay = RETRY_FIRST_S
    failing_since: float | None = None
    while True:
        try:
            result = action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if failing_since is None:
                failing_since = time.monotonic()
                log.error(
                    "%s failed (%s: %s); retrying with backoff, unacknowledged meanwhile",
                    what,
                    type(exc).__name__,
                    exc,
                )
            else:
                log.debug("%s failed again: %s", what, exc)
        else:
            if failing_since is not None:
                log.warning(
                    "%s succeeded after %.1f s of failures", what, time.monotonic() - failing_since
                )
            return result
        if stopping.wait(delay):
            raise Stopped
        delay = min(delay * 2, RETRY_MAX_S)


def store_pending(
    store: EventStore, pending: Sequence[Pending], stopping: threading.Event
) -> list[Outcome]:
    """Store every pending event; one Outcome per item, in order. Raises Stopped."""
    if not pending:
        return []
    events = [p.event for p in pending]
    try:
        flags = retrying(
            f"storing {len(events)} event(s)", lambda: store.store_batch(events), stopping
        )
        return [Outcome.NEW if new else Outcome.DUPLICATE for new in flags]
    except Stopped:
        raise
    except Exception as exc:
        if len(pending) == 1:
            quarantine(store, pending[0], exc)
            return [Outcome.QUARANTINED]
        log.warning(
            "a batch of %d events was refused (%s); storing them one at a time",
            len(pending),
            _reason(exc),
        )
    outcomes: list[Outcome] = []
    for item in pending:
        try:
            [new] = retrying(
                f"storing event {item.event.id}",
                functools.partial(store.store_batch, [item.event]),
                stopping,
            )
        except Stopped:
            raise
        except Exception as exc:
            quarantine(store, item, exc)
            outcomes.append(Outcome.QUARANTINED)
        else:
            outcomes.append(Outcome.NEW if new else Outcome.DUPLICATE)
    return outcomes


def quarantine(store: EventStore, item: Pending, exc: BaseException) -> None:
    """Keep a message the store refused for good in the quarantine table (logged; if even that
    fails, logged and dropped: the hub still holds the event, unreceipted)."""
    reason = _reason(exc)
    try:
        store.quarantine(item.topic, item.payload, reason, item.event.received_at)
    except Exception as second:
        log.error(
            "event %s on %s refused by the store (%s) and not quarantined (%s): dropped",
            item.event.id,
            item.topic,
            reason,
            _reason(second),
        )
        return
    log.error("event %s on %s quarantined: %s", item.event.id, item.topic, reason)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_REASON_CHARS]
