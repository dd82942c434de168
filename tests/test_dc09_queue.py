"""The DC-09 queue fed from a real receiver store: which events are queued, in which order, as
which Contact ID, with which zone numbers; the position kept with the queue."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from dc09_kit import HUBS, alarm_mix, dc09_config, forwarded, store

from commune.db import Db
from commune.dc09.contact_id import Unmappable, contact_id
from commune.dc09.queue import PENDING, Dc09Queue
from commune.store import EventStore
from core.events import NEW, RESTORE, Event

CONFIG = dc09_config(9000)


def queue_on(path: Path, **keys: object) -> Dc09Queue:
    EventStore(path).close()  # the receiver's table, as the forwarder makes sure of
    return Dc09Queue(Db(path), dc09_config(9000, **keys) if keys else CONFIG)


def test_qualifiers_and_codes_map_to_contact_id() -> None:
    assert contact_id(NEW, 120, 3).text() == "1120 01 003"
    assert contact_id(RESTORE, 137, 0).text() == "3137 01 000"
    for qualifier, cid in (("P", 120), (NEW, 1000), (NEW, -1), (NEW, "120"), (NEW, True)):
        with pytest.raises(Unmappable):
            contact_id(qualifier, cid, 1)


def test_the_first_follow_starts_after_the_history_already_stored(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    store(path, alarm_mix(5))
    queue = queue_on(path)
    assert queue.follow().queued == 0
    assert queue.position() == 5
    new = alarm_mix(8)
    store(path, new)
    done = queue.follow()
    assert done.queued == len(forwarded(new)) and done.passed == len(new) - done.queued
    assert queue.position() == 13


def test_alarms_troubles_and_restores_are_queued_in_store_order_detections_passed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "receiver.sqlite3"
    queue = queue_on(path)
    queue.follow()
    events = alarm_mix(40)
    store(path, events)
    queue.follow(batch=7)  # several transactions
    rows = queue.rows()
    expected = forwarded(events)
    assert [r.event_id for r in rows] == [e.id for _, e in expected]
    assert all(r.state == PENDING and r.attempts == 0 for r in rows)
    assert {r.kind for r in rows} == {
        "panic",
        "tamper",
        "fire",
        "low_battery",
        "comm_trouble",
    }
    assert {r.qualifier for r in rows if r.kind == "tamper"} == {NEW, RESTORE}
    assert [r.sequence for r in rows] == list(range(1, len(rows) + 1))
    assert queue.follow().queued == 0  # nothing twice


def test_detections_and_telemetry_go_when_configured(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    queue = queue_on(path, priorities=[0, 1, 2, 3])
    queue.follow()
    events = alarm_mix(16)
    store(path, events)
    assert queue.follow().queued == 16


def test_zone_numbers_are_stable_small_and_per_hub_and_the_config_wins(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    queue = queue_on(path, zones={"smoke-1": 1})
    queue.follow()
    hub = "cho-an-dong"
    store(
        path,
        [
            (hub, Event(kind="panic", zone="panic-1", source="t")),
            (hub, Event(kind="tamper", zone="tamper-1", source="t")),
            (hub, Event(kind="fire", zone="smoke-1", source="t")),
            (hub, Event(kind="comm_trouble", zone="link", source="receiver")),
            (hub, Event(kind="panic", zone="panic-1", source="t", qualifier=RESTORE)),
            ("chung-cu-b", Event(kind="tamper", zone="tamper-1", source="t")),
        ],
    )
    queue.follow()
    numbers = [(r.hub, r.zone, r.zone_number) for r in queue.rows()]
    assert numbers == [
        (hub, "panic-1", 2),  # 1 is the config's (smoke-1)
        (hub, "tamper-1", 3),
        (hub, "smoke-1", 1),
        (hub, "link", 0),  # the receiver's trouble about the premises itself
        (hub, "panic-1", 2),  # the same zone, the same number
        ("chung-cu-b", "tamper-1", 2),  # another hub numbers its own
    ]


def test_a_damaged_event_row_is_skipped_and_counted_not_queued(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    queue = queue_on(path)
    queue.follow()
    events = alarm_mix(3)
    store(path, events)
    with sqlite3.connect(path) as conn:  # damaged by hand
        conn.execute("UPDATE events SET cid = 12345 WHERE rowid = 1")
    done = queue.follow()
    assert done.skipped == 1 and done.queued == len(forwarded(events)) - 1


def test_the_position_and_the_queue_survive_a_new_queue_object_on_the_same_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "receiver.sqlite3"
    queue = queue_on(path)
    queue.follow()
    store(path, alarm_mix(8))
    queue.follow()
    before = queue.rows()
    queue.db.close()
    again = queue_on(path)
    assert again.rows() == before
    store(path, alarm_mix(8))
    assert again.follow().queued == len(forwarded(alarm_mix(8)))
    assert [r.sequence for r in again.rows()] == list(range(1, 2 * len(before) + 1))


def test_sequence_numbers_wrap_from_9999_to_0001(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    queue = queue_on(path)
    queue.follow()
    with queue.db.tx() as conn:  # as if 9,998 rows had been queued before
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('dc09_queue', 9997)")
    store(path, [(hub, Event(kind="panic", zone="panic-1", source="t")) for hub in [*HUBS, *HUBS]])
    queue.follow()
    assert [r.sequence for r in queue.rows()] == [9998, 9999, 1, 2]
