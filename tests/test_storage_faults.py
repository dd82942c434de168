"""The outbox's disk fails: damaged files, a full disk, a start on a full disk. Each with the
real simulated hub, a real Mosquitto and the real commune receiver.

The full-disk tests mount a small tmpfs (they need root, as in CI) and fill it; they are
skipped with the reason where the machine refuses the mount.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from commune.receiver import Receiver
from commune.store import EventStore
from gateway.service import OUTBOX_FILE
from hw_sim.simulator import SimulatedHub
from testkit.disks import fill
from testkit.disks import small_disk as mounted_small_disk
from testkit.hubs import COMMUNE, EVENTS, outbox_counts, press_and_release, sim_hub
from testkit.mqtt import Subscriber
from testkit.receivers import running_receiver
from testkit.waiting import wait_until

BACKLOG = 300  # events left undelivered in the outbox before it is damaged


def running_hub(broker: Any, data_dir: Path) -> AbstractContextManager[SimulatedHub]:
    """The default simulated hub without its camera and sensor bus (these tests are about the
    outbox), receipts on: an event leaves the outbox only on the receiver's receipt."""
    return sim_hub(broker, data_dir, camera=False, sensor_bus=False, uplink={"receipts": True})


def receiver(broker: Any, data_dir: Path) -> AbstractContextManager[Receiver]:
    return running_receiver(broker, COMMUNE, data_dir / "receiver.sqlite3")


def stored_ids(data_dir: Path) -> set[str]:
    with EventStore(data_dir / "receiver.sqlite3") as store:
        return set(store.ids())


def fill_backlog(broker: Any, data_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """Run a hub with no receiver so ``BACKLOG`` events stay in its outbox, unreceipted."""
    with running_hub(broker, data_dir) as hub:
        answer = hub.handle({"cmd": "emit", "kind": "telemetry", "count": BACKLOG - 1})
        press_and_release(hub)
        wait_until(lambda: outbox_counts(hub)["sent"] >= BACKLOG, 20, "the backlog sent")
        last_seq = hub.hub.outbox.last_seq
        old_panic = hub.hub.dispatcher.call(
            lambda o: o.conn.execute("SELECT id FROM outbox WHERE kind='panic'").fetchone()[0]
        ).result(5)
    return [*answer["events"], {"id": old_panic}], last_seq


def faults(sub: Subscriber) -> list[dict[str, Any]]:
    return [m.json() for m in sub.messages if m.json()["kind"] == "storage_fault"]


# -- damaged outbox files ---------------------------------------------------------------


def _truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(path.stat().st_size))


def _zero_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(bytes(100))


def _overwrite_middle(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(random.Random(3).randbytes(8192))


def _empty(path: Path) -> None:
    os.truncate(path, 0)


DAMAGE = {
    "truncated": _truncate_half,
    "garbage": _garbage,
    "zeroed-header": _zero_header,
    "overwritten-mid-file": _overwrite_middle,
    "zero-length": _empty,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_outbox_is_moved_aside_and_the_hub_runs_on(
    mosquitto, tmp_path: Path, damage: str
) -> None:
    hub_dir = tmp_path / "hub"
    backlog, last_seq = fill_backlog(mosquitto, hub_dir)
    DAMAGE[damage](hub_dir / OUTBOX_FILE)
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        receiver(mosquitto, tmp_path) as rec,
        running_hub(mosquitto, hub_dir) as hub,
    ):
        # It started: the siren sounds, the panic reaches the receiver and is receipted.
        press_and_release(hub)
        assert hub.board.outputs()["siren"] is True
        old = {e["id"] for e in backlog}

        def new_panics(ms: list[Any]) -> list[dict[str, Any]]:
            """Panics not in the old outbox, each once (a re-send has the same id)."""
            found = {m.json()["id"]: m.json() for m in ms if m.json()["kind"] == "panic"}
            return [e for i, e in found.items() if i not in old]

        [new_panic] = new_panics(sub.wait_until(lambda ms: bool(new_panics(ms))))
        wait_until(lambda: new_panic["id"] in stored_ids(tmp_path), 15, "the panic stored")
        # No seq that may have been published is used again.
        assert new_panic["seq"] > last_seq
        # The police are told, with the name of the file kept aside.
        sub.wait_until(lambda ms: {f["qualifier"] for f in faults(sub)} >= {"E", "R"})
        new = next(f for f in faults(sub) if f["qualifier"] == "E")
        assert new["cid"] == 300 and new["data"]["fault"] == "damaged"
        aside = sorted(hub_dir.glob(f"{OUTBOX_FILE}.damaged-*"))
        assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))] == [
            new["data"]["quarantined"]
        ]
        assert "quarantined" in hub.hub.outbox.health()
        # What the damaged file still held is sent; for some damage that is all of it.
        saved = new["data"]["saved"]
        if damage in ("garbage", "zeroed-header", "zero-length"):
            assert saved == 0
        else:
            assert 0 <= saved <= BACKLOG
        wanted = {e["id"] for e in backlog}
        wait_until(
            lambda: len(wanted & stored_ids(tmp_path)) >= saved,
            20,
            "the saved backlog stored",
        )
        assert rec.stats.malformed == 0
    # And the next start is a normal one: no new fault, numbering goes on.
    with Subscriber(mosquitto, EVENTS) as sub, running_hub(mosquitto, hub_dir) as hub:
        press_and_release(hub)
        [msg] = sub.wait_until(lambda ms: any(m.json()["kind"] == "panic" for m in ms))[:1]
        assert not faults(sub)
        assert msg.json()["seq"] > new_panic["seq"]


def test_an_outbox_damaged_while_running_is_replaced_and_the_alarm_goes_out(
    mosquitto, tmp_path: Path
) -> None:
    hub_dir = tmp_path / "hub"
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        running_hub(mosquitto, hub_dir) as hub,
    ):
        hub.handle({"cmd": "emit", "kind": "telemetry", "count": BACKLOG})
        # Everything into the main file, and a page cache so small that SQLite reads pages
        # from the disk again: the damage below is seen as a failing card's would be.
        # (fetchall: a cursor left unread keeps its statement open, and the hub's next commit
        # would fail with "SQL statements in progress", seen as a disk fault, not damage.)
        for sql in ("PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA cache_size=1"):
            hub.hub.dispatcher.call(lambda o, sql=sql: o.conn.execute(sql).fetchall()).result(5)
        path = hub_dir / OUTBOX_FILE
        size = path.stat().st_size
        with path.open("r+b") as f:  # every page but the first two (header, schema)
            f.seek(8192)
            f.write(random.Random(5).randbytes(size - 8192))
        press_and_release(hub)
        hub.handle({"cmd": "emit", "kind": "telemetry", "count": 5})
        sub.wait_until(lambda ms: any(f["qualifier"] == "E" for f in faults(sub)), timeout=15)
        fault = next(f for f in faults(sub) if f["qualifier"] == "E")
        assert fault["data"]["fault"] == "damaged"
        assert (hub_dir / fault["data"]["quarantined"]).exists()
        # The alarm pressed onto the damaged file went out, from the fresh one.
        sub.wait_until(lambda ms: any(m.json()["kind"] == "panic" for m in ms), timeout=15)
        before = hub.hub.outbox.last_seq
        answer = hub.handle({"cmd": "emit", "kind": "telemetry", "count": 5})
        assert answer["ok"] and hub.hub.outbox.last_seq == before + 5  # on the fresh file


def test_a_damaged_seq_record_is_reported_and_rewritten(mosquitto, tmp_path: Path) -> None:
    hub_dir = tmp_path / "hub"
    _, last_seq = fill_backlog(mosquitto, hub_dir)
    (hub_dir / f"{OUTBOX_FILE}.seq").write_bytes(b"\x00garbage")
    with running_hub(mosquitto, hub_dir) as hub:
        answer = hub.handle({"cmd": "emit", "kind": "telemetry", "count": 1})
        assert answer["events"][0]["seq"] == last_seq + 1  # the file itself was sound
    assert int((hub_dir / f"{OUTBOX_FILE}.seq").read_text()) > last_seq


# -- a full disk ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for the test."""
    with mounted_small_disk(tmp_path) as mount:
        yield mount


def test_a_full_disk_sends_alarms_from_memory_and_writes_them_once_space_returns(
    mosquitto, tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub_dir = small_disk / "hub"
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        receiver(mosquitto, tmp_path) as rec,
        running_hub(mosquitto, hub_dir) as hub,
    ):
        press_and_release(hub)
        sub.wait_until(lambda ms: any(m.json()["kind"] == "panic" for m in ms))
        filler = fill(small_disk)
        caplog.clear()
        # Two more panics while the card is full: sounded, published at once, stored at
        # the receiver and receipted, with the fault itself.
        press_and_release(hub)
        press_and_release(hub)
        assert hub.board.outputs()["siren"] is True
        sub.wait_until(lambda ms: sum(m.json()["kind"] == "panic" for m in ms) >= 3, timeout=15)
        panics = [m.json() for m in sub.messages if m.json()["kind"] == "panic"]
        wait_until(lambda: {p["id"] for p in panics} <= stored_ids(tmp_path), 15, "stored")
        sub.wait_until(lambda ms: any(f["qualifier"] == "E" for f in faults(sub)))
        fault = next(f for f in faults(sub) if f["qualifier"] == "E")
        assert fault["data"]["fault"] == "full"
        # Telemetry is refused, and the submitter is told.
        answer = hub.handle({"cmd": "emit", "kind": "telemetry", "count": 3})
        assert answer["ok"] is False and "refused" in answer["error"]
        # Health and status keep answering while full.
        status = hub.status()
        assert status["ok"] is True and status["sounding"] == ["siren"]
        assert hub.hub.outbox.health()["state"] == "full"
        # One log line for the state change, not one per retry.
        wait_until(lambda: hub.hub.outbox.storage.write_errors >= 0, 3)
        refusals = [r for r in caplog.records if "cannot be written" in r.getMessage()]
        assert len(refusals) <= 1
        assert not [r for r in caplog.records if r.exc_info]
        # Space returns: everything held is committed, and the restore goes out.
        filler.unlink()
        sub.wait_until(lambda ms: any(f["qualifier"] == "R" for f in faults(sub)), timeout=15)
        wait_until(lambda: hub.hub.outbox.health()["state"] == "ok", 10, "writable again")
        answer = hub.handle({"cmd": "emit", "kind": "telemetry", "count": 3})
        assert answer["ok"] is True
        wait_until(lambda: "in_memory" not in outbox_counts(hub), 10, "memory written out")
        assert rec.stats.malformed == 0


def test_a_hub_starts_on_a_full_disk_and_drains_once_space_returns(
    mosquitto, tmp_path: Path, small_disk: Path
) -> None:
    hub_dir = small_disk / "hub"
    backlog, _ = fill_backlog(mosquitto, hub_dir)
    filler = fill(small_disk)
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        receiver(mosquitto, tmp_path),
        running_hub(mosquitto, hub_dir) as hub,
    ):
        press_and_release(hub)
        assert hub.board.outputs()["siren"] is True
        msgs = sub.wait_until(lambda ms: any(m.json()["kind"] == "panic" for m in ms), 15)
        panic = next(m.json() for m in msgs if m.json()["kind"] == "panic")
        wait_until(lambda: panic["id"] in stored_ids(tmp_path), 15, "the panic stored")
        assert hub.status()["ok"] is True
        filler.unlink()
        wanted = {e["id"] for e in backlog}
        wait_until(lambda: wanted <= stored_ids(tmp_path), 30, "the old backlog delivered")


def test_events_only_in_memory_at_shutdown_are_logged_whole(
    mosquitto, tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub_dir = small_disk / "hub"
    with caplog.at_level(logging.ERROR), running_hub(mosquitto, hub_dir) as hub:
        hub.hub.dispatcher.call(lambda o: None).result(5)
        fill(small_disk)
        press_and_release(hub)  # no receiver: never receipted, never on disk
        wait_until(lambda: outbox_counts(hub).get("in_memory", 0) >= 1, 10, "held")
    lines = [r.getMessage() for r in caplog.records if "never written to disk" in r.getMessage()]
    payloads = [json.loads(line.split(": ", 1)[1]) for line in lines]
    assert "panic" in {p["kind"] for p in payloads}
