"""The durable notification queue on a real SQLite file: once per (alert, step, target), kept
across a restart, never jammed by a damaged row, a forgotten target or a full disk."""

from __future__ import annotations

import logging
import math
import random
import sqlite3
from pathlib import Path

import pytest
from notify_kit import Endpoint, Store, fill, receiver_config, small_disk, webhook

from commune.notify.queue import backoff
from commune.notify.sender import NotificationSender
from testkit.broker import free_port
from testkit.waiting import wait_until

STEPS = [{"name": "to-truong", "after_s": 60, "notify": ["hook"]}]


def payload(text: str = "Báo động PANIC") -> dict[str, object]:
    return {"type": "alert.escalated", "text": text}


def test_a_notification_is_queued_once_and_with_its_cause(tmp_path: Path) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    first = store.queue.enqueue(7, "to-truong", "hook", payload())
    assert first is not None
    assert store.queue.enqueue(7, "to-truong", "hook", payload("again")) is None
    assert store.queue.enqueue(7, "truc-ban", "hook", payload()) is not None
    assert store.queue.enqueue(7, "to-truong", "duty", payload()) is not None
    # Inside the caller's transaction: rolled back with it, nothing is queued.
    with pytest.raises(RuntimeError), store.db.tx() as conn:
        assert store.queue.enqueue(8, "to-truong", "hook", payload(), conn=conn) is not None
        raise RuntimeError("the escalation step failed")
    assert store.queue.for_alert(8) == []
    assert [n.state for n in store.queue.pending()] == ["pending"] * 3
    # What could never be sent is refused at the door.
    with pytest.raises(ValueError):
        store.queue.enqueue(9, "s", "hook", {"type": "alert.escalated", "text": math.nan})
    with pytest.raises(ValueError):
        store.queue.enqueue(9, "s", "hook", {"type": "alert.escalated", "x": math.nan})
    assert store.queue.for_alert(9) == []


def test_pending_notifications_survive_a_restart_and_carry_on(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    port = free_port()  # down
    config = receiver_config({"hook": webhook(f"http://127.0.0.1:{port}/")}, STEPS)
    store = Store(path)
    ids = [store.queue.enqueue(n, "to-truong", "hook", payload(f"#{n}")) for n in (1, 2)]
    sender = NotificationSender(store.db, store.audit, config.notify)
    sender.start()
    try:
        wait_until(lambda: (store.queue.get(ids[0]) or ids).attempts >= 2, timeout=30)
    finally:
        sender.stop()
    tried = store.queue.get(ids[0])
    assert tried is not None and tried.state == "pending"
    store.close()

    with Endpoint(port=port) as server:
        again = Store(path)
        sender = NotificationSender(again.db, again.audit, config.notify)
        sender.start()
        try:
            wait_until(lambda: again.queue.counts()["sent"] == 2, timeout=30, what="delivered")
        finally:
            sender.stop()
    assert [r.delivery for r in server.requests.items()] == ids
    numbers = [r.detail["attempt"] for r in again.notify_records(ids[0])]
    last = again.queue.get(ids[0])
    assert last is not None and last.attempts > tried.attempts  # the count carried on
    assert numbers[-2:] == [last.attempts, last.attempts]  # attempt, then sent


def test_damaged_rows_are_set_aside_without_jamming_their_target(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    ids = [store.queue.enqueue(n, "to-truong", "hook", payload(f"#{n}")) for n in range(1, 7)]
    damage = {
        ids[0]: '{"type": "alert.escalated", "text": ',  # cut short
        ids[1]: "[" * 100_000 + "]" * 100_000,  # nested too deep to parse
        ids[2]: '{"type": "alert.escalated", "text": "x", "n": NaN}',
        ids[3]: '{"type": "alert.escalated"}',  # no text to send
    }
    # Absurd bookkeeping columns, as a hand edit might leave them: still delivered.
    with store.db.tx() as conn:
        for notification_id, text in damage.items():
            conn.execute(
                "UPDATE notifications SET payload = ? WHERE id = ?", (text, notification_id)
            )
        conn.execute(
            "UPDATE notifications SET attempts = 'x', next_attempt_at = 'tomorrow', "
            "done = '{{{' WHERE id = ?",
            (ids[4],),
        )
    with Endpoint() as server, caplog.at_level(logging.WARNING, "commune.notify"):
        config = receiver_config({"hook": webhook(server.url)}, STEPS)
        sender = NotificationSender(store.db, store.audit, config.notify)
        for _ in range(6):  # one row per target and turn
            sender.run_once()
        sender.stop()
    assert [r.delivery for r in server.requests.items()] == ids[4:]
    assert [store.queue.get(i).state for i in ids] == ["damaged"] * 4 + ["sent"] * 2
    assert store.queue.counts() == {"pending": 0, "sent": 2, "damaged": 4}
    set_aside = [r for r in caplog.records if "set aside" in r.getMessage()]
    assert len(set_aside) == 4  # once each
    for notification_id in ids[:4]:
        [record] = store.notify_records(notification_id)
        assert record.action == "notify_failed" and record.detail["error"].startswith("damaged")


def test_a_target_the_config_no_longer_has_waits_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    gone = store.queue.enqueue(1, "to-truong", "old-hook", payload())
    kept = store.queue.enqueue(1, "to-truong", "hook", payload())
    with Endpoint() as server, caplog.at_level(logging.WARNING, "commune.notify"):
        config = receiver_config({"hook": webhook(server.url)}, STEPS)
        sender = NotificationSender(store.db, store.audit, config.notify)
        for _ in range(3):
            sender.run_once()
        sender.stop()
    assert [r.delivery for r in server.requests.items()] == [kept]
    assert store.queue.get(gone).state == "pending"
    assert len([r for r in caplog.records if "old-hook" in r.getMessage()]) == 1


def test_a_delivery_the_full_disk_cannot_record_is_not_sent_again(tmp_path: Path) -> None:
    with small_disk(tmp_path) as disk, Endpoint() as server:
        store = Store(disk / "receiver.sqlite3")
        notification = store.queue.enqueue(1, "to-truong", "hook", payload())
        config = receiver_config({"hook": webhook(server.url)}, STEPS)
        sender = NotificationSender(store.db, store.audit, config.notify)
        filler = fill(disk)
        for _ in range(3):
            sender.run_once()
        assert len(server.requests) == 1  # delivered once, and only remembered in memory
        assert store.queue.get(notification).state == "pending"
        with pytest.raises(sqlite3.OperationalError):  # the disk really is full
            store.queue.enqueue(2, "to-truong", "hook", payload())
        filler.unlink()
        sender.run_once()
        sender.stop()
        assert len(server.requests) == 1
        assert store.queue.get(notification).state == "sent"
        assert [r.action for r in store.notify_records(notification)] == ["notify_sent"]
        store.close()


def test_the_backoff_doubles_from_a_second_up_to_its_cap_with_a_little_jitter() -> None:
    rng = random.Random(4)
    waits = [backoff(attempt, 300, rng) for attempt in range(1, 12)]
    for attempt, wait in enumerate(waits, 1):
        base = min(2.0 ** (attempt - 1), 300)
        assert 0.9 * base <= wait <= base
    assert waits[-1] > 250
    assert backoff(10**9, 5, rng) <= 5  # no overflow after a very long outage
    assert 0.18 <= backoff(1, 0.2, rng) <= 0.2
