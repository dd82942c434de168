"""Strict validation of an event message at the receiver's edge.

Everything a hub sends is hostile input until proven otherwise: a message that passes here fits
every column of the store (SQLite integers are signed 64-bit, text is UTF-8), so storing it can
fail only for reasons outside the message. ``parse_event_message`` turns one MQTT message into
a ``ReceivedEvent`` or raises ``InvalidEvent`` saying why it is refused. It never goes through
``core.events.Event``, whose constructor refuses kinds this receiver does not know: a newer
hub's kind is stored as it comes (version skew loses nothing), with the ``priority`` and ``cid``
the hub gave it.

Every limit is a named constant below; docs/receiver.md lists them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from commune.store import ReceivedEvent
from core.errors import TuquanError
from core.events import KINDS, NEW, RECEIVER_KINDS, RESTORE
from core.safe_json import loads_untrusted
from core.topics import parse_hub_topic

MAX_EVENT_BYTES = 64 * 1024  # a hub's event is a few hundred bytes; snapshots have their own limit
MAX_EVENT_DEPTH = 32  # nesting of the whole message, checked before parsing
MAX_DATA_BYTES = 16 * 1024  # ``data`` serialized (compact, sorted keys, ASCII)
MAX_ID_LENGTH = 64  # hubs reject a receipt holding a longer id (a UUID is 36)
MAX_ZONE_LENGTH = 128
MAX_SOURCE_LENGTH = 128
MAX_TS_LENGTH = 40  # "2025-01-01T00:00:00.000000+00:00" is 32
MIN_SEQ, MAX_SEQ = 1, 2**63 - 1  # a hub's outbox numbers from 1; SQLite's INTEGER range
# An unsynchronised hub clock may be back at the epoch (a Raspberry Pi has no battery clock),
# and its alarm still counts; a year outside this range is not a clock, it is garbage.
MIN_TS_YEAR, MAX_TS_YEAR = 1970, 2200
MAX_PRIORITY = 9  # 0 alarm .. 3 telemetry today; room for a newer hub's levels
MAX_CID = 999  # a Contact ID event code has three digits
KIND_PATTERN = re.compile(r"[a-z0-9_]{1,40}")
HUB_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
QUALIFIERS = (NEW, RESTORE)


class InvalidEvent(TuquanError):
    """The message is not an event this receiver may store; the text says why."""


def parse_event_message(
    topic: str, payload: bytes, *, commune: str, received_at: str
) -> ReceivedEvent:
    """The event carried by ``payload`` on ``topic``, or InvalidEvent.

    The topic is the authority (broker ACLs bind it to the hub's identity): the payload's
    ``hub`` and ``kind`` must agree with it."""
    return parse_event(topic, payload, commune=commune, received_at=received_at)[0]


def parse_event(
    topic: str, payload: bytes, *, commune: str, received_at: str
) -> tuple[ReceivedEvent, dict[str, Any]]:
    """``parse_event_message``'s event, with the JSON object it was read from (what the hub's
    signature covers, checked by ``commune.trust``)."""
    hub, topic_kind = _topic_parts(topic, commune)
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"{len(payload)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"not UTF-8 ({exc})") from None
    try:
        obj = loads_untrusted(text, max_bytes=MAX_EVENT_BYTES, max_depth=MAX_EVENT_DEPTH)
    except ValueError as exc:  # JSONDecodeError is one too
        raise InvalidEvent(f"not acceptable JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(f"JSON {type(obj).__name__}, not an object")

    if obj.get("hub") != hub:
        raise InvalidEvent(f"payload hub {_shown(obj.get('hub'))} is not the topic's hub {hub!r}")
    kind = _text(obj, "kind", 40)
    if kind != topic_kind:
        raise InvalidEvent(f"payload kind {kind!r} is not the topic's kind {topic_kind!r}")
    if kind in RECEIVER_KINDS:
        # Only the receiver says a hub went dark: a hub (or a forger) cannot raise or restore it.
        raise InvalidEvent(f"kind {kind!r} is the receiver's own supervision report")
    priority = _optional_int(obj, "priority", 0, MAX_PRIORITY)
    cid = _optional_int(obj, "cid", 0, MAX_CID)
    known = KINDS.get(kind)
    if known is not None:
        # This receiver's table decides for the kinds it knows, as it always has.
        priority, cid = int(known.priority), known.cid
    elif priority is None or cid is None:
        raise InvalidEvent(f"kind {kind!r} is unknown here and the event lacks priority or cid")

    event_id = _text(obj, "id", MAX_ID_LENGTH)
    if not event_id:
        raise InvalidEvent("id is empty")
    qualifier = _text(obj, "qualifier", 1)
    if qualifier not in QUALIFIERS:
        raise InvalidEvent(f"qualifier must be {NEW!r} or {RESTORE!r}, not {qualifier!r}")
    clock_synced = obj.get("clock_synced", False)
    if not isinstance(clock_synced, bool):
        raise InvalidEvent(f"clock_synced must be true or false, not {_shown(clock_synced)}")
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise InvalidEvent(f"data must be an object, not {type(data).__name__}")
    data_size = len(json.dumps(data, separators=(",", ":"), sort_keys=True))
    if data_size > MAX_DATA_BYTES:
        raise InvalidEvent(f"data is {data_size} bytes serialized, more than {MAX_DATA_BYTES}")

    event = ReceivedEvent(
        id=event_id,
        hub=hub,
        commune=commune,
        seq=_int(obj, "seq", MIN_SEQ, MAX_SEQ),
        kind=kind,
        priority=priority,
        zone=_text(obj, "zone", MAX_ZONE_LENGTH),
        source=_text(obj, "source", MAX_SOURCE_LENGTH, default=""),
        ts=_utc_time(obj),
        clock_synced=clock_synced,
        cid=cid,
        qualifier=qualifier,
        data=data,
        received_at=received_at,
        payload=text,
    )
    return event, obj


def _topic_parts(topic: str, commune: str) -> tuple[str, str]:
    """(hub, kind) of ``tuquan/v1/<commune>/<hub>/event/<kind>``, or InvalidEvent."""
    parts = parse_hub_topic(topic)
    if parts is None:
        raise InvalidEvent("topic outside tuquan/v1/<commune>/<hub>/")
    topic_commune, hub, rest = parts
    if topic_commune != commune:
        raise InvalidEvent(f"topic of commune {topic_commune[:80]!r}, not {commune!r}")
    if not HUB_PATTERN.fullmatch(hub):
        raise InvalidEvent("the hub in the topic is not a hub id")
    section, _, kind = rest.partition("/")
    if section != "event":
        raise InvalidEvent("not an event topic")
    if not KIND_PATTERN.fullmatch(kind):
        raise InvalidEvent("the kind in the topic is not [a-z0-9_]{1,40}")
    return hub, kind


def _shown(value: Any) -> str:
    """A value for a log line: never more than 60 characters of it."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(obj: dict[str, Any], name: str, max_length: int, *, default: str | None = None) -> str:
    value = obj.get(name, default)
    if value is None:
        raise InvalidEvent(f"missing field {name!r}")
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidEvent(f"{name} is {len(value)} characters, more than {max_length}")
    try:
        value.encode("utf-8")  # a lone surrogate from a "\ud800" escape cannot be stored
    except UnicodeEncodeError:
        raise InvalidEvent(f"{name} is not valid Unicode text") from None
    return value


def _int(obj: dict[str, Any], name: str, low: int, high: int) -> int:
    if name not in obj:
        raise InvalidEvent(f"missing field {name!r}")
    value = obj[name]
    # bool is an int in Python, and 1.0 compares equal to 1: neither is what a hub sends.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(f"{name} must be an integer, not {_shown(value)}")
    if not low <= value <= high:
        raise InvalidEvent(f"{name} {_shown(value)} is outside {low}..{high}")
    return value


def _optional_int(obj: dict[str, Any], name: str, low: int, high: int) -> int | None:
    return _int(obj, name, low, high) if name in obj else None


def _utc_time(obj: dict[str, Any]) -> str:
    """``ts`` as given, once it is known to be an ISO-8601 UTC time of a sane year."""
    ts = _text(obj, "ts", MAX_TS_LENGTH)
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        raise InvalidEvent(f"ts {ts!r} is not an ISO-8601 time") from None
    offset = parsed.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise InvalidEvent(f"ts {ts!r} is not in UTC")
    if not MIN_TS_YEAR <= parsed.year <= MAX_TS_YEAR:
        raise InvalidEvent(f"ts {ts!r} is outside the years {MIN_TS_YEAR}..{MAX_TS_YEAR}")
    return ts
