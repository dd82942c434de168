"""The history as CSV (``/history.csv``): the same search as the page, every page of it.

A cell a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return: OWASP's list) gets a leading apostrophe, so a zone named ``=HYPERLINK(...)``
by a hostile hub, or a note typed by someone, stays text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator

from commune.alerts import Alert

COLUMNS = (
    "id",
    "hub",
    "kind",
    "zone",
    "cid",
    "priority",
    "origin",
    "state",
    "opened_at",
    "last_event_at",
    "events",
    "ack_by",
    "ack_at",
    "closed_by",
    "closed_at",
    "outcome",
    "note",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 1000
MAX_ROWS = 1_000_000


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def rows_csv(page: Callable[[int, int], list[Alert]], max_rows: int = MAX_ROWS) -> Iterator[str]:
    """The header, then ``page(limit, offset)``'s alerts, as CSV text in chunks."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    offset = 0
    while offset < max_rows:
        alerts = page(min(CHUNK, max_rows - offset), offset)
        for alert in alerts:
            values = alert.to_dict()
            writer.writerow([safe_cell(values[c]) for c in COLUMNS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        if len(alerts) < CHUNK:
            return
        offset += len(alerts)
