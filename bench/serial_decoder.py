"""Serial frame decoding: firmware_py/codec.py's Decoder against a bare split-and-CRC loop.

The stream is what a busy bus carries: ALARM, RESTORE and HEARTBEAT frames from 8 nodes and
the hub's ACKs, in turn. The bare baselines do the least any receiver must, as a floor of work:
``stream.split(b"\\0")`` and a CRC-16 over every chunk, either with the codec's own table CRC
(pure Python, the CRC the decoder runs) or with ``binascii.crc_hqx`` (C). They do no COBS
decoding (so their CRC, over the stuffed bytes, never matches), no field checks, build no frame
objects and keep no state across reads; the decoder does all of that. The decoder is
fed the stream in one piece, in 64-byte reads (a busy port), one frame's worth per read, and a
byte at a time (the worst case: a read per byte); and the stream with bit errors (1e-3), whose
good frames alone are counted. Each case runs in turn, several rounds, and its median is kept.
The line's own rate at 115200 baud (10 bits a byte) gives the headroom: how many saturated
115200-baud buses one hub core could decode.
"""

from __future__ import annotations

import binascii
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import common
from firmware_py import codec

BAUD = 115_200
ROUNDS = 5
NODES = 8


def bus_stream(frames: int) -> bytes:
    """``frames`` frames as a busy bus carries them (a quarter each: alarm, restore, heartbeat,
    ACK), back to back."""
    out = []
    for i in range(frames):
        node, seq = 1 + i % NODES, (i * 7) & 0xFFFF
        kind = i % 4
        if kind == 0:
            out.append(
                codec.encode(codec.ALARM, node, 0x5A, seq, codec.alarm_payload(codec.SMOKE, i))
            )
        elif kind == 1:
            out.append(
                codec.encode(codec.RESTORE, node, 0x5A, seq, codec.alarm_payload(codec.SMOKE, 9))
            )
        elif kind == 2:
            payload = codec.heartbeat_payload(3900, 0, i & 0xFFFF, 30)
            out.append(codec.encode(codec.HEARTBEAT, node, 0x5A, seq, payload))
        else:
            out.append(codec.encode(codec.ACK, node, 0x5A, seq))
    return b"".join(out)


def with_bit_errors(stream: bytes, ber: float, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    out = bytearray(stream)
    for _ in range(round(len(out) * 8 * ber)):
        pos = rng.randrange(len(out) * 8)
        out[pos >> 3] ^= 0x80 >> (pos & 7)
    return bytes(out)


def bare_python(stream: bytes) -> int:
    good = 0
    crc16 = codec.crc16
    for chunk in stream.split(b"\x00"):
        if chunk and crc16(chunk[:-2]) == (chunk[-2] << 8 | chunk[-1]):
            good += 1
    return good


def bare_c(stream: bytes) -> int:
    good = 0
    crc = binascii.crc_hqx
    for chunk in stream.split(b"\x00"):
        if chunk and crc(chunk[:-2], 0xFFFF) == (chunk[-2] << 8 | chunk[-1]):
            good += 1
    return good


def decoder(piece: int) -> Callable[[bytes], int]:
    def run(stream: bytes) -> int:
        dec = codec.Decoder()
        if piece >= len(stream):
            return len(dec.feed(stream))
        found = 0
        for i in range(0, len(stream), piece):
            found += len(dec.feed(stream[i : i + piece]))
        return found

    return run


def timed(fn: Callable[[bytes], int], stream: bytes) -> tuple[float, int]:
    t0 = time.perf_counter()
    found = fn(stream)
    return time.perf_counter() - t0, found


def main(argv: list[str] | None = None) -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    frames = 20_000 if args.quick else 100_000
    stream = bus_stream(frames)
    noisy = with_bit_errors(stream, 1e-3)
    mean_frame = len(stream) / frames
    line_fps = BAUD / 10 / mean_frame  # frames a second a saturated line carries
    frame_piece = round(mean_frame)
    tenth = bus_stream(frames // 10)  # a byte at a time is slow: a tenth of the stream
    cases: list[tuple[str, Callable[[bytes], int], bytes, int]] = [
        ("bare: split + codec.crc16 (Python)", bare_python, stream, frames),
        ("bare: split + binascii.crc_hqx (C)", bare_c, stream, frames),
        ("Decoder, the stream in one feed", decoder(len(stream)), stream, frames),
        ("Decoder, 64-byte feeds", decoder(64), stream, frames),
        (
            f"Decoder, {frame_piece}-byte feeds (a frame each)",
            decoder(frame_piece),
            stream,
            frames,
        ),
        ("Decoder, 1-byte feeds", decoder(1), tenth, frames // 10),
        ("Decoder, 64-byte feeds, BER 1e-3", decoder(64), noisy, frames),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _, _ in cases}
    found: dict[str, int] = {}
    for _ in range(ROUNDS):
        for name, fn, data, _ in cases:
            seconds, n = timed(fn, data)
            times[name].append(seconds)
            found[name] = n
    rows: list[dict[str, Any]] = []
    bare_py = bare_c_fps = 0.0
    for name, _, data, frames_in in cases:
        seconds = statistics.median(times[name])
        fps = frames_in / seconds
        if name.startswith("bare: split + codec"):
            bare_py = fps
        elif name.startswith("bare: split + binascii"):
            bare_c_fps = fps
        rows.append(
            {
                "case": name,
                "frames": frames_in,
                "good_frames": found[name],
                "frames_per_s": round(fps),
                "mb_per_s": round(len(data) / seconds / 1e6, 2),
                "vs_bare_python": 0.0,
                "vs_bare_c": 0.0,
                "x_line_115200": round(fps / line_fps, 1),
            }
        )
    for r in rows:
        r["vs_bare_python"] = common.ratio(r["frames_per_s"], bare_py)
        r["vs_bare_c"] = common.ratio(r["frames_per_s"], bare_c_fps)
    common.table(
        f"Frames decoded per second ({frames:,} frames, {len(stream):,} bytes, "
        f"{mean_frame:.1f} bytes a frame; median of {ROUNDS} rounds)",
        ["case", "frames/s", "MB/s", "/ bare Py", "/ bare C", "x 115200 line", "good"],
        [
            [
                r["case"],
                r["frames_per_s"],
                r["mb_per_s"],
                r["vs_bare_python"],
                r["vs_bare_c"],
                r["x_line_115200"],
                r["good_frames"] if r["case"].startswith("Decoder") else "-",
            ]
            for r in rows
        ],
    )
    print(
        f"a saturated 115200-baud line carries {line_fps:,.0f} of these frames a second; "
        "'x 115200 line' is how many such lines the case keeps up with on one core. "
        "'good': frames decoded (with bit errors, those that survived). The bare loops are a "
        "floor of work, not receivers: the CRC covers the body before COBS stuffing, so over "
        "the stuffed chunks it never matches."
    )
    common.report(
        "serial_decoder",
        args,
        {
            "frames": frames,
            "bytes": len(stream),
            "mean_frame_bytes": round(mean_frame, 2),
            "line_frames_per_s_115200": round(line_fps),
            "rounds": ROUNDS,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
