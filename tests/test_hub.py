"""The whole hub on simulated hardware against a real Mosquitto."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

from core.topics import HubTopics
from testkit.hubs import COMMUNE, EVENTS, HUB, outbox_counts, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
BOUNCE_S = 0.08  # longer than the inputs' 50 ms debounce, so every edge counts


def tap(hub, name: str) -> None:
    """Press and release like a person: each edge after the debounce time of the last."""
    hub.board.press(name)
    time.sleep(BOUNCE_S)
    hub.board.release(name)
    time.sleep(BOUNCE_S)


def test_a_panic_press_gives_exactly_one_panic_event_with_the_contract_fields(
    mosquitto, tmp_path: Path
) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub,
    ):
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        [msg] = sub.wait_for(1)
        assert hub.board.outputs()["siren"] is True
        wait_until(lambda: outbox_counts(hub).get("delivered") == 1, what="PUBACK recorded")
        time.sleep(0.3)  # a duplicate would have arrived by now
        assert len(sub.messages) == 1
    assert msg.topic == TOPICS.event("panic")
    event = msg.json()
    assert uuid.UUID(event["id"]).version == 7
    assert event["hub"] == HUB and event["seq"] == 1
    assert event["kind"] == "panic" and event["cid"] == 120 and event["qualifier"] == "E"
    assert event["priority"] == 0 and event["zone"] == "guard-post"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["ts"])
    assert isinstance(event["clock_synced"], bool)
    assert event["data"] == {"input": "panic-1", "pin": 17}


def test_events_made_while_the_broker_is_down_all_arrive_alarms_first(
    mosquitto, tmp_path: Path
) -> None:
    with sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub:
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        mosquitto.stop()
        wait_until(lambda: not hub.hub.uplink.connected, what="hub offline")
        hub.board.press("tamper-1")  # older, but lower priority than the panics
        for _ in range(3):
            tap(hub, "panic-1")
        # The siren needs no network.
        assert hub.board.outputs()["siren"] is True
        assert outbox_counts(hub)["pending"] == 4
        mosquitto.start()
        with Subscriber(mosquitto, EVENTS) as sub:  # subscribed before the hub's backoff ends
            msgs = sub.wait_for(4, timeout=30)
            time.sleep(0.3)
            assert len(sub.messages) == 4
    kinds = [m.json()["kind"] for m in msgs]
    assert kinds == ["panic", "panic", "panic", "tamper"]
    assert sorted(m.json()["seq"] for m in msgs) == [1, 2, 3, 4]


def test_tamper_reports_and_restores(mosquitto, tmp_path: Path) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub,
    ):
        tap(hub, "tamper-1")
        a, b = sub.wait_for(2)
    assert (a.json()["cid"], a.json()["qualifier"]) == (137, "E")
    assert (b.json()["cid"], b.json()["qualifier"]) == (137, "R")


def test_a_long_press_adds_a_duress_report(mosquitto, tmp_path: Path) -> None:
    # The default simulated panic button reports duress when held 3 s.
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub,
    ):
        hub.board.hold("panic-1", 3.5)
        msgs = sub.wait_for(2, timeout=10)
    assert [(m.json()["kind"], m.json()["cid"]) for m in msgs] == [("panic", 120), ("duress", 121)]


def test_local_silence_input_stops_the_siren_and_is_reported(mosquitto, tmp_path: Path) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub,
    ):
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        assert hub.board.outputs()["siren"] is True
        hub.board.press("silence-1")
        assert hub.board.outputs()["siren"] is False
        msgs = sub.wait_for(2)
    assert [m.json()["kind"] for m in msgs] == ["panic", "silenced"]
    assert msgs[1].json()["cid"] == 406


def test_siren_turns_off_after_its_time(mosquitto, tmp_path: Path) -> None:
    from testkit.hubs import sim_config

    cfg = sim_config(uplink={"receipts": False})
    rules = [r.model_copy(update={"seconds": 0.3}) for r in cfg.rules]
    cfg = cfg.model_copy(update={"rules": rules})
    with sim_hub(mosquitto, tmp_path, cfg) as hub:
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        assert hub.board.outputs()["siren"] is True
        wait_until(lambda: not hub.board.outputs()["siren"], timeout=5, what="siren off")


def test_remote_silence_command(mosquitto, tmp_path: Path) -> None:
    with (
        Subscriber(mosquitto, TOPICS.cmd_result, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub,
    ):
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        time.sleep(0.2)  # its subscription to cmd/+ is confirmed shortly after CONNACK
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        sub.publish(
            f"{TOPICS.base}/cmd/silence", json.dumps({"by": "officer-7", "request_id": "r1"})
        )
        msgs = sub.wait_until(
            lambda ms: (
                any(m.topic == TOPICS.cmd_result for m in ms)
                and sum(m.topic.endswith("/silenced") for m in ms) == 1
            )
        )
        assert hub.board.outputs()["siren"] is False
    [result] = [m.json() for m in msgs if m.topic == TOPICS.cmd_result]
    assert result == {"cmd": "silence", "request_id": "r1", "ok": True, "silenced": ["siren"]}


def test_malformed_commands_and_receipts_are_counted_and_dropped(mosquitto, tmp_path: Path) -> None:
    with (
        Subscriber(mosquitto, EVENTS, TOPICS.cmd_result) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": True}) as hub,
    ):
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        time.sleep(0.2)
        for payload in (b"\xff\xfe", b"[1,2]", b"{not json"):
            sub.publish(f"{TOPICS.base}/cmd/silence", payload)
            sub.publish(TOPICS.receipt, payload)
        sub.publish(TOPICS.receipt, json.dumps({"ids": [1, 2]}))
        sub.publish(f"{TOPICS.base}/cmd/self-destruct", b"{}")
        wait_until(lambda: hub.hub.malformed_commands == 4, what="4 bad commands counted")
        wait_until(lambda: hub.hub.uplink.stats.bad_receipts == 4, what="4 bad receipts counted")
        # The hub still works.
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        sub.wait_until(lambda ms: any(m.topic.endswith("/event/panic") for m in ms))
    results = [m.json() for m in sub.messages if m.topic == TOPICS.cmd_result]
    assert results == [
        {
            "cmd": "self-destruct",
            "request_id": "",
            "ok": False,
            "error": "unknown command 'self-destruct'",
        }
    ]


def test_status_is_retained_online_and_the_will_says_offline(mosquitto, tmp_path: Path) -> None:
    with sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub:
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        time.sleep(0.5)  # health goes out right after the connection
        with Subscriber(mosquitto, TOPICS.status, TOPICS.health) as sub:
            msgs = sub.wait_until(
                lambda ms: {m.topic for m in ms if m.retain} == {TOPICS.status, TOPICS.health}
            )
        msgs = [m for m in msgs if m.retain]
        assert [m.payload for m in msgs if m.topic == TOPICS.status] == [b"online"]
        health = next(m.json() for m in msgs if m.topic == TOPICS.health)
        assert health["hub"] == HUB and "outbox" in health and "clock_synced" in health
        with Subscriber(mosquitto, TOPICS.status) as sub:
            sub.wait_for(1)
            # A crash (no clean disconnect): the broker publishes the will.
            hub.hub.uplink.client._sock_close()  # noqa: SLF001 - simulate a dead link
            msgs = sub.wait_until(lambda ms: ms[-1].payload == b"offline", timeout=60)
    with Subscriber(mosquitto, TOPICS.status) as sub:
        [msg] = sub.wait_for(1)
        assert msg.payload == b"offline" and msg.retain


def test_a_failing_disk_sends_the_alarm_from_memory_and_commits_it_when_it_can(
    mosquitto, tmp_path: Path
) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path) as hub,  # no receiver: the panic stays unreceipted
    ):
        # SQLite refuses every write from now on, as with a card gone read-only.
        hub.hub.dispatcher.call(lambda o: o.conn.execute("PRAGMA query_only=1")).result(5)
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        assert hub.board.outputs()["siren"] is True  # the siren never waits for the disk
        # The police learn of the panic, and of the disk, while the disk still refuses.
        msgs = sub.wait_until(
            lambda ms: {m.json()["kind"] for m in ms} >= {"panic", "storage_fault"}
        )
        panic = next(m.json() for m in msgs if m.json()["kind"] == "panic")
        fault = next(m.json() for m in msgs if m.json()["kind"] == "storage_fault")
        assert panic["seq"] >= 1 and fault["qualifier"] == "E" and fault["cid"] == 300
        assert fault["data"]["fault"] == "read-only"
        assert outbox_counts(hub).get("in_memory", 0) >= 1
        hub.hub.dispatcher.call(lambda o: o.conn.execute("PRAGMA query_only=0")).result(5)
        sub.wait_until(
            lambda ms: any(m.json()["kind"] == "storage_fault" and m.json()["qualifier"] == "R"
                           for m in ms),
            timeout=15,
        )  # fmt: skip
        wait_until(lambda: "in_memory" not in outbox_counts(hub), 10, "memory written out")
        stored = hub.hub.dispatcher.call(lambda o: o.state_of(panic["id"])).result(5)
        assert stored is not None  # on disk now, with the seq it was published with
        seq = hub.hub.dispatcher.call(
            lambda o: o.conn.execute(
                "SELECT seq FROM outbox WHERE id=?", (panic["id"],)
            ).fetchone()[0]
        ).result(5)
        assert seq == panic["seq"]


def test_a_hub_started_while_the_broker_is_down_sends_when_it_comes_up(
    mosquitto, tmp_path: Path
) -> None:
    mosquitto.stop()
    with sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub:
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        assert hub.board.outputs()["siren"] is True
        assert outbox_counts(hub)["pending"] == 1
        mosquitto.start()
        with Subscriber(mosquitto, EVENTS) as sub:
            [msg] = sub.wait_for(1, timeout=30)
    assert msg.json()["kind"] == "panic"


def test_retained_and_stale_commands_are_refused_and_fresh_ones_run(
    mosquitto, tmp_path: Path
) -> None:
    with (
        Subscriber(mosquitto, TOPICS.cmd_result) as sub,
        sim_hub(mosquitto, tmp_path, uplink={"receipts": False}) as hub,
    ):
        wait_until(lambda: hub.hub.uplink.connected, what="hub online")
        time.sleep(0.2)
        hub.board.press("panic-1")
        hub.board.release("panic-1")
        silence = f"{TOPICS.base}/cmd/silence"
        sub.publish(silence, json.dumps({"request_id": "old", "ts": time.time() - 3600}))
        sub.publish(silence, json.dumps({"request_id": "kept"}), retain=True)
        [old, kept] = [m.json() for m in sub.wait_for(2)]
        assert hub.board.outputs()["siren"] is True
        sub.publish(silence, json.dumps({"request_id": "now", "ts": time.time()}))
        [*_, fresh] = [m.json() for m in sub.wait_for(3)]
        assert hub.board.outputs()["siren"] is False
        sub.publish(silence, b"", retain=True)  # clear the retained command
    assert old["ok"] is False and old["error"].startswith("stale command")
    assert kept == {
        "cmd": "silence",
        "request_id": "kept",
        "ok": False,
        "error": "retained commands are refused",
        "hub_ts": kept["hub_ts"],
    }
    assert fresh == {"cmd": "silence", "request_id": "now", "ok": True, "silenced": ["siren"]}
