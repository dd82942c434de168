"""The forwarder when the other end misbehaves or the disk fills: a silent peer, garbage, a
DUH, an ACK under another key, a receiver whose clock is off, a peer that hangs up, nothing
listening; a full disk under the queue; the forwarder itself restarted mid-stream. Never a
message counted delivered without its ACK, never one lost, never a crash."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import pytest
from dc09_kit import (
    KEY,
    OTHER_KEY,
    ScriptedPeer,
    SiaReceiver,
    alarm_mix,
    dc09_config,
    forwarded,
    received,
    refusing_port,
    running,
    store,
    wait_for,
)

from commune.dc09 import cipher
from commune.dc09.frame import frame, parse_timestamp, timestamp, unframe
from commune.store import EventStore
from testkit.disks import fill, small_disk

_MESSAGE = re.compile(
    r'"\*?(?P<token>ADM-CID|NULL)"(?P<seq>\d{4})(?P<route>[^#]*)#(?P<account>\w+)\['
)


def parts(message: bytes) -> re.Match[str]:
    found = _MESSAGE.match(unframe(message))
    assert found is not None, message
    return found


def ack(message: bytes) -> bytes:
    m = parts(message)
    return frame(f'"ACK"{m["seq"]}{m["route"]}#{m["account"]}[]')


def sequences(peer: ScriptedPeer) -> list[int]:
    return [int(parts(m)["seq"]) for m in peer.received.items()]


def test_a_silent_peer_gets_the_same_message_again_and_nothing_is_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "receiver.sqlite3"
    caplog.set_level(logging.WARNING, "commune.dc09")
    with ScriptedPeer(lambda message: None) as peer:
        config = dc09_config(peer.port, ack_timeout_s=0.3)
        with running(path, config) as forwarder:
            store(path, alarm_mix(3))
            stats = wait_for(forwarder, "silence, three times", lambda s: s["silent"] >= 3)
            assert stats["delivered"] == 0 and stats["condition"] == "silent"
            assert set(sequences(peer)) == {1}  # the first message, again and again
            assert peer.connections >= 3  # each silence closes the connection
            [row, *_] = forwarder.queue.pending()
            assert row.attempts >= 2 and "no reply" in (row.last_error or "")
    assert len([r for r in caplog.records if "silent" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    "answer",
    [
        lambda m: b"\x00\xffgarbage\r",
        lambda m: b"\n\r",
        lambda m: b"A" * 5000,  # no CR at all
        lambda m: frame('"ACK"9998R1L2#1234[]'),  # another sequence
        lambda m: frame('"ACK"' + parts(m)["seq"] + "R1L2#FFFF[]"),  # another account
        lambda m: ack(m)[:-3] + b"X]\r",  # a CRC that does not match
    ],
)
def test_garbage_is_counted_and_never_a_delivery(tmp_path: Path, answer) -> None:
    path = tmp_path / "receiver.sqlite3"
    with ScriptedPeer(answer) as peer, running(path, dc09_config(peer.port)) as forwarder:
        store(path, alarm_mix(2))
        stats = wait_for(forwarder, "bad replies", lambda s: s["bad_replies"] >= 3)
        assert stats["delivered"] == 0 and stats["queue"]["delivered"] == 0
        assert stats["condition"] == "bad reply"


def test_a_peer_that_hangs_up_is_called_again(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"

    def hang_up(message: bytes) -> bytes:
        raise ConnectionAbortedError("hung up")  # the handler ends: the connection closes

    with ScriptedPeer(hang_up) as peer, running(path, dc09_config(peer.port)) as forwarder:
        store(path, alarm_mix(1))
        stats = wait_for(forwarder, "lost connections", lambda s: s["disconnects"] >= 3)
        assert stats["delivered"] == 0 and stats["connects"] >= 3
        assert stats["condition"] == "connection lost"


def test_nothing_listening_is_counted_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    with running(path, dc09_config(refusing_port())) as forwarder:
        store(path, alarm_mix(1))
        stats = wait_for(forwarder, "refused", lambda s: s["connect_failures"] >= 3)
        assert stats["condition"] == "cannot connect" and stats["attempts"] == 0


def test_a_duh_sets_the_message_aside_as_refused_and_the_next_goes(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"

    def duh_the_first(message: bytes) -> bytes:
        m = parts(message)
        if m["seq"] == "0001":
            return frame(f'"DUH"0001{m["route"]}#{m["account"]}[]')
        return ack(message)

    with ScriptedPeer(duh_the_first) as peer, running(path, dc09_config(peer.port)) as forwarder:
        events = alarm_mix(6)
        store(path, events)
        n = len(forwarded(events))
        stats = wait_for(forwarder, "all answered", lambda s: s["delivered"] == n - 1)
        assert stats["refused"] == 1
        assert stats["queue"] == {"pending": 0, "delivered": n - 1, "refused": 1}
        assert sequences(peer) == list(range(1, n + 1))  # the refused one was not sent again
        [refused] = forwarder.queue.rows("refused")
        assert refused.sequence == 1 and "DUH" in (refused.last_error or "")


def test_an_encrypted_ack_under_another_key_does_not_count(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"

    def ack_with_another_key(message: bytes) -> bytes:
        m = parts(message)
        secret = cipher.encrypt(OTHER_KEY.encode(), "]" + timestamp())
        return frame(f'"*ACK"{m["seq"]}{m["route"]}#{m["account"]}[{secret}')

    with ScriptedPeer(ack_with_another_key) as peer:
        config = dc09_config(peer.port, {"K": KEY}, key_env="K")
        with running(path, config) as forwarder:
            store(path, alarm_mix(2))
            stats = wait_for(forwarder, "undecryptable", lambda s: s["undecryptable"] >= 3)
            assert stats["delivered"] == 0 and stats["condition"] == "reply does not decrypt"


def test_a_nak_for_a_clock_far_off_makes_later_messages_use_the_receivers_time(
    tmp_path: Path,
) -> None:
    """The standard's NAK carries the receiver's time so that the sender can correct its own:
    here the receiver's clock is 5 minutes ahead and it refuses anything outside 20 s."""
    path = tmp_path / "receiver.sqlite3"
    ahead = 300.0

    def strict_clock(message: bytes) -> bytes:
        import time

        now = time.time() + ahead
        stamp = parse_timestamp(unframe(message)[-20:])
        if stamp is None or abs(stamp - now) > 20:
            return frame('"NAK"0000R0L0A0[]' + timestamp(now))
        return ack(message)

    with ScriptedPeer(strict_clock) as peer, running(path, dc09_config(peer.port)) as forwarder:
        events = alarm_mix(4)
        store(path, events)
        n = len(forwarded(events))
        stats = wait_for(forwarder, "delivered", lambda s: s["delivered"] == n)
        assert stats["naks"] == 1 and abs(stats["clock_skew_s"] - ahead) < 5


def test_a_restart_of_the_forwarder_keeps_its_position_and_its_queue(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    with SiaReceiver(delay_s=0.05) as centre:
        config = dc09_config(centre.port)
        with running(path, config) as forwarder:
            first = alarm_mix(40)
            store(path, first)
            wait_for(forwarder, "some delivered", lambda s: s["delivered"] >= 5)
        with sqlite3.connect(path) as conn:
            pending = conn.execute("SELECT count(*) FROM dc09_queue WHERE state = 'pending'")
            assert pending.fetchone()[0] > 0  # stopped mid-stream
        second = alarm_mix(16)
        store(path, second)  # while no forwarder runs
        with running(path, config) as again:
            n = len(forwarded(first + second))
            wait_for(again, "all delivered", lambda s: s["queue"]["delivered"] == n)
        got = [a.sequence for a in centre.events()]
        assert sorted(set(got)) == list(range(1, n + 1))
        # Nothing twice but, at most, the message whose ACK the stop cut short (same sequence).
        assert len(got) - n <= 1


def test_a_full_disk_loses_no_event_and_sends_none_twice(tmp_path: Path) -> None:
    """Two ways the disk under the queue can be full: ACKs that cannot be recorded (kept in
    memory, the messages never sent again), and stored events that cannot be queued (queued
    once there is room)."""
    with small_disk(tmp_path) as disk, SiaReceiver() as centre:
        path = disk / "receiver.sqlite3"
        config = dc09_config(centre.port)
        # The receiver keeps its store open, as it does while it runs.
        with EventStore(path) as receiver_store:
            first, second, third = alarm_mix(8), alarm_mix(8), alarm_mix(8)
            n = len(forwarded(first))
            with running(path, config) as forwarder:
                receiver_store.store_batch([received(h, e) for h, e in first])
                wait_for(forwarder, "delivered", lambda s: s["queue"]["delivered"] == n)
                centre.stop()
                receiver_store.store_batch([received(h, e) for h, e in second])
                wait_for(forwarder, "queued", lambda s: s["followed"]["queued"] == 2 * n)
                filler = fill(disk)
                centre.start()  # the queued ones go out; their ACKs cannot be recorded
                stats = wait_for(forwarder, "ACKed", lambda s: s["delivered"] == 2 * n)
                assert stats["store_errors"] >= 1 and stats["queue"]["delivered"] < 2 * n
                filler.unlink()
                wait_for(forwarder, "recorded", lambda s: s["queue"]["delivered"] == 2 * n)
            receiver_store.store_batch([received(h, e) for h, e in third])
            filler = fill(disk)
            with running(path, config) as forwarder:  # cannot queue them
                stats = wait_for(forwarder, "refused", lambda s: s["store_errors"] >= 2)
                assert stats["queue"]["pending"] == 0 and stats["attempts"] == 0
                filler.unlink()
                wait_for(forwarder, "all", lambda s: s["queue"]["delivered"] == 3 * n)
        got = [a.sequence for a in centre.events()]
        assert sorted(got) == list(range(1, 3 * n + 1))  # each once


def test_the_store_refusing_is_not_a_crash(tmp_path: Path) -> None:
    """A queue table made unreadable by hand: the sender says so and keeps trying."""
    path = tmp_path / "receiver.sqlite3"
    with ScriptedPeer(ack) as peer, running(path, dc09_config(peer.port)) as forwarder:
        store(path, alarm_mix(1))
        wait_for(forwarder, "delivered", lambda s: s["delivered"] == 1)
        with sqlite3.connect(path) as conn:
            conn.execute("ALTER TABLE dc09_queue RENAME TO dc09_queue_gone")
        store(path, alarm_mix(2))
        wait_for(forwarder, "errors", lambda s: s["store_errors"] >= 2)
        with sqlite3.connect(path) as conn:
            conn.execute("ALTER TABLE dc09_queue_gone RENAME TO dc09_queue")
        wait_for(forwarder, "delivered again", lambda s: s["queue"]["delivered"] == 3)
