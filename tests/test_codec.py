"""The sensor bus frame codec (firmware_py/codec.py): round trips, known answers, and what the
decoder does with garbage, noise, corruption and arbitrary splits.

The decoder is checked against an independent reference parser written here (binascii's
CRC-CCITT, a separate COBS decoder), so "the decoder yields exactly the frames the reference
finds" holds for every input, however random. On top of that:

- random garbage yields no frame: garbage that the reference finds a valid frame in is
  discarded by `assume`, so the test is exact. (Such garbage is rare: a chunk between two 0x00
  must decode to a body whose CRC-16 matches (1 in 65,536), whose version byte is 1 (1 in 256),
  whose type is known (6 in 256) and whose length fits that type: about 4e-10 per chunk.)
- a corrupted frame never turns into a different frame. This is a probabilistic guarantee (a
  corruption that rearranges the body passes the CRC-16 with probability 2**-16 and the header
  checks far less often: none of 2,000,000 random corruptions did when this was written), so
  these property tests run with derandomize=True: the same examples on every run, no flaky
  failure in CI, and exhaustive deterministic tests of every single-bit flip, deletion and
  truncation of a set of frames back them up.
"""

from __future__ import annotations

import binascii
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firmware_py import codec

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STABLE = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

Fields = tuple[int, int, int, int, bytes]


# -- an independent reference ------------------------------------------------------------------


def ref_crc(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)  # CRC-CCITT, init 0xFFFF: CRC-16/CCITT-FALSE


def ref_cobs_decode(block: bytes) -> bytes | None:
    out = bytearray()
    pos = 0
    while pos < len(block):
        code = block[pos]
        if code == 0 or pos + code > len(block):
            return None
        out += block[pos + 1 : pos + code]
        pos += code
        if code < 0xFF and pos < len(block):
            out.append(0)
    return bytes(out)


def ref_body(body: bytes) -> Fields | None:
    if not codec.MIN_BODY <= len(body) <= codec.MAX_BODY:
        return None
    if ref_crc(body[:-2]) != int.from_bytes(body[-2:], "big"):
        return None
    version, mtype = body[0], body[1]
    payload = body[7:-2]
    if version != 1 or codec.PAYLOAD_LEN.get(mtype) != len(payload):
        return None
    return (
        mtype,
        int.from_bytes(body[2:4], "big"),
        body[4],
        int.from_bytes(body[5:7], "big"),
        payload,
    )


def reference_frames(stream: bytes) -> list[Fields]:
    """Every valid frame in a byte stream: each run of bytes ended by a 0x00 is one candidate
    (the last run, with no 0x00 after it yet, is not)."""
    found = []
    for chunk in stream.split(b"\x00")[:-1]:
        if not chunk:
            continue
        body = ref_cobs_decode(chunk)
        fields = ref_body(body) if body is not None else None
        if fields is not None:
            found.append(fields)
    return found


def feed_in_pieces(stream: bytes, cuts: list[int]) -> tuple[list[Fields], codec.Decoder]:
    decoder = codec.Decoder()
    out: list[Fields] = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in zip(points, points[1:], strict=False):
        out += [f.as_tuple() for f in decoder.feed(stream[a:b])]
        assert len(decoder.buf) <= codec.MAX_ENCODED, "a partial frame never outgrows a frame"
    return out, decoder


# -- strategies --------------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)


def _fit(fields: tuple[int, int, int, int, bytes]) -> Fields:
    mtype, node, boot, seq, payload = fields
    return (mtype, node, boot, seq, payload[: codec.PAYLOAD_LEN[mtype]])


# Any message of a known type with the payload length its type has. (Hypothesis leans towards
# boundary values by itself: 0x00 and 0xFF bytes, 0 and 0xFFFF fields.)
messages = st.tuples(
    st.sampled_from(sorted(codec.PAYLOAD_LEN)),
    u16,
    st.integers(0, 0xFF),
    u16,
    st.binary(min_size=max(codec.PAYLOAD_LEN.values()), max_size=max(codec.PAYLOAD_LEN.values())),
).map(_fit)


def frame_of(m: Fields) -> bytes:
    return codec.encode(*m)


garbage = st.one_of(
    st.binary(max_size=120),
    st.lists(st.sampled_from([0, 1, 2, 0xFF, 0x03, 0x05]), max_size=80).map(bytes),
    st.integers(40, 300).map(lambda n: b"\x07" * n),  # a run too long for any frame
)
cut_points = st.lists(st.integers(0, 10_000), max_size=12)


# -- known answers -----------------------------------------------------------------------------


def test_crc16_known_answer() -> None:
    assert codec.crc16(b"123456789") == 0x29B1
    assert codec.crc16(b"") == 0xFFFF


@FAST
@given(st.binary(max_size=300))
def test_crc16_agrees_with_binascii_crc_hqx(data: bytes) -> None:
    assert codec.crc16(data) == ref_crc(data)
    # incremental use: crc of a+b == crc of b continued from crc of a
    half = len(data) // 2
    assert codec.crc16(data[half:], codec.crc16(data[:half])) == codec.crc16(data)


# COBS vectors (Cheshire and Baker's examples, delimiters left off)
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    # 254 non-zero bytes fill one block exactly; the encoder then closes an empty block
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
    # 255 non-zero bytes: a full block, then a block of one
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    # a full block followed by a zero
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    # 253 non-zero bytes, a zero, one more
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize(("raw", "encoded"), COBS_VECTORS, ids=range(len(COBS_VECTORS)))
def test_cobs_known_vectors(raw: bytes, encoded: bytes) -> None:
    assert codec.cobs_encode(raw) == encoded
    assert codec.cobs_decode(encoded) == raw


@pytest.mark.parametrize("n", [253, 254, 255, 256, 508, 509, 1000])
def test_cobs_long_nonzero_runs(n: int) -> None:
    raw = bytes((i % 255) + 1 for i in range(n))
    enc = codec.cobs_encode(raw)
    assert b"\x00" not in enc
    assert len(enc) <= n + n // 254 + 1
    assert codec.cobs_decode(enc) == raw
    assert ref_cobs_decode(enc) == raw


def test_cobs_decode_accepts_a_full_final_block_without_the_empty_one() -> None:
    # Other encoders leave off the empty block after a final 0xFF block; both forms decode.
    assert codec.cobs_decode(b"\xff" + bytes(range(1, 255))) == bytes(range(1, 255))


@pytest.mark.parametrize("bad", [b"\x00", b"\x03\x01", b"\x02", b"\x05\x01\x02\x03", b"\x01\x00"])
def test_cobs_decode_rejects_invalid_blocks(bad: bytes) -> None:
    assert codec.cobs_decode(bad) is None


@FAST
@given(st.binary(max_size=1200))
def test_cobs_round_trip(data: bytes) -> None:
    enc = codec.cobs_encode(data)
    assert b"\x00" not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert codec.cobs_decode(enc) == data
    assert ref_cobs_decode(enc) == data


# -- frames ------------------------------------------------------------------------------------


@FAST
@given(messages)
def test_frame_round_trip_for_every_message_type(m: Fields) -> None:
    frame = frame_of(m)
    assert frame[0] == 0 and frame[-1] == 0 and b"\x00" not in frame[1:-1]
    assert len(frame) <= codec.MAX_ENCODED + 2
    [decoded] = codec.Decoder().feed(frame)
    assert decoded.as_tuple() == m
    assert decoded.key() == (m[1], m[2], m[3])
    assert decoded == codec.Frame(*m) and hash(decoded) == hash(codec.Frame(*m))
    body = codec.cobs_decode(frame[1:-1])
    assert body == codec.encode_body(*m)
    assert ref_body(body) == m
    assert len(body) == codec.HEADER_LEN + len(m[4]) + 2


@FAST
@given(st.lists(messages, min_size=1, max_size=12), cut_points)
def test_back_to_back_frames_split_anywhere_all_decode_in_order(
    ms: list[Fields], cuts: list[int]
) -> None:
    stream = b"".join(frame_of(m) for m in ms)
    out, decoder = feed_in_pieces(stream, cuts)
    assert out == ms
    assert decoder.bad_frames() == 0 and decoder.frames == len(ms)


def test_one_byte_at_a_time() -> None:
    ms = [(codec.ALARM, 7, 9, i, bytes([codec.SMOKE, 0, i & 0xFF])) for i in range(300)]
    stream = b"".join(frame_of(m) for m in ms)
    decoder = codec.Decoder()
    out = []
    for i in range(len(stream)):
        out += [f.as_tuple() for f in decoder.feed(stream[i : i + 1])]
    assert out == ms


def test_frames_sharing_one_delimiter_decode() -> None:
    # A sender may leave off the leading 0x00 when its previous frame's trailing one is there.
    a = frame_of((codec.ACK, 1, 2, 3, b""))
    b = frame_of((codec.TAMPER, 4, 5, 6, b""))
    out = codec.Decoder().feed(a + b[1:])
    assert [f.as_tuple() for f in out] == [(codec.ACK, 1, 2, 3, b""), (codec.TAMPER, 4, 5, 6, b"")]


def test_encode_refuses_a_payload_longer_than_the_maximum() -> None:
    codec.encode_body(codec.ALARM, 1, 1, 1, bytes(codec.MAX_PAYLOAD))
    with pytest.raises(ValueError):
        codec.encode(codec.ALARM, 1, 1, 1, bytes(codec.MAX_PAYLOAD + 1))


def _wrap(body: bytes) -> bytes:
    return b"\x00" + codec.cobs_encode(body) + b"\x00"


def _with_crc(body: bytes) -> bytes:
    return body + codec.u16(codec.crc16(body))


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (_wrap(b"\x01\x05\x00"), "short"),
        (_wrap(_with_crc(bytes(codec.MAX_BODY - 1))), "long"),
        (b"\x00" + b"\x07" * 500 + b"\x00", "long"),
        (_wrap(codec.encode_body(codec.ACK, 1, 2, 3)[:-1] + b"\x00"), "crc"),
        (_wrap(_with_crc(b"\x02\x06\x00\x01\x02\x00\x03")), "version"),
        (_wrap(_with_crc(b"\x01\x66\x00\x01\x02\x00\x03")), "type"),
        (_wrap(_with_crc(b"\x01\x01\x00\x01\x02\x00\x03\x01")), "length"),
        (b"\x00\x05\x01\x02\x00", "cobs"),
    ],
)
def test_decoder_counts_each_kind_of_bad_frame(wire: bytes, reason: str) -> None:
    decoder = codec.Decoder()
    assert decoder.feed(wire) == []
    assert decoder.errors == {reason: 1}
    # and it is ready for the next frame at once
    assert len(decoder.feed(frame_of((codec.ACK, 1, 2, 3, b"")))) == 1


@pytest.mark.parametrize("burst", [codec.MAX_ENCODED + 1, 100, 1000, 5000])
@pytest.mark.parametrize("piece", [1, 2, 3, 5, 7, 40])
def test_no_stuck_state_after_an_overflow(burst: int, piece: int) -> None:
    """A noise burst longer than any frame (no 0x00 in it), fed in pieces, then a valid frame
    split across several feeds: the frame decodes, and the burst counts once as too long."""
    noise = bytes(1 + (i * 37) % 255 for i in range(burst))
    m = (codec.ALARM, 7, 9, 300, codec.alarm_payload(codec.SMOKE, 500))
    decoder = codec.Decoder()
    for i in range(0, len(noise), 64):
        assert decoder.feed(noise[i : i + 64]) == []
        assert len(decoder.buf) <= codec.MAX_ENCODED
    wire = frame_of(m)
    out = []
    for i in range(0, len(wire), piece):
        out += [f.as_tuple() for f in decoder.feed(wire[i : i + piece])]
    assert out == [m]
    assert decoder.errors == {"long": 1}
    # and the next frame, in one piece, too
    assert [f.as_tuple() for f in decoder.feed(wire)] == [m]


# -- garbage, noise, splits --------------------------------------------------------------------


@FAST
@given(st.lists(garbage, min_size=1, max_size=6).map(b"".join), cut_points)
def test_random_garbage_yields_no_frame_and_never_raises(data: bytes, cuts: list[int]) -> None:
    assume(reference_frames(data) == [])  # see the module docstring: ~4e-10 per chunk
    out, decoder = feed_in_pieces(data, cuts)
    assert out == []
    assert decoder.frames == 0


@FAST
@given(
    st.lists(st.one_of(messages.map(frame_of), garbage), max_size=12).map(b"".join),
    cut_points,
)
def test_decoder_finds_exactly_what_the_reference_finds(stream: bytes, cuts: list[int]) -> None:
    """Any mix of frames and garbage, split anywhere: the same frames as the reference."""
    out, _ = feed_in_pieces(stream, cuts)
    assert out == reference_frames(stream)


@FAST
@given(st.lists(st.tuples(garbage, messages), min_size=1, max_size=6), garbage, cut_points)
def test_frames_in_noise_are_all_found_in_order(
    parts: list[tuple[bytes, Fields]], tail: bytes, cuts: list[int]
) -> None:
    for noise, _ in parts:
        assume(reference_frames(b"\x00" + noise + b"\x00") == [])
    stream = b"".join(noise + frame_of(m) for noise, m in parts) + tail
    out, _ = feed_in_pieces(stream, cuts)
    assert out == [m for _, m in parts]


# -- corruption --------------------------------------------------------------------------------

NEXT: Fields = (codec.HEARTBEAT, 0x0B0B, 0x0C, 0x0D0D, b"\x0e\x10\x00\x01\x02\x00\x24")


def check_corrupted(original: Fields, corrupted: bytes) -> list[Fields]:
    """Feed a corrupted frame followed by a good one: nothing but the original (when only its
    delimiters were hit) may come out of the corrupted part, and the good frame always does."""
    stream = corrupted + frame_of(NEXT)
    decoder = codec.Decoder()
    out = [f.as_tuple() for f in decoder.feed(stream)]
    assert out == reference_frames(stream)
    assert out[-1:] == [NEXT], "the decoder resynchronised on the next frame"
    assert all(f == original for f in out[:-1]), out
    return out[:-1]


@STABLE
@given(messages, st.lists(st.integers(0, 10_000), min_size=1, max_size=4))
def test_bit_flips_never_yield_a_different_frame(m: Fields, bits: list[int]) -> None:
    frame = bytearray(frame_of(m))
    for bit in bits:
        frame[bit // 8 % len(frame)] ^= 1 << (bit % 8)
    assume(bytes(frame) != frame_of(m))
    check_corrupted(m, bytes(frame))


@STABLE
@given(messages, st.integers(0, 100), st.binary(min_size=1, max_size=4))
def test_insertions_never_yield_a_different_frame(m: Fields, at: int, extra: bytes) -> None:
    frame = frame_of(m)
    at %= len(frame) + 1
    out = check_corrupted(m, frame[:at] + extra + frame[at:])
    if 0 < at < len(frame) and b"\x00" not in extra:
        assert out == [], "bytes inside a frame always spoil it"


@STABLE
@given(messages, st.integers(0, 100), st.integers(1, 4))
def test_deletions_never_yield_a_different_frame(m: Fields, at: int, n: int) -> None:
    frame = frame_of(m)
    at %= len(frame)
    check_corrupted(m, frame[:at] + frame[at + n :])


@STABLE
@given(messages, st.integers(0, 100))
def test_truncations_never_yield_a_different_frame(m: Fields, keep: int) -> None:
    frame = frame_of(m)
    keep %= len(frame)
    out = check_corrupted(m, frame[:keep])
    # Only losing the trailing delimiter (the next frame's leading one stands in) keeps it.
    assert out == ([m] if keep == len(frame) - 1 else [])


def _sample_messages(count: int) -> list[Fields]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        mtype = sorted(codec.PAYLOAD_LEN)[i % len(codec.PAYLOAD_LEN)]
        payload = bytes(
            rng.choice((0, 0xFF, rng.randrange(256))) for _ in range(codec.PAYLOAD_LEN[mtype])
        )
        out.append(
            (mtype, rng.randrange(0x10000), rng.randrange(256), rng.randrange(0x10000), payload)
        )
    return out


def test_every_single_bit_flip_deletion_and_truncation_of_60_frames() -> None:
    """Exhaustive and deterministic: ~7,000 single-bit flips plus every one-byte deletion and
    every truncation; only flips of the delimiters leave the frame readable."""
    survived_flips = 0
    flips = 0
    for m in _sample_messages(60):
        frame = frame_of(m)
        for pos in range(len(frame)):
            for bit in range(8):
                flipped = bytearray(frame)
                flipped[pos] ^= 1 << bit
                out = check_corrupted(m, bytes(flipped))
                flips += 1
                if out:
                    assert pos in (0, len(frame) - 1)
                    survived_flips += 1
            check_corrupted(m, frame[:pos] + frame[pos + 1 :])
            check_corrupted(m, frame[:pos])
    assert flips > 6000
    assert survived_flips < flips // 50


def test_the_worked_example_in_the_protocol_doc() -> None:
    """docs/protocol.md shows these bytes; keep the page and the codec in step."""
    alarm = codec.encode(codec.ALARM, 7, 0x5A, 0x0100, codec.alarm_payload(codec.SMOKE, 3000))
    body = codec.encode_body(codec.ALARM, 7, 0x5A, 0x0100, codec.alarm_payload(codec.SMOKE, 3000))
    ack = codec.encode(codec.ACK, 7, 0x5A, 0x0100)
    assert body.hex(" ").upper() == "01 01 00 07 5A 01 00 01 0B B8 ED C5"
    assert alarm.hex(" ").upper() == "00 03 01 01 04 07 5A 01 06 01 0B B8 ED C5 00"
    assert ack.hex(" ").upper() == "00 03 01 06 04 07 5A 01 03 3F 5D 00"
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    for data in (body, alarm, ack, codec.encode_body(codec.ACK, 7, 0x5A, 0x0100)):
        assert data.hex(" ").upper() in doc
