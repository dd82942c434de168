"""Events signed once by the outbox, on every path that makes a payload: committed, held in
memory while the disk refuses writes, and saved from a damaged file (real SQLite files)."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

from core.events import Event
from core.signing import SigningKey, verify
from gateway.guarded_outbox import GuardedOutbox
from gateway.outbox import Outbox
from gateway.signed_payloads import event_payload

HUB = "hub-1"
KEY = SigningKey.generate()


def event(kind: str = "panic", **data: object) -> Event:
    return Event(kind=kind, zone="z", source="s", data=dict(data))


def payloads(box: Outbox | GuardedOutbox) -> dict[int, bytes]:
    rows = box.pending_alarms(-1, 100) + box.pending_after(-1, -1, 100)
    return {r.seq: r.payload for r in rows}


def test_a_committed_event_is_signed_in_its_stored_bytes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", HUB, signer=KEY)
    [panic] = box.insert([event()])
    stored = payloads(box)[panic.seq]
    obj = json.loads(stored)
    assert verify("event", obj, KEY.public) and obj["seq"] == panic.seq and obj["hub"] == HUB
    box.close()
    again = Outbox(tmp_path / "o.sqlite3", HUB, signer=SigningKey.generate())
    assert payloads(again)[panic.seq] == stored  # never signed again, even by another key


def test_without_a_key_the_payload_is_the_events_json_as_before(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", HUB)
    [panic] = box.insert([event()])
    assert payloads(box)[panic.seq] == panic.to_json(HUB)


def test_an_event_held_in_memory_is_signed_and_written_as_published(tmp_path: Path) -> None:
    box = GuardedOutbox(tmp_path / "outbox.sqlite3", HUB, signer=KEY)
    box.open()
    box.conn.execute("PRAGMA query_only=1")  # the disk refuses writes
    [panic] = box.insert([event()])
    assert box.held(panic.seq)
    held = payloads(box)[panic.seq]
    assert verify("event", json.loads(held), KEY.public)
    box.conn.execute("PRAGMA query_only=0")
    box._next_retry = 0.0  # the next turn's retry, now
    box.maintain()
    assert not box.held(panic.seq) and payloads(box)[panic.seq] == held
    box.close()


def test_rows_saved_from_a_damaged_file_keep_their_signed_payload(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = GuardedOutbox(path, HUB, signer=KEY)
    box.open()
    stored = box.insert([event(), event("tamper")])
    before = payloads(box)
    # Found damaged while running (as a "malformed" error is): moved aside, what it yields
    # saved into a fresh file. The hub's key has changed meanwhile: saved rows keep theirs.
    box.signer = SigningKey.generate()
    box._recover(sqlite3.DatabaseError("database disk image is malformed"))
    assert list(tmp_path.glob("outbox.sqlite3.damaged-*"))
    after = payloads(box)
    assert {e.seq for e in stored} <= after.keys()
    assert all(after[e.seq] == before[e.seq] for e in stored)
    assert all(verify("event", json.loads(after[e.seq]), KEY.public) for e in stored)
    box.close()


def test_a_reading_that_is_not_a_number_goes_out_as_null_and_signed() -> None:
    obj = json.loads(event_payload(event("telemetry", t=math.nan, r=[1.5, math.inf]), HUB, KEY))
    assert obj["data"] == {"t": None, "r": [1.5, None]}
    assert verify("event", obj, KEY.public)
