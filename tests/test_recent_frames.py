"""The serial bus's ledger of frames seen lately (sensors/recent_frames.py): which arrivals are
copies, and how many ACKs a frame is owed once its events commit. Real codec frames; the
times are the test's."""

from __future__ import annotations

from typing import Any

from firmware_py import codec
from sensors.recent_frames import MAX_WAITING_ACKS, RecentFrames, Seen

WINDOW_S = 300.0


def frame(seq: int, level: int = 700, node: int = 5) -> Any:
    wire = codec.encode(codec.ALARM, node, 1, seq, codec.alarm_payload(codec.SMOKE, level))
    [decoded] = codec.Decoder().feed(wire)
    return decoded


def arrive(recent: RecentFrames, f: Any, now: float = 0.0) -> Seen:
    return recent.classify(f.key(), f.as_tuple(), now)


def test_a_copy_before_the_commit_is_owed_its_ack_with_the_first() -> None:
    recent = RecentFrames(window_s=WINDOW_S)
    f = frame(1)
    assert arrive(recent, f) is Seen.NEW
    entry = recent.add(f.key(), f.as_tuple(), 0.0, events=2)
    assert arrive(recent, f, 1.0) is Seen.COPY_PENDING
    assert arrive(recent, f, 2.0) is Seen.COPY_PENDING
    assert recent.committed(entry) == 0  # one of two events: no ACK yet
    assert recent.committed(entry) == 3  # the frame and its two copies
    assert arrive(recent, f, 3.0) is Seen.COPY  # committed: ACK this copy at once


def test_a_frame_without_events_is_committed_from_the_start() -> None:
    # A heartbeat that reports nothing is ACKed at once; its re-sent copy must be too.
    recent = RecentFrames(window_s=WINDOW_S)
    f = frame(1)
    recent.add(f.key(), f.as_tuple(), 0.0, events=0)
    assert arrive(recent, f, 1.0) is Seen.COPY


def test_waiting_copies_are_bounded() -> None:
    recent = RecentFrames(window_s=WINDOW_S)
    f = frame(1)
    entry = recent.add(f.key(), f.as_tuple(), 0.0, events=1)
    for _ in range(MAX_WAITING_ACKS + 5):
        assert arrive(recent, f) is Seen.COPY_PENDING
    assert recent.committed(entry) == 1 + MAX_WAITING_ACKS


def test_the_same_numbers_for_another_message_or_much_later_are_a_new_message() -> None:
    recent = RecentFrames(window_s=WINDOW_S)
    f = frame(1)
    entry = recent.add(f.key(), f.as_tuple(), 0.0, events=1)
    assert arrive(recent, frame(1, level=900), 1.0) is Seen.REUSED  # other content
    recent.committed(entry)
    assert arrive(recent, f, WINDOW_S) is Seen.COPY
    assert arrive(recent, f, WINDOW_S + 0.5) is Seen.REUSED  # too late to be a re-send


def test_a_failed_commit_is_forgotten_once_and_its_next_copy_is_new() -> None:
    recent = RecentFrames(window_s=WINDOW_S)
    f = frame(1)
    entry = recent.add(f.key(), f.as_tuple(), 0.0, events=2)
    assert arrive(recent, f) is Seen.COPY_PENDING
    assert recent.forget(f.key(), entry) is True
    assert recent.forget(f.key(), entry) is False  # the second failed event: already known
    assert recent.committed(entry) == 0  # a late success of the other event ACKs nothing
    assert arrive(recent, f, 1.0) is Seen.NEW


def test_forgetting_an_old_entry_leaves_the_newer_message_with_its_numbers() -> None:
    recent = RecentFrames(window_s=WINDOW_S)
    old, new = frame(1), frame(1, level=900)
    old_entry = recent.add(old.key(), old.as_tuple(), 0.0, events=1)
    recent.add(new.key(), new.as_tuple(), 1.0, events=0)
    recent.forget(old.key(), old_entry)
    assert arrive(recent, new, 2.0) is Seen.COPY


def test_only_the_newest_keys_are_kept() -> None:
    recent = RecentFrames(window_s=WINDOW_S, keep=3)
    frames = [frame(seq) for seq in range(1, 5)]
    for f in frames:
        recent.add(f.key(), f.as_tuple(), 0.0, events=0)
    assert arrive(recent, frames[0]) is Seen.NEW  # the oldest went first
    assert [arrive(recent, f) for f in frames[1:]] == [Seen.COPY] * 3
