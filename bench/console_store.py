"""A receiver store the size of a province's year: N events from H hubs, with their alerts.

``build(path, events, hubs)`` writes the events with the receiver's own insert (commune.store)
in large transactions, a realistic mix — mostly telemetry, some troubles and their restores,
alarms, person detections — spread over a year, then lets the desk's AlertBook follow them all
(as a console starting on that store would), and closes most alerts as operators would. Used by
bench.console_pages; ``python -m bench.console_store PATH`` builds one to look at.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from pathlib import Path

from commune.alerts import AlertBook
from commune.db import Db
from commune.hubs import ExpectedHub, HubBook
from commune.store import INSERT_SQL, EventStore, ReceivedEvent, event_row
from core.events import KINDS, NEW, RESTORE, utc_iso
from core.ids import new_event_id

YEAR_S = 365 * 24 * 3600
START = 1767225600.0  # 2026-01-01T00:00:00Z
# (kind, share of events): one alarm in 200, one trouble in 30, one detection in 50.
MIX = (("telemetry", 0.9215), ("tamper", 0.03), ("panic", 0.005), ("person", 0.02),
       ("low_battery", 0.0035), ("fire", 0.0005), ("camera_offline", 0.019))  # fmt: skip


def hub_id(n: int) -> str:
    return f"to-{n:05d}"


def build(path: Path, events: int, hubs: int, *, seed: int = 7) -> dict[str, float]:
    """Write the store; returns how long each part took (s)."""
    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    EventStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # building the fixture, not measuring the receiver
    t0 = time.perf_counter()
    seqs = [0] * hubs
    step = YEAR_S / events
    batch: list[list[object]] = []
    for i in range(events):
        n = rng.randrange(hubs)
        seqs[n] += 1
        kind = rng.choices(kinds, weights)[0]
        qualifier = RESTORE if kind in ("tamper", "camera_offline") and rng.random() < 0.5 else NEW
        at = utc_iso(START + i * step)
        hub = hub_id(n)
        item = ReceivedEvent(
            id=new_event_id(),
            hub=hub,
            commune="province",
            seq=seqs[n],
            kind=kind,
            priority=int(KINDS[kind].priority),
            zone=f"zone-{rng.randrange(4)}",
            source="bench",
            ts=at,
            clock_synced=True,
            cid=KINDS[kind].cid,
            qualifier=qualifier,
            data={"n": i},
            received_at=at,
            payload=json.dumps({"kind": kind, "hub": hub, "seq": seqs[n]}),
        )
        batch.append(event_row(item))
        if len(batch) == 50_000:
            _insert(conn, batch)
    _insert(conn, batch)
    conn.close()
    t1 = time.perf_counter()
    db = Db(path)
    book = AlertBook(db)
    HubBook(db).set_expected(ExpectedHub(hub_id(n), name=f"Tổ {n}") for n in range(hubs))
    book.follow(batch=20_000)
    t2 = time.perf_counter()
    # Operators closed all but the last few hundred alerts.
    with db.tx() as c:
        c.execute(
            "UPDATE alerts SET state = 'closed', closed_by = 'officer', closed_at = opened_at, "
            "outcome = CASE id % 4 WHEN 0 THEN 'real' WHEN 1 THEN 'false_alarm' "
            "WHEN 2 THEN 'test' ELSE 'other' END "
            "WHERE state != 'closed' AND id < (SELECT max(id) - 300 FROM alerts)"
        )
    db.close()
    return {"insert_s": t1 - t0, "follow_s": t2 - t1}


def _insert(conn: sqlite3.Connection, batch: list[list[object]]) -> None:
    conn.execute("BEGIN")
    conn.executemany(INSERT_SQL, batch)
    conn.execute("COMMIT")
    batch.clear()


if __name__ == "__main__":
    target = Path(sys.argv[1])
    print(build(target, int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000, 4000))
