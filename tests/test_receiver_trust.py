"""The receiver's side of trust, against a real Mosquitto and real SQLite files: events verified
against the enrolled hub keys, what does not verify quarantined (never receipted, shown as
unverified), receipts signed by the commune, key rotation and revocation."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commune.locations import DB_FILENAME
from commune.receiver import Receiver
from commune.store import EventStore
from commune.trust import COMMUNE_KEY_FILE
from core.events import Event, utc_now_iso
from core.signing import PublicKey, SigningKey, verify
from core.topics import HubTopics
from testkit.broker import Broker
from testkit.mqtt import Message, Subscriber
from testkit.receivers import Receivers, wait_stats
from tuquan.cli import main as tuquan

COMMUNE = "phuong-9"
HUB = "hub-1"
TOPICS = HubTopics(COMMUNE, HUB)
OTHER = HubTopics(COMMUNE, "hub-2")
HUB_KEY = SigningKey.generate()
FORGER_KEY = SigningKey.generate()


def make_event(seq: int, kind: str = "panic", **fields: Any) -> Event:
    return dataclasses.replace(Event(kind=kind, zone="gate", source="panic-1", **fields), seq=seq)


def signed(event: Event, key: SigningKey, hub: str = HUB) -> dict[str, Any]:
    return key.sign("event", event.to_dict(hub))


def wire(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def enrol(db_path: Path, key: PublicKey, hub: str = HUB) -> None:
    with EventStore(db_path) as store:
        store.enrol_hub_key(hub, key.text, key.fingerprint, utc_now_iso())


def assert_genuine_receipt(
    msg: Message, receiver: Receiver, ids: list[str], hub: str = HUB
) -> None:
    body = msg.json()
    assert receiver.commune_key is not None
    assert verify("receipt", body, receiver.commune_key.public)
    assert set(body) == {"hub", "ids", "ts", "kid", "sig"}
    assert body["hub"] == hub and body["ids"] == ids and isinstance(body["ts"], float)


@pytest.fixture
def receipts(mosquitto: Broker) -> Iterator[Subscriber]:
    """Every hub's receipt topic of the commune: the publisher of genuine and forged events."""
    with Subscriber(mosquitto, f"tuquan/v1/{COMMUNE}/+/receipt") as sub:
        yield sub


@pytest.fixture
def receivers(mosquitto: Broker, tmp_path: Path) -> Iterator[Receivers]:
    (tmp_path / "rx").mkdir()
    with Receivers(mosquitto, COMMUNE, tmp_path / "rx" / DB_FILENAME) as started:
        yield started


def test_forged_flipped_unsigned_and_unenrolled_events_are_quarantined_not_receipted(
    receivers: Receivers, receipts: Subscriber
) -> None:
    enrol(receivers.db_path, HUB_KEY.public)
    seen: list[dict[str, Any]] = []
    receiver = receivers.start(on_new_event=seen.append)
    genuine = make_event(seq=1)
    flipped = wire(signed(make_event(seq=2), HUB_KEY)).replace(b'"gate"', b'"gatf"')
    bad = [
        # In the hub's name with another key, and the genuine event's id: it must not block it.
        (TOPICS.event("panic"), wire(signed(genuine, FORGER_KEY))),
        (TOPICS.event("panic"), flipped),
        (TOPICS.event("panic"), genuine.to_json(HUB)),
        (OTHER.event("panic"), wire(signed(make_event(seq=1), FORGER_KEY, "hub-2"))),
    ]
    for topic, payload in bad:
        receipts.publish(topic, payload)
    receipts.publish(TOPICS.event("panic"), wire(signed(genuine, HUB_KEY)))

    [receipt] = receipts.wait_for(1)
    assert receipt.topic == TOPICS.receipt
    assert_genuine_receipt(receipt, receiver, [genuine.id])
    stats = wait_stats(receiver, lambda s: s.unverified == len(bad) and s.stored == 1)
    assert (stats.receipts_sent, stats.quarantined, stats.malformed) == (1, 0, 0)
    assert receipts.messages == [receipt]  # published after the others: none of theirs came

    unverified = [e for e in seen if e["verified"] is False]
    assert [e["reason"] for e in unverified] == [
        f"unverified: signed with key {FORGER_KEY.public.fingerprint}, not enrolled for hub {HUB}",
        f"unverified: bad signature by key {HUB_KEY.public.fingerprint} of hub {HUB}",
        "unverified: unsigned",
        "unverified: hub hub-2 is not enrolled",
    ]
    [shown] = [e for e in seen if e["verified"] is True]
    assert shown["id"] == genuine.id and shown["kind"] == "panic" and shown["priority"] == 0
    with EventStore(receivers.db_path) as store:
        assert store.ids() == [genuine.id]
        row = store.get(genuine.id)
        assert row is not None and row["verified"] is True
        assert row["sig"] == signed(genuine, HUB_KEY)["sig"]
        quarantined = store.quarantined()
    assert [q["reason"] for q in quarantined] == [e["reason"] for e in unverified]
    assert [q["payload"] for q in quarantined] == [p for _, p in bad]


def test_a_revoked_hub_is_quarantined(
    receivers: Receivers, receipts: Subscriber, tmp_path: Path
) -> None:
    enrol(receivers.db_path, HUB_KEY.public)
    enrol(receivers.db_path, SigningKey.generate().public, "hub-2")  # enrolment stays on
    rx_dir = str(receivers.db_path.parent)
    assert tuquan(["keys", "revoke", HUB, "--data-dir", rx_dir]) == 0
    seen: list[dict[str, Any]] = []
    receiver = receivers.start(on_new_event=seen.append)

    event = make_event(seq=1)
    receipts.publish(TOPICS.event("panic"), wire(signed(event, HUB_KEY)))

    wait_stats(receiver, lambda s: s.unverified == 1)
    assert [(e["id"], e["verified"], e["reason"]) for e in seen] == [
        (event.id, False, f"unverified: hub {HUB} is revoked")
    ]
    with EventStore(receivers.db_path) as store:
        assert store.count() == 0
    assert receipts.messages == []
    # Re-enrolled (a new key, say), the hub is heard again.
    new_key = SigningKey.generate()
    assert tuquan(["keys", "trust", HUB, new_key.public.text, "--data-dir", rx_dir]) == 0
    receipts.publish(TOPICS.event("panic"), wire(signed(make_event(seq=2), new_key)))
    assert receipts.wait_for(1)[0].json()["hub"] == HUB


def test_rotated_key_old_outbox_events_still_verify_until_the_old_key_is_revoked(
    receivers: Receivers, receipts: Subscriber
) -> None:
    rx_dir = str(receivers.db_path.parent)
    assert tuquan(["keys", "trust", HUB, HUB_KEY.public.text, "--data-dir", rx_dir]) == 0
    receiver = receivers.start()
    old = [make_event(seq=n) for n in (1, 2, 3)]
    outbox = [wire(signed(e, HUB_KEY)) for e in old]  # signed once, when committed
    receipts.publish(TOPICS.event("panic"), outbox[0])
    receipts.wait_for(1)

    # The installer replaces the hub's key and enrols the new one while the receiver runs.
    new_key = SigningKey.generate()
    assert tuquan(["keys", "trust", HUB, new_key.public.text, "--data-dir", rx_dir]) == 0
    fresh = make_event(seq=4)
    receipts.publish(TOPICS.event("panic"), outbox[1])  # still in the outbox, old key
    receipts.publish(TOPICS.event("panic"), wire(signed(fresh, new_key)))
    got = receipts.wait_for(3)
    assert [m.json()["ids"] for m in got[1:]] in (
        [[old[1].id], [fresh.id]],
        [[old[1].id, fresh.id]],
    )
    with EventStore(receivers.db_path) as store:
        keys = store.hub_keys()
    assert [(k.fingerprint, k.revoked_at) for k in keys] == [
        (HUB_KEY.public.fingerprint, None),
        (new_key.public.fingerprint, None),
    ]

    # Once the outbox has drained (or if the old key was stolen), the old key is revoked.
    revoke = ["keys", "revoke", HUB, "--key", HUB_KEY.public.fingerprint, "--data-dir", rx_dir]
    assert tuquan(revoke) == 0
    receipts.clear()
    receipts.publish(TOPICS.event("panic"), outbox[2])
    later = make_event(seq=5)
    receipts.publish(TOPICS.event("panic"), wire(signed(later, new_key)))
    [receipt] = receipts.wait_for(1)
    assert_genuine_receipt(receipt, receiver, [later.id])
    stats = wait_stats(receiver, lambda s: s.unverified == 1)
    assert stats.stored == 4
    with EventStore(receivers.db_path) as store:
        [quarantined] = store.quarantined()
    assert quarantined["reason"] == (
        f"unverified: key {HUB_KEY.public.fingerprint} of hub {HUB} is revoked"
    )


def test_with_no_hub_enrolled_events_are_stored_unverified_and_receipts_signed(
    receivers: Receivers, receipts: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="commune.trust")
    seen: list[dict[str, Any]] = []
    receiver = receivers.start(on_new_event=seen.append)
    event = make_event(seq=1)
    receipts.publish(TOPICS.event("panic"), event.to_json(HUB))  # unsigned, as before

    [receipt] = receipts.wait_for(1)
    assert_genuine_receipt(receipt, receiver, [event.id])
    assert seen == [event.to_dict(HUB)]  # no "verified": nothing was checked
    with EventStore(receivers.db_path) as store:
        row = store.get(event.id)
    assert row is not None and row["verified"] is None and row["sig"] is None
    said = [r.getMessage() for r in caplog.records if "no hub is enrolled" in r.getMessage()]
    assert len(said) == 1
    key_file = receivers.db_path.parent / COMMUNE_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(key_file).public == receiver.commune_key.public  # type: ignore[union-attr]


def test_a_store_from_before_signatures_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    event = make_event(seq=1)
    with EventStore(path) as store:
        from commune.store import ReceivedEvent
        from commune.validate import parse_event_message

        item = parse_event_message(
            TOPICS.event("panic"), event.to_json(HUB), commune=COMMUNE, received_at=utc_now_iso()
        )
        assert isinstance(item, ReceivedEvent)
        store.store_batch([item])
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE events DROP COLUMN sig")
    conn.execute("ALTER TABLE events DROP COLUMN verified")
    conn.execute("DROP TABLE hub_keys")
    conn.commit()
    conn.close()

    with EventStore(path) as store:
        row = store.get(event.id)
        assert row is not None and row["verified"] is None and row["sig"] is None
        assert store.hub_keys() == []
        assert store.enrol_hub_key(HUB, HUB_KEY.public.text, HUB_KEY.public.fingerprint, "t")
