"""What a request may ask for, checked before it reaches the store: hub ids (the pattern of
``settings.validators.Id``), kinds, zones, states, outcomes, and ISO-8601 times, which are
brought to the store's own form (UTC, milliseconds, ``Z``) so that they compare as text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from commune.alerts import OUTCOMES, RESTORED, STATES
from core.errors import TuquanError

HUB_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_ZONE_CHARS = 64
MAX_TIME_CHARS = 40
ALL_OUTCOMES = (*OUTCOMES, RESTORED)
MAX_OFFSET = 1_000_000


class BadParameter(TuquanError):
    """A query parameter that cannot be used; the message names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


EARLIEST = "0001-01-01T00:00:00.000Z"
LATEST = "9999-12-31T23:59:59.999Z"


def store_time(at: datetime) -> str:
    """``at`` as the store writes times; UTC (a time without an offset is taken as UTC). One
    that UTC cannot hold (year 1 east of Greenwich, 9999 west) comes before or after every
    stored time."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        utc = at.astimezone(UTC)
    except OverflowError:
        return EARLIEST if at.year < 5000 else LATEST
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(field: str, value: str, *, end_of_day: bool = False) -> str:
    """An ISO-8601 date or date-time (UTC if it names no offset) in the store's form. A bare
    date is its midnight, or with ``end_of_day`` the next midnight (an inclusive last day)."""
    text = value.strip()
    if not text or len(text) > MAX_TIME_CHARS:
        raise BadParameter(field, "expected an ISO-8601 date or date-time")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            at = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end_of_day:
                at += timedelta(days=1)
        else:
            at = datetime.fromisoformat(text)
        return store_time(at)
    except (ValueError, OverflowError):
        raise BadParameter(
            field, f"{value[:MAX_TIME_CHARS]!r} is not an ISO-8601 date or date-time"
        ) from None


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
MAX_RFC3339_CHARS = 64


def rfc3339(value: str) -> str:
    """An RFC 3339 date-time (what OpenAPI's ``format: date-time`` means: the offset is
    required) in the store's form; ValueError if it is not one."""
    found = _RFC3339.fullmatch(value)
    if found is None:
        raise ValueError("expected an RFC 3339 date-time such as 2026-03-01T08:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in found.groups()[:6])
    fraction = (found.group(7) or "")[:6].ljust(6, "0")
    offset = timedelta(0)
    if found.group(9):
        hours, minutes = int(found.group(10)), int(found.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError("the offset is not a time zone offset")
        offset = timedelta(hours=hours, minutes=minutes)
        if found.group(9) == "-":
            offset = -offset
    try:
        at = datetime(
            year, month, day, hour, minute, second, int(fraction), tzinfo=timezone(offset)
        )
    except ValueError as exc:
        raise ValueError(f"not a date-time: {exc}") from None
    return store_time(at)


@dataclass(frozen=True)
class AlertSearch:
    """The history's filters (all optional), as ``AlertBook.search`` takes them."""

    hub: str | None = None
    kind: str | None = None
    zone: str | None = None
    since: str | None = None
    until: str | None = None
    outcome: str | None = None
    state: str | None = None

    def as_kwargs(self) -> dict[str, str | None]:
        return {
            "hub": self.hub,
            "kind": self.kind,
            "zone": self.zone,
            "since": self.since,
            "until": self.until,
            "outcome": self.outcome,
            "state": self.state,
        }

    def is_empty(self) -> bool:
        return not any(self.as_kwargs().values())


def alert_search(
    *,
    hub: str = "",
    kind: str = "",
    zone: str = "",
    since: str = "",
    until: str = "",
    outcome: str = "",
    state: str = "",
) -> AlertSearch:
    """The history form's fields (empty = any) as a checked search; BadParameter names the
    field that cannot be used."""
    if hub and not re.fullmatch(HUB_PATTERN, hub):
        raise BadParameter("hub", "not a hub id (lower-case letters, digits, '-', '_')")
    if kind and not re.fullmatch(KIND_PATTERN, kind):
        raise BadParameter("kind", "not an event kind")
    if len(zone) > MAX_ZONE_CHARS:
        raise BadParameter("zone", f"longer than {MAX_ZONE_CHARS} characters")
    if outcome and outcome not in ALL_OUTCOMES:
        raise BadParameter("outcome", f"one of {', '.join(ALL_OUTCOMES)}")
    if state and state not in STATES:
        raise BadParameter("state", f"one of {', '.join(STATES)}")
    return AlertSearch(
        hub=hub or None,
        kind=kind or None,
        zone=zone or None,
        since=parse_time("since", since) if since else None,
        until=parse_time("until", until, end_of_day=True) if until else None,
        outcome=outcome or None,
        state=state or None,
    )
