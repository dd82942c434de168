"""The DC-09 format, checked against published vectors and against pysiaalarm's own parser:
the CRC, the length, the timestamp, the ADM-CID and NULL messages, AES, and the replies."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from dc09_kit import KEY, OTHER_KEY
from hypothesis import given
from hypothesis import strategies as st
from pysiaalarm import SIAAccount, SIAEvent

from commune.dc09 import cipher
from commune.dc09.frame import FrameError, crc16, frame, parse_timestamp, timestamp, unframe
from commune.dc09.messages import ContactId, Route, adm_cid, null
from commune.dc09.replies import ACK, BAD, DUH, NAK, SILENT, UNDECRYPTABLE, judge

AT = datetime(2025, 9, 25, 14, 12, 4, tzinfo=UTC).timestamp()
ROUTE = Route("1", "2")
# An encrypted link test from pysiaalarm's tests (case_null), made with the key of its
# encrypted_config.json, "AAAAAAAAAAAAAAAA": a whole frame, CRC and length included.
ENCRYPTED_NULL = (
    b'\n76D80055"*NULL"0000R0L0#AAAB[B4BC8B40D0E6D959D6BEA78E88CC0B2155741A3C44FBB96D476A3E557CAD'
    b"64D9\r"
)
PANIC = ContactId(1, 120, 1, 3)


@pytest.mark.parametrize(
    ("body", "crc"),
    [
        # The check value of CRC-16/ARC (the catalogue of parametrised CRC algorithms).
        ("123456789", 0xBB3D),
        # Frames from pysiaalarm's tests (tests/test_sia_package_cases.py: case_cl, case_null,
        # case_encrypted).
        ('"SIA-DCS"6002L0#AAA[|Nri1/CL501]_14:12:04,09-25-2019', 0xE5D5),
        (ENCRYPTED_NULL[9:-1].decode(), 0x76D8),
        (
            '"*SIA-DCS"5994L0#AAA[5AB718E008C616BF16F6468033A11326B0F7546CAB230910BCA10E4DEBA42283'
            "C436E4F8EFF50931070DDE36D5BB5F0C",
            0x60AB,
        ),
        # Frames from an independent Rust implementation (fioletoven/dc09, message.tests.rs).
        ('"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]', 0xF4D2),
        ('"SIA-DCS"0001L0#1234[]', 0x96ED),
        ('"NAK"0000R0L0A0[]_16:20:01,09-24-2025', 0xE441),
    ],
)
def test_the_crc_is_crc16_arc_as_published_implementations_compute_it(body: str, crc: int) -> None:
    assert crc16(body.encode("ascii")) == crc


@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300))
def test_the_crc_agrees_with_pysiaalarms_own_on_any_text(body: str) -> None:
    assert f"{crc16(body.encode('ascii')):04X}" == SIAEvent._crc_calc(body)


def test_a_frame_is_lf_crc_length_body_cr() -> None:
    wire = frame('"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]')
    assert wire == b'\nF4D20029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r'
    assert unframe(wire) == '"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]'


@pytest.mark.parametrize(
    "wire",
    [
        b'F4D20029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r',  # no LF
        b'\nF4D20028"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r',  # length off by one
        b'\nF4D30029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r',  # CRC off by one
        b'\nZZZZ0029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r',  # not hex
        b"\n\xff\xfe\r",
        b"\n\r",
    ],
)
def test_a_damaged_frame_is_refused_with_the_reason(wire: bytes) -> None:
    with pytest.raises(FrameError):
        unframe(wire)


def test_a_body_longer_than_the_length_field_holds_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 4095"):
        frame('"ADM-CID"' + "0" * 4096)


def test_the_timestamp_is_utc_hh_mm_ss_comma_mm_dd_yyyy() -> None:
    assert timestamp(AT) == "_14:12:04,09-25-2025"
    assert parse_timestamp("_14:12:04,09-25-2025") == AT
    assert parse_timestamp("14:12:04,09-25-2025") == AT
    for bad in ("_25:00:00,09-25-2025", "_14:12:04,13-25-2025", "_14:12:04,09-25-25", ""):
        assert parse_timestamp(bad) is None


def test_an_event_message_is_adm_cid_with_its_contact_id() -> None:
    message = adm_cid(42, ROUTE, "1234", PANIC, at=AT)
    body = '"ADM-CID"0042R1L2#1234[#1234|1120 01 003]_14:12:04,09-25-2025'
    assert message.wire == frame(body)
    assert message.wire[5:9] == f"{len(body):04X}".encode()
    assert (message.token, message.sequence, message.account, message.encrypted) == (
        "ADM-CID",
        42,
        "1234",
        False,
    )


def test_without_a_receiver_number_the_r_field_is_left_out() -> None:
    message = adm_cid(7, Route(None, "0"), "ABC", ContactId(3, 137, 1, 0), at=AT)
    assert unframe(message.wire) == '"ADM-CID"0007L0#ABC[#ABC|3137 01 000]_14:12:04,09-25-2025'


def test_pysiaalarm_reads_our_event_message_as_we_meant_it() -> None:
    message = adm_cid(9999, ROUTE, "5678", ContactId(3, 110, 1, 12), at=AT)
    line = message.wire.decode("ascii").strip()
    event = SIAEvent.from_line(line, {"5678": SIAAccount("5678", None)})
    assert event.valid_message  # its CRC matches
    assert (event.sequence, event.receiver, event.line, event.account) == (
        "9999",
        "R1",
        "L2",
        "5678",
    )
    assert (event.event_qualifier, event.event_type, event.partition, event.ri) == (
        "3",
        "110",
        "01",
        "012",
    )
    assert event.code == "FH"  # pysiaalarm's SIA code for a fire restore
    assert event.timestamp == datetime.fromtimestamp(AT, UTC)


def test_pysiaalarm_decrypts_our_encrypted_message() -> None:
    message = adm_cid(1, ROUTE, "1234", PANIC, KEY.encode(), at=AT)
    line = message.wire.decode("ascii").strip()
    assert line[8:].startswith('"*ADM-CID"0001R1L2#1234[')
    event = SIAEvent.from_line(line, {"1234": SIAAccount("1234", KEY)})
    assert event.valid_message and event.encrypted
    assert (event.event_qualifier, event.event_type, event.partition, event.ri) == (
        "1",
        "120",
        "01",
        "003",
    )
    assert event.code == "PA"


@pytest.mark.parametrize(
    "key", ["0123456789ABCDEF", "0123456789ABCDEF01234567", "0123456789ABCDEF" * 2]
)
def test_every_aes_key_size_round_trips_and_the_null_is_encrypted_too(key: str) -> None:
    message = null(ROUTE, "1234", key.encode(), at=AT)
    line = message.wire.decode("ascii").strip()
    assert '"*NULL"0000R1L2#1234[' in line
    event = SIAEvent.from_line(line, {"1234": SIAAccount("1234", key)})
    assert event.valid_message and event.code == "RP"  # pysiaalarm: a link test is a test report


def test_the_null_link_test_unencrypted() -> None:
    assert unframe(null(ROUTE, "0000", at=AT).wire) == '"NULL"0000R1L2#0000[]_14:12:04,09-25-2025'


def test_encryption_pads_in_front_to_whole_blocks_with_characters_that_are_not_separators() -> None:
    for length in range(0, 70):
        text = "x" * length
        padded = cipher.pad(text)
        assert len(padded) % 16 == 0 and padded.endswith("|" + text)
        assert 1 <= len(padded) - len(text) - 1 <= 16
        assert not re.search(r"[\[\]|]", padded[: -len(text) - 1])
        plain = cipher.decrypt(KEY.encode(), cipher.encrypt(KEY.encode(), text))
        assert plain is not None and len(plain) == len(padded) and plain.endswith("|" + text)


def test_two_encryptions_of_the_same_event_differ() -> None:
    first = adm_cid(5, ROUTE, "1234", PANIC, KEY.encode(), at=AT).wire
    second = adm_cid(5, ROUTE, "1234", PANIC, KEY.encode(), at=AT).wire
    assert first != second  # the pad is random


def test_pysiaalarms_encrypted_null_unframes_and_decrypts_to_its_content() -> None:
    body = unframe(ENCRYPTED_NULL)
    hex_text = body.split("[", 1)[1]
    assert cipher.decrypt(b"AAAAAAAAAAAAAAAA", hex_text) == "ppppppppppp]_18:24:52,07-05-2020"
    assert cipher.decrypt(b"BAAAAAAAAAAAAAAA", hex_text) is None  # another key: noise


def test_decrypting_garbage_gives_none_never_an_exception() -> None:
    for bad in ("", "ZZ", "ABC", "00" * 15, "00" * 17):
        assert cipher.decrypt(KEY.encode(), bad) is None
    with pytest.raises(ValueError, match="16, 24 or 32"):
        cipher.encrypt(b"short", "x")


# -- replies ----------------------------------------------------------------------------------


def reply_of_pysiaalarm(message_wire: bytes, key: str | None) -> bytes:
    """What pysiaalarm's receiver answers to ``message_wire`` (its own code builds the reply)."""
    line = message_wire.decode("ascii").strip()
    event = SIAEvent.from_line(line, {"1234": SIAAccount("1234", key)})
    return event.create_response()


def test_pysiaalarms_ack_is_a_delivery() -> None:
    message = adm_cid(42, ROUTE, "1234", PANIC)
    reply = reply_of_pysiaalarm(message.wire, None)
    assert reply == frame('"ACK"0042R1L2#1234[]')
    assert judge(message, reply, None).outcome == ACK


def test_pysiaalarms_encrypted_ack_is_a_delivery_only_with_the_right_key() -> None:
    message = adm_cid(42, ROUTE, "1234", PANIC, KEY.encode())
    reply = reply_of_pysiaalarm(message.wire, KEY)
    assert b'"*ACK"0042R1L2#1234[' in reply
    assert judge(message, reply, KEY.encode()).delivered
    verdict = judge(message, reply, OTHER_KEY.encode())
    assert verdict.outcome == UNDECRYPTABLE and not verdict.delivered


def test_the_standards_padded_encrypted_ack_is_accepted_too() -> None:
    message = adm_cid(42, ROUTE, "1234", PANIC, KEY.encode())
    body = '"*ACK"0042R1L2#1234[' + cipher.encrypt(KEY.encode(), "]" + timestamp())
    assert judge(message, frame(body), KEY.encode()).delivered


def test_an_encrypted_ack_from_long_ago_is_not_a_delivery() -> None:
    message = adm_cid(42, ROUTE, "1234", PANIC, KEY.encode())
    body = '"*ACK"0042R1L2#1234[' + cipher.encrypt(KEY.encode(), "]" + timestamp(AT))
    assert judge(message, frame(body), KEY.encode()).outcome == BAD


def test_an_unencrypted_ack_to_an_encrypted_message_is_not_a_delivery() -> None:
    message = adm_cid(42, ROUTE, "1234", PANIC, KEY.encode())
    assert judge(message, frame('"ACK"0042R1L2#1234[]'), KEY.encode()).outcome == BAD


def test_pysiaalarms_nak_to_a_wrong_key_is_a_nak_with_its_clock() -> None:
    message = adm_cid(42, ROUTE, "1234", PANIC, KEY.encode())
    reply = reply_of_pysiaalarm_nak(message.wire)
    verdict = judge(message, reply, KEY.encode())
    assert verdict.outcome == NAK and not verdict.delivered
    assert verdict.skew_s is not None and abs(verdict.skew_s) < 60


def reply_of_pysiaalarm_nak(wire: bytes) -> bytes:
    """pysiaalarm's receiver with another key: its parser fails, and it answers a NAK."""
    from pysiaalarm.base_server import BaseSIAServer
    from pysiaalarm.utils import Counter

    class Server(BaseSIAServer):
        pass

    server = Server({"1234": SIAAccount("1234", OTHER_KEY)}, Counter())
    event = server.parse_and_check_event(wire)
    assert event is not None
    return event.create_response()


def test_a_nak_tells_how_far_the_receivers_clock_is() -> None:
    message = adm_cid(42, ROUTE, "1234", PANIC)
    nak = frame('"NAK"0000R0L0A0[]' + timestamp(AT + 125))
    assert judge(message, nak, None, now=AT).skew_s == 125


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (b"", SILENT),
        (b"\n\r", BAD),  # pysiaalarm's answer to a CRC error
        (b"\x00\xff garbage \r", BAD),
        (frame('"ACK"0041R1L2#1234[]'), BAD),  # another sequence
        (frame('"ACK"0042R1L2#9999[]'), BAD),  # another account
        (frame('"*ACK"0042R1L2#1234[00]'), BAD),  # encrypted, to a plain message
        (frame('"OK"0042R1L2#1234[]'), BAD),
        (frame('"DUH"0042R1L2#1234[]'), DUH),
        (frame('"DUH"0041R1L2#1234[]'), BAD),
        (frame('"NAK"0000R0L0A0[]'), NAK),
        (b'"NAK"', NAK),  # pysiaalarm, when it knows no such account
        (b'"ACK"', BAD),  # unframed: it proves nothing
        (b'\nFFFF0014"ACK"0042R1L2#1234[]\r', BAD),  # bad CRC
        (b"A" * 2000, BAD),
    ],
)
def test_anything_but_the_matching_ack_is_not_a_delivery(reply: bytes, outcome: str) -> None:
    verdict = judge(adm_cid(42, ROUTE, "1234", PANIC), reply, None)
    assert verdict.outcome == outcome
    assert not verdict.delivered
