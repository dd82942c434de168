"""A receiver store the size of a province's year: N events from H hubs, with their alerts.

``build(path, events, hubs)`` writes the events with the receiver's own insert statement
(``commune.store.INSERT_SQL``, on the table ``EventStore`` makes) in large transactions: a
realistic mix (mostly telemetry, some troubles and their restores, alarms, person detections)
spread evenly over a year, each row as the receiver stores it (the contract JSON the hub
published as ``payload``, ids that are UUIDv7 of the event's time). Then the desk's
``AlertBook`` follows them all, as a console starting on that store would; operators have
acknowledged and closed all but the newest few hundred alerts; the hubs are the expected ones
of the config (name, place, coordinates, contact), nearly all online with a recent health.

Deterministic: the same arguments and seed give the same rows, ids included (the alerts'
audit records carry the build's own clock). The rows are built as plain lists in the column
order the store declares (checked), not through ``ReceivedEvent``, which is what made the
insert of 1,000,000 events take a minute. Used by bench.console_pages;
``python -m bench.console_store PATH [EVENTS]`` builds one to look at.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
import uuid
from pathlib import Path

from commune.alerts import AlertBook
from commune.db import Db
from commune.hubs import ExpectedHub, HubBook
from commune.store import COLUMNS, FEED_POSITION, INSERT_SQL, META, EventStore
from core.events import KINDS, NEW, RESTORE, utc_iso

YEAR_S = 365 * 24 * 3600
START = 1767225600.0  # 2026-01-01T00:00:00Z
COMMUNE = "province"
# (kind, share of events): one alarm in 200, one trouble in 30, one detection in 50.
MIX = (("telemetry", 0.9215), ("tamper", 0.03), ("panic", 0.005), ("person", 0.02),
       ("low_battery", 0.0035), ("fire", 0.0005), ("camera_offline", 0.019))  # fmt: skip
OPEN_ALERTS = 300  # left open: the queue a duty officer finds
OFFLINE_EVERY = 50  # one hub in 50 is offline
BATCH = 50_000
ROW_COLUMNS = ("id", "hub", "commune", "seq", "kind", "priority", "zone", "source", "ts",
               "clock_synced", "cid", "qualifier", "data", "received_at", "payload", "sig",
               "verified")  # fmt: skip


def hub_id(n: int) -> str:
    return f"to-{n:05d}"


def event_id(ms: int, counter: int, rng: random.Random) -> str:
    """A UUIDv7 (as ``core.ids`` lays it out) for the millisecond ``ms``, from ``rng``."""
    rand_b = rng.getrandbits(62)
    value = (ms << 80) | (0x7 << 76) | ((counter & 0xFFF) << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def _data(kind: str, rng: random.Random) -> str:
    """The event's ``data`` as the store keeps it (compact JSON, sorted keys)."""
    if kind == "telemetry":
        return f'{{"rssi":{-40 - rng.randrange(50)},"temp_c":{25 + rng.randrange(150) / 10}}}'
    if kind == "person":
        return f'{{"camera":"cam-1","score":{0.5 + rng.randrange(50) / 100}}}'
    if kind == "low_battery":
        return f'{{"battery_mv":{2400 + rng.randrange(200)},"node":"fob-1"}}'
    return "{}"


def build(path: Path, events: int, hubs: int, *, seed: int = 7) -> dict[str, float]:
    """Write the store; returns how long each part took (s)."""
    if tuple(COLUMNS) != ROW_COLUMNS:
        raise SystemExit(f"the store's columns changed: {COLUMNS}; update bench.console_store")
    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    EventStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # building the fixture, not measuring the receiver
    # Indexes other than the key are built once at the end (by ``EventStore`` itself, so they
    # are the store's own), not row by row.
    secondary = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
            "AND sql IS NOT NULL"
        )
    ]
    for name in secondary:
        conn.execute(f"DROP INDEX {name}")
    t0 = time.perf_counter()
    seqs = [0] * hubs
    step_ms = YEAR_S * 1000 / events
    names = [hub_id(n) for n in range(hubs)]
    meta = {k: (int(KINDS[k].priority), KINDS[k].cid) for k in kinds}
    batch: list[list[object]] = []
    last_ms, counter = -1, 0
    for i, (n, kind, zone_n, r) in enumerate(
        zip(
            rng.choices(range(hubs), k=events),
            rng.choices(kinds, weights, k=events),
            rng.choices(range(4), k=events),
            [rng.random() for _ in range(events)],
            strict=True,
        )
    ):
        seqs[n] += 1
        seq = seqs[n]
        hub = names[n]
        ms = int(START * 1000 + i * step_ms)
        counter = counter + 1 if ms == last_ms else 0
        last_ms = ms
        eid = event_id(ms, counter, rng)
        at = utc_iso(ms / 1000)
        qualifier = RESTORE if kind in ("tamper", "camera_offline") and r < 0.5 else NEW
        priority, cid = meta[kind]
        zone = f"zone-{zone_n}"
        data = _data(kind, rng)
        # The hub's own JSON (``Event.to_json``: compact, sorted keys).
        payload = (
            f'{{"cid":{cid},"clock_synced":true,"data":{data},"hub":"{hub}","id":"{eid}",'
            f'"kind":"{kind}","priority":{priority},"qualifier":"{qualifier}","seq":{seq},'
            f'"source":"{zone}","ts":"{at}","zone":"{zone}"}}'
        )
        batch.append(
            [
                eid,
                hub,
                COMMUNE,
                seq,
                kind,
                priority,
                zone,
                zone,
                at,
                1,
                cid,
                qualifier,
                data,
                at,
                payload,
                None,
                None,
            ]  # fmt: skip
        )
        if len(batch) == BATCH:
            _insert(conn, batch)
    _insert(conn, batch)
    # The receiver handed every one of them to its alert feed as it stored them.
    conn.execute(
        f"UPDATE {META} SET value = (SELECT max(rowid) FROM events) WHERE key = ?",
        (FEED_POSITION,),
    )
    conn.close()
    EventStore(path).close()
    t1 = time.perf_counter()
    db = Db(path)
    book = AlertBook(db)
    HubBook(db).set_expected(_expected(n, rng) for n in range(hubs))
    book.follow(batch=20_000)
    t2 = time.perf_counter()
    end = utc_iso(START + YEAR_S)
    with db.tx() as c:
        # Operators acknowledged and closed all but the newest few hundred alerts.
        c.execute(
            "UPDATE alerts SET state = 'closed', ack_by = coalesce(ack_by, 'officer'), "
            "ack_at = coalesce(ack_at, opened_at), closed_by = 'officer', closed_at = opened_at, "
            "outcome = CASE id % 4 WHEN 0 THEN 'real' WHEN 1 THEN 'false_alarm' "
            "WHEN 2 THEN 'test' ELSE 'other' END "
            "WHERE state != 'closed' AND id <= (SELECT max(id) FROM alerts) - ?",
            (OPEN_ALERTS,),
        )
        # What the desk records as events and healths come in (``sign_of_life``,
        # ``record_health``), in one statement rather than per event.
        c.execute(
            "UPDATE hubs SET first_seen_at = (SELECT min(received_at) FROM events e "
            "WHERE e.hub = hubs.hub), last_event_at = (SELECT max(received_at) FROM events e "
            "WHERE e.hub = hubs.hub), last_event_kind = (SELECT kind FROM events e "
            "WHERE e.hub = hubs.hub ORDER BY received_at DESC LIMIT 1)"
        )
        c.executemany(
            "UPDATE hubs SET status = ?, status_at = ?, health = ?, health_at = ?, "
            "health_verified = 1 WHERE hub = ?",
            [
                (
                    "offline" if n % OFFLINE_EVERY == 0 else "online",
                    end,
                    _health(rng),
                    end,
                    hub_id(n),
                )
                for n in range(hubs)
            ],  # fmt: skip
        )
    db.close()
    return {"insert_s": t1 - t0, "follow_s": t2 - t1, "total_s": time.perf_counter() - t0}


def _expected(n: int, rng: random.Random) -> ExpectedHub:
    """A hub of the config: spread over a province-sized box around Ho Chi Minh City."""
    return ExpectedHub(
        hub_id(n),
        name=f"Tổ {n}",
        place=f"{1 + n % 300} đường số {n % 40}",
        latitude=round(10.65 + rng.random() * 0.25, 5),
        longitude=round(106.55 + rng.random() * 0.30, 5),
        contact=f"Tổ trưởng {n}",
    )


def _health(rng: random.Random) -> str:
    """A hub's last health, as it publishes it (the parts the board reads, and the rest)."""
    health = {
        "outbox": {"pending": rng.randrange(3), "undelivered_alarm": 0},
        "clock_synced": True,
        "inputs": {"panic-1": False, "tamper-1": False},
        "sounding": [],
        "buses": {
            "bus0": {
                "nodes": {
                    "smoke-1": {"battery_mv": 2700 + rng.randrange(400), "rssi": -60},
                    "fob-1": {"battery_mv": 2500 + rng.randrange(600), "rssi": -70},
                }
            }
        },
        "cameras": {"cam-1": {"state": "ok", "fps": 5.0}},
        "uplink": {"state": "connected", "rtt_ms": 20 + rng.randrange(80), "outages": 0},
    }
    return json.dumps(health, separators=(",", ":"), sort_keys=True)


def _insert(conn: sqlite3.Connection, batch: list[list[object]]) -> None:
    conn.execute("BEGIN")
    conn.executemany(INSERT_SQL, batch)
    conn.execute("COMMIT")
    batch.clear()


if __name__ == "__main__":
    target = Path(sys.argv[1])
    print(build(target, int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000, 4000))
