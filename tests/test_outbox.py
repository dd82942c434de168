"""The outbox on real SQLite files: commit, drain order, states, eviction, restarts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from core.events import Event
from gateway.outbox import DELIVERED, PENDING, SENT, Outbox


def ev(kind: str, n: int = 0) -> Event:
    return Event(kind=kind, zone="z", source="test", data={"n": n})


def test_insert_assigns_seq_and_stores_the_contract_json(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "hub-1")
    [stored] = box.insert([ev("panic")])
    assert stored.seq == 1
    [(payload,)] = box.conn.execute("SELECT payload FROM outbox").fetchall()
    obj = json.loads(payload)
    assert obj["seq"] == 1 and obj["hub"] == "hub-1" and obj["cid"] == 120
    assert obj["id"] == stored.id and obj["priority"] == 0 and obj["qualifier"] == "E"


def test_seq_is_monotonic_across_restarts_even_when_rows_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "hub-1", delivered_retention_s=0)
    stored = box.insert([ev("telemetry", i) for i in range(5)])
    box.mark_delivered(seqs=[e.seq for e in stored])
    assert box.prune_delivered() == 5
    box.close()
    box = Outbox(path, "hub-1")
    assert box.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert box.insert([ev("panic")])[0].seq == 6


def test_a_committed_event_is_in_the_file_for_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "hub-1")
    [stored] = box.insert([ev("tamper")])
    # Another process reading the file sees it at once: the commit is done, not pending.
    other = sqlite3.connect(path)
    assert other.execute("SELECT id FROM outbox").fetchall() == [(stored.id,)]
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_drain_order_is_priority_then_age(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "hub-1")
    box.insert([ev("telemetry", 1), ev("tamper"), ev("telemetry", 2), ev("person")])
    box.insert([ev("panic"), ev("smoke")])
    alarms = box.pending_alarms(-1, 10)
    others = box.pending_after(-1, -1, 10)
    assert [r.kind for r in alarms] == ["panic", "smoke"]
    assert [r.kind for r in others] == ["tamper", "person", "telemetry", "telemetry"]
    # The cursor form continues after a given row.
    rest = box.pending_after(others[1].priority, others[1].seq, 10)
    assert [r.kind for r in rest] == ["telemetry", "telemetry"]


def test_states_pending_sent_delivered(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "hub-1")
    a, b = box.insert([ev("panic"), ev("tamper")])
    assert box.state_of(a.id) == PENDING
    assert box.mark_sent([a.seq, b.seq]) == 2
    assert box.state_of(a.id) == SENT
    assert box.mark_delivered(ids=[a.id, "not-an-id"]) == 1
    assert box.state_of(a.id) == DELIVERED
    # A late PUBACK never downgrades a delivered row; a second receipt changes nothing.
    assert box.mark_sent([a.seq]) == 0
    assert box.mark_delivered(ids=[a.id]) == 0
    assert box.undelivered == 1


def test_unconfirmed_rows_go_back_to_pending(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "hub-1")
    a, b = box.insert([ev("panic"), ev("telemetry")])
    box.mark_sent([a.seq, b.seq])
    assert box.requeue_unconfirmed(older_than_s=3600) == []
    assert sorted(box.requeue_unconfirmed(older_than_s=-1)) == [(0, a.seq), (3, b.seq)]
    assert box.state_of(a.id) == PENDING


def test_full_outbox_evicts_telemetry_then_detections_never_alarms(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "hub-1", max_events=100)
    box.insert([ev("telemetry", i) for i in range(60)])
    box.insert([ev("person", i) for i in range(30)])
    box.insert([ev("panic", i) for i in range(20)])
    counts = box.counts()
    assert counts["undelivered_alarm"] == 20
    assert counts["undelivered_detection"] == 30
    assert counts["undelivered_telemetry"] == 50  # the 10 oldest went
    kept = [
        json.loads(p)["data"]["n"]
        for (p,) in box.conn.execute(
            "SELECT payload FROM outbox WHERE kind='telemetry' ORDER BY seq"
        )
    ]
    assert kept == list(range(10, 60))
    # Alarms past the limit: everything else goes, the alarms all stay.
    box.insert([ev("fire", i) for i in range(150)])
    counts = box.counts()
    assert counts["undelivered_alarm"] == 170
    assert "undelivered_telemetry" not in counts and "undelivered_detection" not in counts
    assert box.stats.evicted == 10 + 50 + 30


def test_delivered_rows_are_pruned_after_retention(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "hub-1", delivered_retention_s=3600)
    a, b = box.insert([ev("panic"), ev("tamper")])
    box.mark_delivered(ids=[a.id])
    assert box.prune_delivered() == 0  # still within retention
    box.delivered_retention_s = 0
    assert box.prune_delivered() == 1
    assert box.state_of(a.id) is None and box.state_of(b.id) == PENDING


def test_resubmitting_an_event_keeps_one_row(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "hub-1")
    event = ev("panic")
    first = box.insert([event])[0]
    again = box.insert([event])[0]
    assert again.seq == first.seq
    assert box.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def test_pending_after_resumes_from_the_cursor_past_unmarked_rows(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "hub-1")
    kinds = ["telemetry", "panic", "person", "tamper", "telemetry", "door", "person", "test"]
    stored = box.insert([ev(k, i) for i, k in enumerate(kinds * 5)])
    box.mark_delivered(seqs=[e.seq for e in stored[::3]])
    pending = [e for i, e in enumerate(stored) if i % 3 and e.priority > 0]
    order = [e.seq for e in sorted(pending, key=lambda e: (e.priority, e.seq))]
    assert [r.seq for r in box.pending_after(-1, -1, 1000)] == order
    # Walked in small steps from the cursor, as the dispatcher does: the same rows, in order.
    walked: list[int] = []
    cursor = (-1, -1)
    while rows := box.pending_after(*cursor, 3):
        walked += [r.seq for r in rows]
        cursor = (rows[-1].priority, rows[-1].seq)
    assert walked == order
    assert all(r.priority > 0 for r in box.pending_after(0, -1, 1000))
