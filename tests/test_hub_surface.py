"""The hub's public surface (status, health, bus_open, mute_inputs) as the simulator and its
control socket use it; the simulated board driving pins as the config wires them; a remote
silence that silences once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.topics import HubTopics
from hw_sim.control import request
from settings import Config
from testkit.hubs import COMMUNE, EVENTS, HUB, parse_sim_config, sim_config_data, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)


def config(drop: tuple[str, ...] = (), **tables: Any) -> Config:
    """The default simulated hub without its camera (no model to load), ``drop`` left out and
    ``tables`` replaced."""
    data = sim_config_data(camera=False)
    for name in drop:
        data.pop(name, None)
    data.update(tables)
    return parse_sim_config(data)


def total(counts: dict[str, int]) -> int:
    return counts["pending"] + counts["sent"] + counts["delivered"]


def test_status_through_the_control_socket_is_the_hubs_state(mosquitto, tmp_path: Path) -> None:
    with sim_hub(mosquitto, tmp_path, config(uplink={"receipts": False})) as sim:
        wait_until(lambda: sim.hub.status()["online"], what="hub online")
        wait_until(lambda: sim.hub.bus_open("bus-1"), what="bus open")
        rest = request(tmp_path, {"cmd": "status"})
        assert rest["ok"] is True and (rest["hub"], rest["commune"]) == (HUB, COMMUNE)
        assert rest["inputs"] == {"panic-1": False, "tamper-1": False, "silence-1": False}
        assert rest["outputs"]["siren"] is False and set(rest["outputs"]) == {
            "siren",
            "status-led",
        }
        assert rest["sounding"] == [] and rest["buses"] == {"bus-1": True}
        assert set(rest["nodes"]) == {"smoke-1", "panic-node-1"} and rest["cameras"] == {}

        sim.board.press("tamper-1")  # the case opened, and left open
        wait_until(
            lambda: total(sim.hub.status()["outbox"]) > total(rest["outbox"]), what="committed"
        )
        opened = request(tmp_path, {"cmd": "status"})
        assert opened["inputs"] == {"panic-1": False, "tamper-1": True, "silence-1": False}
        assert opened["outputs"]["siren"] is True and opened["sounding"] == ["siren"]
        assert opened["online"] is True
        # The hub's view and the board's agree.
        assert sim.board.inputs() == opened["inputs"]
        assert sim.board.outputs()["siren"] is True


def test_health_is_the_payload_the_hub_publishes(mosquitto, tmp_path: Path) -> None:
    cfg = config(drop=("buses", "nodes"), uplink={"receipts": False, "health_interval_s": 0.2})
    with (
        Subscriber(mosquitto, TOPICS.health) as sub,
        sim_hub(mosquitto, tmp_path, cfg) as sim,
    ):
        sim.board.press("tamper-1")
        # A health published after the press (the one published on connecting may predate it).
        seen = sub.count
        live = sub.wait_until(lambda ms: any(not m.retain for m in ms[seen:]))
        published = next(m for m in live[seen:] if not m.retain).json()
        answer = request(tmp_path, {"cmd": "health"})
        assert answer["ok"] is True
        health = answer["health"]
    assert set(health) == set(published)
    assert health["hub"] == published["hub"] == HUB
    assert (
        health["inputs"]
        == published["inputs"]
        == {
            "panic-1": False,
            "tamper-1": True,
            "silence-1": False,
        }
    )
    assert health["sounding"] == published["sounding"] == ["siren"]


def test_the_board_drives_the_level_the_config_means_pressed(mosquitto, tmp_path: Path) -> None:
    inputs = [
        {"name": "panic-1", "kind": "panic", "pin": 17},  # pulled up: pressed is low
        {"name": "door-1", "kind": "door", "pin": 5, "pull_up": False},  # pressed is high
        # No pull resistor, active low: a mock pin floats low, which must not read as open.
        {"name": "door-2", "kind": "door", "pin": 6, "pull_up": "none", "active_high": False},
    ]
    outputs = [{"name": "siren", "kind": "siren", "pin": 23, "active_high": False}]
    rules = [{"when": ["panic"], "output": "siren", "seconds": 60}]
    cfg = config(
        drop=("buses", "nodes"),
        uplink={"receipts": False},
        inputs=inputs,
        outputs=outputs,
        rules=rules,
    )
    pressed_level = {"panic-1": False, "door-1": True, "door-2": False}
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, cfg) as sim,
    ):
        pin = {i["name"]: sim.board.factory.pin(i["pin"]) for i in inputs}
        siren = sim.board.factory.pin(23)
        at_start = sim.hub.status()
        assert at_start["inputs"] == {"panic-1": False, "door-1": False, "door-2": False}
        assert total(at_start["outbox"]) == 0  # no door reported open at start
        for name, level in pressed_level.items():
            assert pin[name].state is (not level), name

        for name, level in pressed_level.items():
            sim.board.press(name)
            assert pin[name].state is level, name
            assert sim.hub.status()["inputs"][name] is True, name
        assert sim.board.outputs() == {"siren": True} and siren.state is False  # active low
        for name, level in pressed_level.items():
            sim.board.release(name)
            assert pin[name].state is (not level), name
            assert sim.hub.status()["inputs"][name] is False, name

        msgs = sub.wait_until(lambda ms: len(ms) == 5)  # a panic, two doors opened and closed
    seen = sorted((m.json()["source"], m.json()["qualifier"]) for m in msgs)
    assert seen == [
        ("door-1", "E"),
        ("door-1", "R"),
        ("door-2", "E"),
        ("door-2", "R"),
        ("panic-1", "E"),
    ]


def test_a_remote_silence_runs_the_silence_once(mosquitto, tmp_path: Path) -> None:
    cfg = config(drop=("buses", "nodes"), uplink={"receipts": False})
    with (
        Subscriber(mosquitto, TOPICS.cmd_result, f"{TOPICS.base}/event/silenced") as sub,
        sim_hub(mosquitto, tmp_path, cfg) as sim,
    ):
        wait_until(lambda: sim.hub.status()["online"], what="hub online")

        def answers_commands() -> bool:  # it subscribes to them just after it connects
            sub.publish(f"{TOPICS.base}/cmd/ping", b"{}")
            return any(m.topic == TOPICS.cmd_result for m in sub.messages)

        wait_until(answers_commands, what="commands answered")
        sim.board.press("panic-1")
        sim.board.release("panic-1")
        assert sim.hub.status()["sounding"] == ["siren"]
        siren = sim.board.factory.pin(23)
        siren.clear_states()  # its level history from here on

        # Count the real rules' silences: the command's, and any a second path would add.
        rules = sim.hub.rules
        silences: list[str] = []
        real_silence = rules.silence

        def counted(reason: str = "silence") -> list[str]:
            silences.append(reason)
            return real_silence(reason=reason)

        rules.silence = counted  # type: ignore[method-assign]
        sub.publish(
            f"{TOPICS.base}/cmd/silence", json.dumps({"by": "officer-7", "request_id": "s"})
        )
        msgs = sub.wait_until(
            lambda ms: (
                any(m.topic.endswith("/silenced") for m in ms)
                and any(m.topic == TOPICS.cmd_result and m.json()["cmd"] == "silence" for m in ms)
            )
        )
        sim.hub.status()  # the store thread has published what was queued before
        assert silences == ["remote command by officer-7"]
        assert [s.state for s in siren.states] == [True, False]  # on, then off once
        assert sim.hub.status()["sounding"] == []
    [result] = [
        m.json() for m in msgs if m.topic == TOPICS.cmd_result and m.json()["cmd"] == "silence"
    ]
    assert result["silenced"] == ["siren"]
    assert len([m for m in sub.messages if m.topic.endswith("/silenced")]) == 1
