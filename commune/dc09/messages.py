"""The two messages the forwarder sends: an event as ``ADM-CID`` (Contact ID over DC-09) and
the ``NULL`` link test.

```
"ADM-CID"0042R1L1#1234[#1234|1120 01 003]_14:12:04,09-25-2025       an event
"*ADM-CID"0042R1L1#1234[<hex of AES(<pad>|#1234|1120 01 003]_...)>   the same, encrypted
"NULL"0000R1L1#1234[]_14:12:04,09-25-2025                            a link test
"*NULL"0000R1L1#1234[<hex of AES(<pad>|]_...)>                       the same, encrypted
```

``R`` (receiver number) is left out when none is configured; ``L`` (line prefix) is always
there. The timestamp is when the message is sent: a receiver with a key refuses one outside its
window (``pysiaalarm``: 40 s before to 20 s after its clock), so every attempt is stamped anew
while its sequence number stays.
"""

from __future__ import annotations

from dataclasses import dataclass

from commune.dc09 import cipher
from commune.dc09.frame import frame, timestamp

NULL_SEQUENCE = 0


@dataclass(frozen=True)
class ContactId:
    """An event in Contact ID terms: ``Q EEE GG ZZZ``."""

    qualifier: int  # 1 new event, 3 restore (6: a status report, unused here)
    code: int  # the event code, 000-999
    group: int  # the partition, 00-99
    zone: int  # the zone or user number, 000-999

    def __post_init__(self) -> None:
        for name, value, top in (
            ("qualifier", self.qualifier, 9),
            ("code", self.code, 999),
            ("group", self.group, 99),
            ("zone", self.zone, 999),
        ):
            if not 0 <= value <= top:
                raise ValueError(f"a Contact ID {name} is 0 to {top}, not {value}")

    def text(self) -> str:
        return f"{self.qualifier}{self.code:03d} {self.group:02d} {self.zone:03d}"


@dataclass(frozen=True)
class Route:
    """The header fields every message carries: receiver number and line prefix (hex)."""

    receiver: str | None
    line: str

    def header(self) -> str:
        return (f"R{self.receiver}" if self.receiver else "") + f"L{self.line}"


@dataclass(frozen=True)
class Message:
    """A framed message and what its ACK must echo."""

    token: str  # "ADM-CID" or "NULL"
    sequence: int
    account: str
    encrypted: bool
    wire: bytes


def adm_cid(
    sequence: int,
    route: Route,
    account: str,
    event: ContactId,
    key: bytes | None = None,
    at: float | None = None,
) -> Message:
    """An event message; sequence 1-9999."""
    if not 1 <= sequence <= 9999:
        raise ValueError(f"an event's sequence number is 1 to 9999, not {sequence}")
    return _message("ADM-CID", sequence, route, account, f"#{account}|{event.text()}", key, at)


def null(route: Route, account: str, key: bytes | None = None, at: float | None = None) -> Message:
    """A link test (sequence 0000, no data)."""
    return _message("NULL", NULL_SEQUENCE, route, account, "", key, at)


def _message(
    token: str,
    sequence: int,
    route: Route,
    account: str,
    data: str,
    key: bytes | None,
    at: float | None,
) -> Message:
    head = f"{sequence:04d}{route.header()}#{account}["
    tail = f"{data}]{timestamp(at)}"
    if key is None:
        body = f'"{token}"{head}{tail}'
    else:
        body = f'"*{token}"{head}{cipher.encrypt(key, tail)}'
    return Message(token, sequence, account, key is not None, frame(body))
