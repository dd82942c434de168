"""The forwarder against pysiaalarm's receiver (a real, independent DC-09 implementation) on a
free loopback port: every alarm, trouble and restore arrives once with its code, qualifier and
account; a restart of the receiver loses nothing; a key mismatch is reported and nothing is
counted delivered; with the right key, encrypted messages are accepted."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from dc09_kit import (
    HUBS,
    KEY,
    OTHER_KEY,
    Arrival,
    SiaReceiver,
    alarm_mix,
    dc09_config,
    forwarded,
    running,
    store,
    wait_for,
)

from core.events import RESTORE, Event
from testkit.waiting import wait_until


def expected_arrivals(events: list[tuple[str, Event]], first_sequence: int = 1) -> list[tuple]:
    return [
        (
            HUBS[hub],
            first_sequence + i,
            "3" if e.qualifier == RESTORE else "1",
            f"{e.cid:03d}",
            "01",
        )
        for i, (hub, e) in enumerate(forwarded(events))
    ]


def as_tuple(a: Arrival) -> tuple:
    return (a.account, a.sequence, a.qualifier, a.code, a.partition)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The receiver's store: a SQLite file, or a PostgreSQL database of the test's own."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return tmp_path / "receiver.sqlite3"


def test_every_alarm_trouble_and_restore_arrives_once_in_order(location: Any) -> None:
    path = location
    with SiaReceiver() as centre, running(path, dc09_config(centre.port)) as forwarder:
        events = alarm_mix(48)
        store(path, events)
        want = expected_arrivals(events)
        stats = wait_for(forwarder, "all delivered", lambda s: s["delivered"] == len(want))
        assert [as_tuple(a) for a in centre.events()] == want
        assert {a.sia_code for a in centre.events()} >= {"PA", "TA", "TR", "FA"}
        assert not any(a.encrypted for a in centre.events())
        assert stats["queue"] == {"pending": 0, "delivered": len(want), "refused": 0}
        assert stats["attempts"] == len(want) and stats["naks"] == 0
        assert stats["condition"] == "delivering"
        time.sleep(0.5)  # nothing more comes
        assert len(centre.events()) == len(want)


def test_zones_arrive_as_the_numbers_the_mapping_gives(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    with (
        SiaReceiver() as centre,
        running(path, dc09_config(centre.port, zones={"smoke-1": 9})),
    ):
        store(
            path,
            [
                ("cho-an-dong", Event(kind="fire", zone="smoke-1", source="t")),
                ("cho-an-dong", Event(kind="panic", zone="panic-1", source="t")),
                ("cho-an-dong", Event(kind="comm_trouble", zone="link", source="receiver")),
                ("cho-an-dong", Event(kind="uplink", zone="hub", source="uplink")),
            ],
        )
        arrived = centre.arrivals.wait_until(lambda items: len(items) == 4)
        assert [a.zone for a in arrived] == ["009", "001", "000", "000"]


def test_a_restart_of_the_receiver_mid_stream_loses_nothing(location: Any) -> None:
    path = location
    centre = SiaReceiver()
    centre.start()
    try:
        with running(path, dc09_config(centre.port)) as forwarder:
            first = alarm_mix(24)
            store(path, first)
            wait_for(forwarder, "some delivered", lambda s: s["delivered"] >= 3)
            centre.stop()  # the centre goes away with messages still queued
            second = alarm_mix(24)
            store(path, second)
            wait_for(forwarder, "the centre missed", lambda s: s["connect_failures"] >= 2)
            assert forwarder.stats()["queue"]["pending"] > 0
            centre.start()  # back, on the same port
            want = expected_arrivals(first + second)
            wait_for(forwarder, "all delivered", lambda s: s["delivered"] == len(want))
            got = [as_tuple(a) for a in centre.events()]
            # Every message arrived; a repeat (an ACK lost as the centre went down) carries the
            # same sequence number, which is how a DC-09 receiver recognises it.
            assert sorted(set(got), key=lambda t: t[1]) == want
            assert len(got) - len(want) <= 1
            stats = forwarder.stats()
            assert stats["queue"] == {"pending": 0, "delivered": len(want), "refused": 0}
            assert stats["condition"] == "delivering"
    finally:
        centre.stop()


@pytest.mark.parametrize("key", [KEY, KEY + "01234567", KEY * 2])
def test_with_the_right_key_encrypted_messages_are_accepted(tmp_path: Path, key: str) -> None:
    path = tmp_path / "receiver.sqlite3"
    env = {"TUQUAN_DC09_KEY": key}
    with SiaReceiver(key=key) as centre:
        config = dc09_config(centre.port, env, key_env="TUQUAN_DC09_KEY")
        with running(path, config) as forwarder:
            events = alarm_mix(16)
            store(path, events)
            want = expected_arrivals(events)
            wait_for(forwarder, "all delivered", lambda s: s["delivered"] == len(want))
            assert [as_tuple(a) for a in centre.events()] == want
            assert all(a.encrypted for a in centre.events())
            assert forwarder.stats()["undecryptable"] == 0


def test_a_key_mismatch_is_reported_and_nothing_is_counted_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "receiver.sqlite3"
    caplog.set_level(logging.WARNING, "commune.dc09")
    with SiaReceiver(key=KEY) as centre:
        wrong = dc09_config(centre.port, {"K": OTHER_KEY}, key_env="K")
        with running(path, wrong) as forwarder:
            events = alarm_mix(8)
            store(path, events)
            stats = wait_for(forwarder, "refused again and again", lambda s: s["naks"] >= 4)
            assert stats["delivered"] == 0 and stats["condition"] == "NAK"
            assert stats["queue"]["pending"] == len(forwarded(events))
            assert "is the key right" in stats["detail"]
            assert centre.events() == []
            assert centre.counts.error_format >= 4  # pysiaalarm could not read them
        naks = [r for r in caplog.records if "NAK" in r.getMessage()]
        assert len(naks) == 1, [r.getMessage() for r in naks]  # logged once, not per attempt
        # The key put right: the same queue, in order, with the sequence numbers it had.
        right = dc09_config(centre.port, {"K": KEY}, key_env="K")
        with running(path, right) as forwarder:
            want = expected_arrivals(events)
            wait_for(forwarder, "all delivered", lambda s: s["delivered"] == len(want))
            assert [as_tuple(a) for a in centre.events()] == want


def test_an_idle_link_is_tested_with_null_messages(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    with SiaReceiver(key=KEY) as centre:
        config = dc09_config(centre.port, {"K": KEY}, key_env="K", link_test_s=1)
        with running(path, config) as forwarder:
            stats = wait_for(forwarder, "two link tests", lambda s: s["link_tests_acked"] >= 2)
            assert stats["attempts"] == 0 and stats["connects"] == 1
            nulls = [a for a in centre.arrivals.items() if a.null]
            assert len(nulls) >= 2 and all(a.encrypted and a.account == "0000" for a in nulls)
            store(path, alarm_mix(1))
            wait_for(forwarder, "delivered", lambda s: s["delivered"] == 1)
            wait_until(lambda: len(centre.events()) == 1, 30)
