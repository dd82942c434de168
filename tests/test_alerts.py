"""The alert lifecycle on a real store (a SQLite file, and PostgreSQL): events stored by the
receiver's EventStore become alerts (one incident per hub and window, a trouble closed by its
restore), operators' actions move them new → acknowledged → closed with an append-only audit,
the queue is ordered
by priority then state then age, and a crash between storing and following loses nothing and
opens nothing twice."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from commune.alerts import ACKNOWLEDGED, CLOSED, NEW, RESTORED, AlertBook, AlertError
from commune.db import open_db
from commune.desk_config import SupervisionConfig
from commune.hubs import ExpectedHub, HubBook
from commune.incidents import INCIDENT_WINDOW_S
from commune.store import EventStore, ReceivedEvent
from commune.supervision import ALARM_BACKLOG, CLOCK_UNSYNCED, COMM_TROUBLE, assess, seconds
from core.events import Event, utc_iso

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def at(offset_s: float) -> str:
    return utc_iso((T0 + timedelta(seconds=offset_s)).timestamp())


def received(
    kind: str, *, hub: str = "h1", zone: str = "z1", qualifier: str = "E", t: float = 0
) -> ReceivedEvent:
    event = Event(kind=kind, zone=zone, source="test", qualifier=qualifier)
    return ReceivedEvent.from_event(event, hub=hub, commune="c", payload="{}", received_at=at(t))


@pytest.fixture(params=["sqlite", "postgresql"])
def path(request: pytest.FixtureRequest, tmp_path: Path | str) -> Path | str:
    """The store: a SQLite file, or a PostgreSQL database of the test's own."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return tmp_path / "receiver.sqlite3"


@pytest.fixture
def store(path: Path | str) -> EventStore:
    return EventStore(path)


@pytest.fixture
def book(path: Path | str, store: EventStore) -> AlertBook:
    return AlertBook(open_db(path))


def test_an_alarm_its_camera_incident_and_a_late_silence_are_one_incident(
    store: EventStore, book: AlertBook
) -> None:
    store.store_batch(
        [
            received("person", zone="gate-cam", t=0),
            received("panic", t=30),
            received("panic", hub="h2", t=31),  # another hub: its own alert
            received("silenced", t=INCIDENT_WINDOW_S + 300),  # late, still this incident
            received("person", zone="gate-cam", qualifier="R", t=INCIDENT_WINDOW_S + 400),
        ]
    )
    changes = book.follow()
    assert [c.action for c in changes] == ["opened", "joined", "opened", "joined", "joined"]
    first = book.get(changes[0].alert_id)
    assert first is not None
    # The panic names the incident: it is more urgent than the detection it joined.
    assert (first.kind, first.zone, first.priority, first.cid, first.events) == (
        "panic",
        "z1",
        0,
        120,
        4,
    )
    assert [e["kind"] for e in book.events_of(first.id)] == [
        "person",
        "panic",
        "silenced",
        "person",
    ]
    assert first.state == NEW  # the person gone does not close the alarm


def test_an_alarm_after_the_window_opens_a_new_alert(store: EventStore, book: AlertBook) -> None:
    store.store_batch([received("panic", t=0), received("fire", t=INCIDENT_WINDOW_S + 1)])
    assert [c.action for c in book.follow()] == ["opened", "opened"]


def test_a_trouble_repeats_into_its_alert_and_its_restore_closes_it(
    store: EventStore, book: AlertBook
) -> None:
    store.store_batch(
        [
            received("tamper", t=0),
            received("tamper", t=500),  # again, long after: still the same open trouble
            received("tamper", zone="other", t=1),  # another zone: another trouble
            received("tamper", qualifier="R", t=600),
        ]
    )
    changes = book.follow()
    assert [c.action for c in changes] == ["opened", "joined", "opened", "restored"]
    closed = book.get(changes[0].alert_id)
    assert closed is not None
    assert (closed.state, closed.outcome, closed.closed_by, closed.events) == (
        CLOSED,
        RESTORED,
        "system",
        3,
    )
    assert book.get(changes[2].alert_id).state == NEW  # type: ignore[union-attr]
    # A restore with nothing open, and telemetry, open nothing.
    store.store_batch([received("tamper", qualifier="R", t=700), received("telemetry", t=701)])
    assert book.follow() == []


def test_acknowledge_then_close_with_an_outcome_each_audited(
    store: EventStore, book: AlertBook
) -> None:
    store.store_batch([received("panic")])
    [change] = book.follow()
    alert = book.acknowledge(change.alert_id, "officer-7")
    assert (alert.state, alert.ack_by) == (ACKNOWLEDGED, "officer-7")
    assert book.acknowledge(change.alert_id, "officer-9").ack_by == "officer-7"  # unchanged
    with pytest.raises(AlertError, match="outcome must be one of"):
        book.close(change.alert_id, "officer-7", "nothing")
    with pytest.raises(AlertError, match="longer than"):
        book.close(change.alert_id, "officer-7", "real", "x" * 10_000)
    closed = book.close(change.alert_id, "officer-7", "false_alarm", "a child pressed it")
    assert (closed.state, closed.outcome, closed.note) == (
        CLOSED,
        "false_alarm",
        "a child pressed it",
    )
    with pytest.raises(AlertError, match="already closed"):
        book.close(change.alert_id, "officer-7", "real")
    with pytest.raises(AlertError, match="is closed"):
        book.acknowledge(change.alert_id, "officer-7")
    with pytest.raises(AlertError, match="no alert"):
        book.acknowledge(10**30, "officer-7")
    actions = [(r.actor, r.action) for r in book.audit.for_alert(change.alert_id)]
    assert actions == [
        ("system", "opened"),
        ("officer-7", "acknowledged"),
        ("officer-7", "closed"),
    ]


def test_the_audit_trail_cannot_be_changed_or_deleted(
    store: EventStore, book: AlertBook, path: Path | str
) -> None:
    store.store_batch([received("panic")])
    book.follow()
    changes = ("UPDATE audit SET actor = 'nobody'", "DELETE FROM audit")
    if isinstance(path, str):  # PostgreSQL, through a connection of its own
        import psycopg

        with psycopg.connect(path, autocommit=True) as pg:
            for sql in (*changes, "TRUNCATE audit"):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    pg.execute(sql)
    else:
        raw = sqlite3.connect(path)
        for sql in changes:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(sql)
        raw.close()
    assert [r.actor for r in book.audit.recent()] == ["system"]


def test_the_queue_is_priority_then_unacknowledged_then_newest(
    store: EventStore, book: AlertBook
) -> None:
    store.store_batch(
        [
            received("person", hub="a", t=0),
            received("tamper", hub="b", t=1),
            received("panic", hub="c", t=2),
            received("fire", hub="d", t=3),
            received("low_battery", hub="e", t=4),
        ]
    )
    book.follow()
    by_hub = {a.hub: a.id for a in book.search()}
    book.acknowledge(by_hub["d"], "officer-7")
    assert [a.hub for a in book.open_alerts()] == ["c", "d", "e", "b", "a"]


def test_a_crash_between_storing_and_following_loses_nothing_and_doubles_nothing(
    store: EventStore, path: Path
) -> None:
    store.store_batch([received("panic", hub=f"h{n}", t=n) for n in range(5)])
    first = AlertBook(open_db(path))
    assert len(first.follow(batch=2)) == 5
    store.store_batch([received("fire", hub="late", t=10)])
    again = AlertBook(open_db(path))  # a new process on the same file
    assert [c.action for c in again.follow()] == ["opened"]
    assert again.follow() == [] and again.counts()[NEW] == 6


def test_history_search_by_each_filter(store: EventStore, book: AlertBook) -> None:
    store.store_batch(
        [
            received("panic", hub="a", t=0),
            received("fire", hub="b", zone="kitchen", t=3600),
            received("tamper", hub="a", t=7200),
        ]
    )
    book.follow()
    fire = next(a for a in book.search() if a.kind == "fire")
    book.close(fire.id, "officer-7", "test")
    assert {a.kind for a in book.search(hub="a")} == {"panic", "tamper"}
    assert [a.kind for a in book.search(zone="kitchen")] == ["fire"]
    assert [a.kind for a in book.search(outcome="test")] == ["fire"]
    assert [a.kind for a in book.search(since=at(1800), until=at(5400))] == ["fire"]
    assert [a.kind for a in book.search(kind="tamper", state=NEW)] == ["tamper"]
    assert len(book.search(limit=1, offset=1)) == 1


# -- supervision ---------------------------------------------------------------------------

CONFIG = SupervisionConfig(window_s=60, alarm_backlog_min=5, clock_unsynced_h=24)


def hub_row(path: Path | str, **changes: object) -> object:
    hubs = HubBook(open_db(path))
    hubs.set_expected([ExpectedHub("h1")])
    if "status" in changes:
        hubs.record_status("h1", str(changes["status"]), at(0))
    if "health" in changes:
        hubs.record_health("h1", changes["health"], changes.get("verified"), at(0))  # type: ignore[arg-type]
    return hubs.get("h1")


def test_supervision_says_offline_silent_never_heard_backlog_and_clock(path: Path | str) -> None:
    now = seconds(at(30))
    never = hub_row(path)
    assert assess(never, now, CONFIG, running_since=now - 30, signed=False) == {}  # type: ignore[arg-type]
    late = assess(never, now, CONFIG, running_since=now - 61, signed=False)  # type: ignore[arg-type]
    assert late[COMM_TROUBLE].reason == "expected, never heard from"

    offline = hub_row(path, status="offline")
    assert COMM_TROUBLE in assess(offline, now, CONFIG, running_since=0, signed=False)  # type: ignore[arg-type]

    healthy = {"outbox": {"undelivered_alarm": 2}, "clock_synced": False}
    fresh = hub_row(path, status="online", health=healthy, verified=None)
    assert assess(fresh, now, CONFIG, running_since=0, signed=False) == {}  # type: ignore[arg-type]
    later = seconds(at(400))
    troubles = assess(fresh, later, CONFIG, running_since=0, signed=False)  # type: ignore[arg-type]
    assert set(troubles) == {COMM_TROUBLE, ALARM_BACKLOG}
    day = seconds(at(25 * 3600))
    assert CLOCK_UNSYNCED in assess(fresh, day, CONFIG, running_since=0, signed=False)  # type: ignore[arg-type]


def test_with_signatures_on_an_unsigned_online_status_keeps_no_hub_alive(path: Path | str) -> None:
    now = seconds(at(30))
    row = hub_row(path, status="online")
    assert assess(row, now, CONFIG, running_since=0, signed=False) == {}  # type: ignore[arg-type]
    assert COMM_TROUBLE in assess(row, now, CONFIG, running_since=0, signed=True)  # type: ignore[arg-type]
    verified = hub_row(path, status="online", health={"outbox": {}}, verified=True)
    assert assess(verified, now, CONFIG, running_since=0, signed=True) == {}  # type: ignore[arg-type]


def test_health_with_no_backlog_clears_the_tracked_durations(path: Path | str) -> None:
    hubs = HubBook(open_db(path))
    hubs.record_health("h1", {"outbox": {"undelivered_alarm": 1}, "clock_synced": False}, None)
    hubs.record_health("h1", {"outbox": {"undelivered_alarm": 10**30}}, None)
    row = hubs.get("h1")
    assert row is not None and row.backlog_since is not None and row.unsynced_since is None
    hubs.record_health("h1", {"outbox": {}, "clock_synced": True}, None)
    row = hubs.get("h1")
    assert row is not None and row.backlog_since is None


def test_only_hubs_that_may_be_in_trouble_are_read_for_supervision(path: Path | str) -> None:
    """worth_a_look narrows the once-a-second look to hubs whose signs of life are old (as
    last_sign_of_life counts them), offline ones, those tracking a backlog or a clock, and the
    never heard; a hub alive on every count is not read."""
    hubs = HubBook(open_db(path))
    hubs.set_expected([ExpectedHub("never")])
    hubs.record_health("alive", {"outbox": {}, "clock_synced": True}, True, at(100))
    hubs.record_status("status-only", "online", at(100))
    hubs.record_status("gone", "offline", at(100))
    hubs.record_health("silent", {"outbox": {}, "clock_synced": True}, True, at(0))
    hubs.record_health("stuck", {"outbox": {"undelivered_alarm": 1}}, True, at(100))
    hubs.record_event("talks", "telemetry", at(100))
    unsigned = {h.hub for h in hubs.worth_a_look(at(50), signed=False)}
    assert unsigned == {"never", "gone", "silent", "stuck"}
    signed = {h.hub for h in hubs.worth_a_look(at(50), signed=True)}
    assert signed == unsigned | {"status-only"}  # an unsigned "online" keeps no hub alive
    assert all(h.health is None for h in hubs.worth_a_look(at(50), signed=True))
