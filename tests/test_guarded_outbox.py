"""The guarded outbox on its own: real SQLite files, damaged, removed and refused under it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from core.events import Event
from gateway.guarded_outbox import MEMORY_LIMIT, GuardedOutbox
from gateway.outbox import SENT, Outbox
from gateway.outbox_files import SEQ_BLOCK, SeqRecord, salvage

HUB = "hub-1"


def event(kind: str = "telemetry", **data: object) -> Event:
    return Event(kind=kind, zone="z", source="s", data=dict(data))


def opened(path: Path, reports: list[Event] | None = None) -> GuardedOutbox:
    box = GuardedOutbox(path, HUB, report=reports.append if reports is not None else None)
    box.open()
    return box


def refuse_writes(box: GuardedOutbox) -> None:
    box.conn.execute("PRAGMA query_only=1")


def allow_writes(box: GuardedOutbox) -> None:
    box.conn.execute("PRAGMA query_only=0")


def test_numbering_resumes_after_the_reserved_block_when_the_file_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = opened(path)
    assert [e.seq for e in box.insert([event() for _ in range(5)])] == [1, 2, 3, 4, 5]
    reserved = box.seq_record.reserved
    box.db.close()  # no clean stop: the hub died with the file
    path.unlink()
    reports: list[Event] = []
    box = opened(path, reports)
    [e] = box.insert([event()])
    assert reserved >= 5 + SEQ_BLOCK // 2
    assert e.seq == reserved + 1  # every seq the old file may have published is skipped
    assert [(r.kind, r.data["fault"], r.data["resumed_at"]) for r in reports] == [
        ("storage_fault", "lost", e.seq)
    ]


def test_after_a_crash_numbering_resumes_after_the_reserved_block_and_health_says_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = opened(path)
    box.insert([event() for _ in range(3)])
    # An alarm numbered for its early publish, the hub killed before its commit: its seq was
    # reserved on disk first, so it can never be given to another event.
    [panic] = box.number([event("panic")])
    assert panic.seq == 4 and int(box.seq_record.path.read_text()) >= 4
    reserved = box.seq_record.reserved
    box.db.close()  # kill -9: no clean stop

    box = opened(path)
    [after] = box.insert([event("panic")])
    assert after.seq == reserved + 1
    assert box.health()["unused_seqs"] == [4, reserved]  # "reserved, never used"
    box.close()


def test_an_event_already_stored_or_already_numbered_is_not_numbered_again(
    tmp_path: Path,
) -> None:
    box = opened(tmp_path / "outbox.sqlite3")
    [stored] = box.insert([event("panic")])
    assert box.number([stored]) is None  # it has its seq
    assert box.number([replace(stored, seq=0)]) is None  # a retried submit: its row is there
    fresh = event("panic")
    [numbered] = box.number([fresh])
    assert box.insert([numbered])[0].seq == numbered.seq == stored.seq + 1
    box.close()


def test_a_normal_restart_continues_without_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = opened(path)
    box.insert([event() for _ in range(3)])
    box.close()
    reports: list[Event] = []
    box = opened(path, reports)
    assert box.insert([event()])[0].seq == 4 and reports == []


def test_a_disk_that_refuses_writes_holds_alarms_and_trouble_and_refuses_telemetry(
    tmp_path: Path,
) -> None:
    reports: list[Event] = []
    box = opened(tmp_path / "outbox.sqlite3", reports)
    box.insert([event()])
    refuse_writes(box)
    panic, tamper, reading = box.insert([event("panic"), event("tamper"), event("telemetry")])
    assert (panic.seq, tamper.seq, reading.seq) == (2, 3, 0)
    assert box.health()["state"] == "read-only" and box.health()["in_memory"] == 2
    assert [r.data["fault"] for r in reports] == ["read-only"]
    # Held rows are drained like stored ones: the alarm first, then by priority and seq.
    assert [r.seq for r in box.pending_alarms(-1, 10)] == [2]
    assert [r.seq for r in box.pending_after(0, -1, 10)] == [3, 1]
    box.mark_sent([2])
    box.mark_delivered(ids=[tamper.id])  # receipted while only in memory: nothing to write
    allow_writes(box)
    box._next_retry = 0.0  # the next turn's retry, now
    box.maintain()
    assert box.health() == {"state": "ok", "in_memory": 0, "refused": 1}
    assert box.state_of(panic.id) == SENT and box.state_of(tamper.id) is None
    assert [r.qualifier for r in reports] == ["E", "R"]
    box.close()
    again = Outbox(tmp_path / "outbox.sqlite3", HUB)
    assert again.last_seq == 3  # the seq given out in memory is used, for good


def test_trouble_held_in_memory_is_capped_and_alarms_never_are(tmp_path: Path) -> None:
    box = opened(tmp_path / "outbox.sqlite3")
    refuse_writes(box)
    box.insert([event("tamper") for _ in range(MEMORY_LIMIT)])
    assert box.insert([event("tamper")])[0].seq == 0
    assert box.insert([event("panic")])[0].seq > 0


def test_salvage_keeps_only_rows_whose_payload_is_the_event(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, HUB)
    stored = box.insert([event() for _ in range(4)])
    # One row's payload is damaged in place: it must not go out as an event.
    box.conn.execute("UPDATE outbox SET payload=? WHERE seq=2", (b'{"id": "x", "seq": 2}',))
    box.close()
    found = salvage(path, HUB)
    assert [r[0] for r in found.rows] == [1, 3, 4] and found.max_seq == 4
    assert [r[1] for r in found.rows] == [stored[0].id, stored[2].id, stored[3].id]


@pytest.mark.parametrize("content", [b"", b"banana", b"-3", b"9" * 40])
def test_a_damaged_seq_record_reads_as_nothing_reserved(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "outbox.sqlite3.seq"
    path.write_bytes(content)
    record = SeqRecord(path)
    assert record.load() == 0
    assert record.reserve_through(10) and int(path.read_text()) == 10 + SEQ_BLOCK


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"not a database, just bytes" * 100)
    reports: list[Event] = []
    box = opened(path, reports)
    assert box.insert([event("panic")])[0].seq == 1
    aside = list(tmp_path.glob("outbox.sqlite3.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"not a database")
    assert [r.qualifier for r in reports] == ["E", "R"]
    assert reports[0].data["quarantined"] == aside[0].name
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(aside[0]).execute("SELECT 1 FROM outbox")


def test_when_the_seq_record_cannot_be_written_nothing_is_numbered_ahead_of_its_commit(
    tmp_path: Path,
) -> None:
    box = opened(tmp_path / "outbox.sqlite3")
    box.insert([event() for _ in range(1000)])  # reserved through 2000 now
    record = box.seq_record.path
    record.unlink()
    record.mkdir()  # the record can no longer be replaced, as on a full or failing disk
    (record / "x").write_text("in the way")
    box.insert([event() for _ in range(600)])  # numbering goes on; the top-up fails
    assert box.last_seq == 1600 and box.seq_record.reserved == 2000
    # Past half the block with no new one on disk: an alarm is not published before its
    # commit, whose seq a crash could otherwise leave published and not reserved.
    assert box.number([event("panic")]) is None
    assert box.insert([event("panic")])[0].seq == 1601
    box.close()
