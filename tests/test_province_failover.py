"""The record on a PostgreSQL primary with a synchronous streaming standby (Debian's server,
two clusters of the test's own): a receipt means the event is on both machines, so when the
primary dies mid-stream and the standby is promoted, the receiver finds the new primary through
its multi-host URL and every event it ever receipted is there; none is lost, none stored twice.

And the other side of "on two machines": with the standby away, commits wait, so no receipt
goes out; an administrator who cancels the wait gets a commit that PostgreSQL reports with a
warning, and still no receipt is sent on it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from commune.pg import Unreplicated
from commune.store import EventStore, ReceivedEvent
from core.events import Event, utc_now_iso
from core.topics import HubTopics
from testkit.broker import Broker
from testkit.hubs import COMMUNE, HUB, outbox_counts, sim_hub
from testkit.mqtt import Subscriber
from testkit.postgres import Postgres, missing_reason, streaming_standby
from testkit.receivers import receipt_ids, running_receiver
from testkit.waiting import wait_until

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))

TOPICS = HubTopics(COMMUNE, HUB)
DATABASE = "province"


@pytest.fixture
def pair() -> Iterator[tuple[Postgres, Postgres]]:
    """A primary with database ``province`` and its synchronous standby ``standby1``."""
    primary = Postgres()
    standby: Postgres | None = None
    try:
        primary.start()
        primary.create_database(DATABASE)
        standby = streaming_standby(primary, "standby1")
        standby.start()
        # Only now: the standby's copy of the configuration must not wait for itself once it
        # is promoted.
        primary.make_synchronous("standby1")
        wait_until(
            lambda: primary.sql("SELECT sync_state FROM pg_stat_replication") == [("sync",)],
            timeout=60,
            what="the standby streaming synchronously",
        )
        yield primary, standby
    finally:
        for server in (primary, standby):
            if server is not None:
                server.stop("immediate")
                server.remove()


def multi_host_url(*servers: Postgres) -> str:
    hosts = ",".join(f"{s.host}:{s.port}" for s in servers)
    return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"


def telemetry(n: int) -> Event:
    return Event(kind="telemetry", zone="z", source="test", data={"n": n})


def stored_ids(server: Postgres) -> list[str]:
    return [str(r[0]) for r in server.sql("SELECT id FROM events ORDER BY id", DATABASE)]


def test_primary_killed_mid_stream_standby_promoted_every_receipted_event_is_there(
    pair: tuple[Postgres, Postgres], mosquitto: Broker, tmp_path: Path
) -> None:
    primary, standby = pair
    url = multi_host_url(primary, standby)
    with (
        Subscriber(mosquitto, TOPICS.receipt) as receipts,
        running_receiver(mosquitto, COMMUNE, url, data_dir=tmp_path / "commune") as receiver,
        sim_hub(
            mosquitto,
            tmp_path / "hub",
            camera=False,
            sensor_bus=False,
            uplink={"receipt_timeout_s": 4},
        ) as hub,
    ):
        emitted: list[str] = []
        stop = threading.Event()

        def stream() -> None:
            n = 0
            while not stop.is_set() and n < 400:
                event = telemetry(n)
                hub.hub.emit(event).result(timeout=30)
                emitted.append(event.id)
                n += 1
                stop.wait(0.01)

        streamer = threading.Thread(target=stream)
        streamer.start()
        try:
            wait_until(lambda: len(receipt_ids(receipts.messages)) >= 60, timeout=60)
            receipted_before = set(receipt_ids(receipts.messages))
            primary.kill()  # mid-stream: commits in flight fail, nothing is receipted for them
            standby.promote()
        finally:
            streamer.join(120)
            stop.set()
        wait_until(
            lambda: outbox_counts(hub)["pending"] == 0 and outbox_counts(hub)["sent"] == 0,
            timeout=120,
            what="the hub's outbox drained into the new primary",
        )
        wait_until(lambda: set(emitted) <= set(receipt_ids(receipts.messages)), timeout=60)
        assert receiver.stats.stored >= len(emitted)
    on_new_primary = stored_ids(standby)
    receipted = set(receipt_ids(receipts.messages))
    # No receipt for an event the surviving machine lacks; nothing lost; nothing twice.
    assert receipted - set(on_new_primary) == set()
    assert receipted_before <= set(on_new_primary)
    assert set(emitted) <= set(on_new_primary)
    assert len(on_new_primary) == len(set(on_new_primary))
    assert standby.sql("SELECT pg_is_in_recovery()") == [(False,)]


def test_no_receipt_while_the_synchronous_standby_is_away_nor_for_a_cancelled_wait(
    pair: tuple[Postgres, Postgres], tmp_path: Path
) -> None:
    """The standby stopped: a commit waits (the receiver would hold the receipts). An
    administrator cancels the wait: PostgreSQL commits locally and says so in a WARNING; the
    store raises instead of reporting success, and once the standby is back the same batch
    (now all duplicates) commits through the standby before it counts as stored."""
    primary, standby = pair
    url = multi_host_url(primary)
    store = EventStore(url)
    try:
        standby.stop("fast")
        outcome: list[object] = []
        item = ReceivedEvent.from_event(
            telemetry(1), hub=HUB, commune=COMMUNE, payload="{}", received_at=utc_now_iso()
        )

        def write() -> None:
            try:
                outcome.append(store.store_batch([item]))
            except Exception as exc:
                outcome.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        wait_until(
            lambda: (
                primary.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
                == [(1,)]
            ),
            timeout=30,
            what="the commit waiting for the standby",
        )
        assert not outcome  # still waiting: nothing reported stored
        primary.sql(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
        )
        writer.join(30)
        [result] = outcome
        assert isinstance(result, Unreplicated), result
        assert isinstance(result, psycopg.OperationalError)  # transient: retried, unreceipted
        standby.start()
        wait_until(
            lambda: primary.sql("SELECT sync_state FROM pg_stat_replication") == [("sync",)],
            timeout=60,
        )
        assert store.store_batch([item]) == [False]  # a duplicate, its commit waited this time
        wait_until(lambda: stored_ids(standby) == [item.id], timeout=30, what="on the standby")
    finally:
        store.close()
