"""The DC-09 frame around every message: ``<LF><crc><0LLL><body><CR>``.

``body`` is everything from the first quote (``"ADM-CID"...``) to the end of the timestamp;
``crc`` is its CRC-16/ARC (polynomial 0x8005 reflected, initial 0) as 4 upper-case hex digits,
and ``0LLL`` its length in bytes as 4 hex digits (the first is 0: a body is at most 4095
bytes). Timestamps are UTC, ``_HH:MM:SS,MM-DD-YYYY``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

LF, CR = b"\n", b"\r"
MAX_BODY = 0xFFF
TIMESTAMP_FORMAT = "%H:%M:%S,%m-%d-%Y"


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/ARC (the one SIA DC-07 and DC-09 use); ``crc16(b"123456789") == 0xBB3D``."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def frame(body: str) -> bytes:
    """``body`` (ASCII, from the first quote) framed for the wire."""
    data = body.encode("ascii")
    if len(data) > MAX_BODY:
        raise ValueError(f"a DC-09 message is at most {MAX_BODY} bytes, not {len(data)}")
    return LF + f"{crc16(data):04X}{len(data):04X}".encode("ascii") + data + CR


class FrameError(ValueError):
    """Bytes that are not one well-formed DC-09 frame; the message says what is wrong."""


def unframe(data: bytes) -> str:
    """The body of one frame (``data`` without the final CR is accepted); raises
    ``FrameError`` for a missing LF, a CRC or length that does not match, or non-ASCII."""
    if data.endswith(CR):
        data = data[:-1]
    if not data.startswith(LF):
        raise FrameError("no LF at the start of the frame")
    head, body = data[1:9], data[9:]
    try:
        crc, length = int(head[:4], 16), int(head[4:], 16)
        text = body.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise FrameError("the CRC and length are not hex, or the body is not ASCII") from None
    if len(head) < 8 or length != len(body):
        raise FrameError(f"the length says {length} bytes, the body has {len(body)}")
    if crc != crc16(body):
        raise FrameError(f"the CRC says {crc:04X}, the body's is {crc16(body):04X}")
    return text


def timestamp(at: float | None = None) -> str:
    """``_HH:MM:SS,MM-DD-YYYY`` in UTC for Unix time ``at`` (now by default)."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return "_" + moment.strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> float | None:
    """Unix time of a ``_HH:MM:SS,MM-DD-YYYY`` (the ``_`` optional) in UTC; None if it is not
    one."""
    text = text.removeprefix("_")
    if len(text) != 19:
        return None
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
