"""Hostile and malformed commands on cmd/<name>: each refused and counted, the siren untouched,
and the genuine command after them still runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core.safe_json import loads_untrusted, nesting_depth
from core.topics import HubTopics
from gateway.inbound import parse_receiver_status
from testkit.hubs import COMMUNE, HUB, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
SILENCE = f"{TOPICS.base}/cmd/silence"
HOSTILE = {
    "ts NaN": b'{"request_id": "x", "ts": NaN}',
    "ts Infinity": b'{"ts": Infinity}',
    "ts -Infinity": b'{"ts": -Infinity}',
    "ts 1e400": b'{"ts": 1e400}',
    "ts of 400 digits": b'{"ts": ' + b"9" * 400 + b"}",
    "ts a string": b'{"ts": "now"}',
    "ts true": b'{"ts": true}',
    "nested 100,000 levels": b"[" * 100_000 + b"]" * 100_000,
    "nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "not JSON": b"\xff\xfe silence!",
    "a list": b"[1, 2]",
    "1 MB": b'{"pad": "' + b"x" * 1_000_000 + b'"}',
}


def test_hostile_commands_are_refused_counted_and_the_siren_keeps_sounding(
    mosquitto, tmp_path: Path
) -> None:
    with (
        Subscriber(mosquitto, TOPICS.cmd_result) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub,
    ):
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        for payload in HOSTILE.values():
            sub.publish(SILENCE, payload)
        wait_until(lambda: hub.hub.malformed_commands >= len(HOSTILE), what="every one counted")
        assert hub.hub.malformed_commands == len(HOSTILE)
        assert hub.board.outputs()["siren"] is True
        # The genuine command after them is carried out.
        sub.publish(SILENCE, json.dumps({"request_id": "real", "ts": time.time()}))
        answers = sub.wait_until(lambda ms: any(m.json()["request_id"] == "real" for m in ms))
        assert hub.board.outputs()["siren"] is False
    real = next(m.json() for m in answers if m.json()["request_id"] == "real")
    assert real["ok"] is True and real["silenced"] == ["siren"]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_untrusted_parser_refuses_with_a_value_error(name: str) -> None:
    if name in ("ts a string", "ts true", "a list"):
        loads_untrusted(HOSTILE[name], max_bytes=16_384)  # valid JSON; the command refuses it
        return
    with pytest.raises(ValueError):
        loads_untrusted(HOSTILE[name], max_bytes=16_384)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert nesting_depth('{"a": "[[[[{{{{", "b": [1, {"c": "]]]\\"[["}]}', 5) == 3
    assert loads_untrusted('{"a": "' + "[" * 1000 + '"}', max_bytes=4096) == {"a": "[" * 1000}


def test_a_remote_silence_is_answered_and_recorded_once_with_who_sent_it(
    mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        Subscriber(mosquitto, f"{TOPICS.base}/event/silenced") as events,
        Subscriber(mosquitto, TOPICS.cmd_result) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub,
    ):
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        caplog.clear()
        sub.publish(
            SILENCE, json.dumps({"request_id": "one", "by": "officer-7", "ts": time.time()})
        )
        [answer] = [m.json() for m in sub.wait_for(1)]
        [event] = [m.json() for m in events.wait_for(1)]
        assert hub.board.outputs()["siren"] is False
        hub.hub.dispatcher.call(lambda o: None).result(5)  # everything queued is published
    assert answer["silenced"] == ["siren"] and event["data"] == {"by": "officer-7"}
    assert len(events.messages) == 1
    silenced = [r.getMessage() for r in caplog.records if "silenced (" in r.getMessage()]
    assert silenced[:1] == ["output siren silenced (remote command by officer-7)"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"state":"online","session_present":true}', ("online", True)),
        (b'{"state":"online"}', ("online", False)),  # an older receiver: hubs re-send
        (b'{"state":"online","session_present":"true"}', ("online", False)),
        (b'{"state":"online","session_present":1}', ("online", False)),
        (b'{"state":"online","session_present":1e30}', ("online", False)),
        (b'{"state":"online","session_present":[[[true]]]}', ("online", False)),
    ],
)
def test_a_receiver_status_kept_session_is_only_a_json_true(
    payload: bytes, expected: tuple[str, bool]
) -> None:
    # Anything but true re-sends: the safe side, as a re-send costs duplicates, never events.
    assert parse_receiver_status(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000 + b"]" * 100_000, b'{"state":NaN}', b"x" * 10_000, b'{"state":7}', b"\xff"],
)
def test_a_hostile_receiver_status_is_refused_with_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_receiver_status(payload)
