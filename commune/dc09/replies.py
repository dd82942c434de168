"""What a DC-09 receiver answers, read as hostile input: every reply is judged against the
message it answers, and anything that is not a well-formed, matching ACK is not a delivery.

```
"ACK"0042R1L1#1234[]                   received (an echo of sequence, receiver, line, account)
"*ACK"0042R1L1#1234[<hex of AES(<pad>|]_HH:MM:SS,MM-DD-YYYY)>]   the same, to an encrypted one
"NAK"0000R0L0A0[]_HH:MM:SS,MM-DD-YYYY  refused: the timestamp was outside the receiver's window,
                                       or it could not decrypt or read the message
"DUH"0042R1L1#1234[]                   received, and the receiver cannot process it
```

The encrypted ACK is checked for its shape after decryption (CBC has no integrity check: a
wrong key yields noise, not an error) and must carry a timestamp within ``REPLAY_WINDOW_S`` of
ours, so an ACK recorded long ago for the same sequence number cannot be played back. An
unencrypted ACK to an encrypted message is refused: anyone on the path could forge it.
``pysiaalarm`` pads its encrypted ACKs with zeros and no ``|``; that is accepted too.

A NAK's timestamp is the receiver's clock (the standard has it so that the sender can correct
its own): the difference is returned as ``skew_s``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from commune.dc09 import cipher
from commune.dc09.frame import FrameError, parse_timestamp, unframe
from commune.dc09.messages import Message

ACK, NAK, DUH = "ack", "nak", "duh"
UNDECRYPTABLE, BAD, SILENT = "undecryptable", "bad", "silent"
REPLAY_WINDOW_S = 3600.0
MAX_REPLY = 1024  # bytes: a reply longer than this without its CR is garbage

_REPLY = re.compile(
    r'"(?P<star>\*)?(?P<token>ACK|NAK|DUH)"(?P<seq>\d{4})(?P<route>[^\[]*)\[(?P<data>[^\r]*)'
)
_ACCOUNT = re.compile(r"#([0-9A-Fa-f]{3,16})$")
_TIMESTAMP = re.compile(r"_(\d\d:\d\d:\d\d,\d\d-\d\d-\d{4})$")
_SECRET_ACK = re.compile(r"[^\[\]|]*\|?\](?:\[[^\[\]]*\])*_(\d\d:\d\d:\d\d,\d\d-\d\d-\d{4})")
_BARE = {b'"NAK"': NAK, b'"DUH"': DUH}  # pysiaalarm answers so when it knows no account


@dataclass(frozen=True)
class Verdict:
    """What one reply means for the message it answers."""

    outcome: str  # ACK, NAK, DUH, UNDECRYPTABLE, BAD or SILENT
    detail: str = ""
    skew_s: float | None = None  # NAK: the receiver's clock minus ours

    @property
    def delivered(self) -> bool:
        return self.outcome == ACK


def judge(sent: Message, reply: bytes, key: bytes | None, now: float | None = None) -> Verdict:
    """The verdict on ``reply`` (the bytes up to and including its CR) to ``sent``."""
    now = time.time() if now is None else now
    if not reply.strip():
        return Verdict(SILENT if not reply else BAD, "no answer" if not reply else "an empty frame")
    bare = _BARE.get(reply.strip())
    if bare is not None:
        return Verdict(bare, "unframed")
    try:
        body = unframe(reply.lstrip(b"\0 \t"))
    except FrameError as exc:
        return Verdict(BAD, f"not a DC-09 frame: {exc}")
    match = _REPLY.fullmatch(body)
    if match is None:
        return Verdict(BAD, f"not an ACK, NAK or DUH: {body[:60]!r}")
    token, sequence = match["token"], int(match["seq"])
    if token == "NAK":
        return _nak(match["data"], now)
    if token == "DUH":
        if sequence not in (sent.sequence, 0):
            return Verdict(BAD, f"a DUH for sequence {sequence:04d}, not {sent.sequence:04d}")
        return Verdict(DUH, "the receiver cannot process the message")
    if sequence != sent.sequence:
        return Verdict(BAD, f"an ACK for sequence {sequence:04d}, not {sent.sequence:04d}")
    account = _ACCOUNT.search(match["route"])
    if account is not None and account[1].upper() != sent.account.upper():
        return Verdict(BAD, f"an ACK for account {account[1]}, not {sent.account}")
    if not sent.encrypted:
        if match["star"]:
            return Verdict(BAD, "an encrypted ACK to an unencrypted message")
        return Verdict(ACK)
    if not match["star"]:
        return Verdict(BAD, "an unencrypted ACK to an encrypted message")
    assert key is not None  # the message was encrypted with it
    return _secret_ack(match["data"], key, now)


def _nak(data: str, now: float) -> Verdict:
    stamp = _TIMESTAMP.search(data)
    at = parse_timestamp(stamp[1]) if stamp is not None else None
    if at is None:
        return Verdict(NAK, "refused")
    return Verdict(NAK, "refused", skew_s=at - now)


def _secret_ack(data: str, key: bytes, now: float) -> Verdict:
    text = cipher.decrypt(key, data.rstrip("]"))
    shape = _SECRET_ACK.fullmatch(text) if text is not None else None
    if shape is None:
        return Verdict(UNDECRYPTABLE, "the encrypted ACK does not decrypt with our key")
    at = parse_timestamp(shape[1])
    if at is None or abs(at - now) > REPLAY_WINDOW_S:
        return Verdict(BAD, "the encrypted ACK's timestamp is more than an hour away: a replay?")
    return Verdict(ACK)
