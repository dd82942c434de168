"""The hub's public surface (status, health, bus_open, mute_inputs) as the simulator and its
control socket use it; a remote silence that silences once."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from hub_helpers import COMMUNE, HUB, sim_hub, wait_until
from mqtt_helpers import Subscriber

from core.topics import HubTopics
from hw_sim.control import request
from hw_sim.simulator import default_config_path
from settings import Config, parse_config

TOPICS = HubTopics(COMMUNE, HUB)


def config(drop: tuple[str, ...] = (), **tables: Any) -> Config:
    """The default simulated hub without its camera (no model to load), ``drop`` left out and
    ``tables`` replaced."""
    data = tomllib.loads(default_config_path().read_text())
    for name in ("cameras", "detection", "snapshots", *drop):
        data.pop(name, None)
    data.update(tables)
    return parse_config(data, base_dir=default_config_path().parent, env={})


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
        live = sub.wait_until(lambda ms: any(not m.retain for m in ms))
        published = next(m for m in live if not m.retain).json()
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
