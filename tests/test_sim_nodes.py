"""The simulator's sensor nodes: the real node firmware (firmware_py/) on the far end of real
ptys, the hub's real serial-bus driver on the near end, a real SQLite outbox and a real
Mosquitto. The faults (a hub that cannot commit, ACKs lost on the link, bit errors, a node gone
silent) are injected on the wire or in the outbox, never by replacing either end.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.topics import HubTopics
from firmware_py import codec
from gateway.service import OUTBOX_FILE
from hw_sim.control import request
from hw_sim.nodes import SMOKE_THRESHOLD, SimNode
from hw_sim.scenario import load_scenario
from hw_sim.simulator import SimulatedHub
from settings import Config
from testkit.hubs import COMMUNE, EVENTS, HUB, sim_config, sim_hub
from testkit.mqtt import Message, Subscriber
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
REPO = Path(__file__).resolve().parent.parent
TUQUAN = [sys.executable, "-m", "tuquan"]
CLEAN_AIR = 1_000
# A quick firmware loop, and re-sends at most every 100 ms, so that tests run fast.
QUICK = {"poll_ms": 2, "debounce_ms": 0, "retry_max_ms": 100}


def nodes_config(
    nodes: list[dict[str, Any]] | None = None,
    buses: list[dict[str, Any]] | None = None,
    receipts: bool = False,
) -> Config:
    """The default simulated hub (receipts off unless asked, no camera: these tests are about
    the sensor bus), with other buses and nodes if given."""
    arrays = {"buses": buses, "nodes": nodes}
    given = {name: value for name, value in arrays.items() if value is not None}
    return sim_config(camera=False, uplink={"receipts": receipts}, **given)


def node_hub(
    broker: Any, data_dir: Path, cfg: Config, firmware: dict[str, Any] | None = None
) -> AbstractContextManager[SimulatedHub]:
    return sim_hub(broker, data_dir, cfg, node_firmware=firmware or QUICK)


def heard(hub: SimulatedHub, name: str) -> bool:
    """The hub has had a frame from the node."""
    bus = hub.hub.buses.buses[hub.nodes.node(name).spec.bus]
    return bus.nodes[hub.nodes.node(name).spec.id].last_seen is not None


def events(sub: Subscriber, kind: str | None = None) -> list[dict[str, Any]]:
    """Events received, each once (at-least-once delivery: a copy has the same id)."""
    seen: dict[str, dict[str, Any]] = {}
    for m in sub.messages:
        event = m.json()
        if kind is None or event["kind"] == kind:
            seen.setdefault(event["id"], event)
    return list(seen.values())


def smoke_rows(data_dir: Path) -> list[tuple[str, str]]:
    """``stored`` without the hub's reports of its own disk (storage_fault)."""
    return [row for row in stored(data_dir) if row[0] == "smoke"]


def stored(data_dir: Path) -> list[tuple[str, str]]:
    """(kind, qualifier) of every row the outbox has committed, as another process sees it."""
    with sqlite3.connect(data_dir / OUTBOX_FILE) as conn:
        rows = conn.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
    return [(e["kind"], e["qualifier"]) for e in (json.loads(p) for (p,) in rows)]


def quiet_resends(node: SimNode, seconds: float) -> int:
    """Re-sends the node makes within ``seconds`` (its retry_max_ms is far shorter)."""
    before = node.node.stats["resent"]
    time.sleep(seconds)
    return int(node.node.stats["resent"] - before)


# --- (a) an alarm, re-sent until the hub's ACK ---------------------------------------------


def test_a_smoke_alarm_reaches_a_subscriber_and_is_resent_until_the_hub_acks(
    mosquitto, tmp_path: Path
) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        # Receipts on, no receiver: a PUBACK does not make the alarm delivered, so only the
        # disk can make it accepted (and ACKed).
        node_hub(mosquitto, tmp_path, nodes_config(receipts=True)) as hub,
    ):
        smoke = hub.nodes.node("smoke-1")
        bus = hub.hub.buses.buses["bus-1"]
        wait_until(lambda: heard(hub, "smoke-1"), what="the node's first heartbeat")
        # The outbox cannot commit (a card gone read-only): no ACK, and the node re-sends.
        hub.hub.dispatcher.call(lambda o: o.conn.execute("PRAGMA query_only=1")).result(5)
        answer = hub.handle({"cmd": "smoke", "name": "smoke-1", "level": 45_000})
        assert answer == {
            "ok": True,
            "cmd": "smoke",
            "name": "smoke-1",
            "alarm": True,
            "level": 45_000,
        }
        wait_until(lambda: smoke.node.stats["resent"] >= 5, what="re-sends while uncommitted")
        assert len(smoke.node.outstanding()) == 1 and smoke.node.stats["acked"] == 0
        assert bus.stats.duplicates >= 4  # the copies reached the hub; none was ACKed
        # Published at once from memory, but not on disk: the node is not ACKed.
        sub.wait_until(lambda ms: any(m.json()["kind"] == "smoke" for m in ms))
        assert stored(tmp_path) == []
        assert hub.board.outputs()["siren"] is True  # the siren never waits for the disk
        # The commit goes through: one event, an ACK for every copy, and the node stops.
        hub.hub.dispatcher.call(lambda o: o.conn.execute("PRAGMA query_only=0")).result(5)
        msg = next(m for m in sub.messages if m.json()["kind"] == "smoke")
        wait_until(lambda: smoke.node.outstanding() == [], what="the ACK at the node")
        assert smoke.node.stats["acked"] == 1
        assert quiet_resends(smoke, 0.5) == 0
        assert smoke_rows(tmp_path) == [("smoke", "E")]

        # The hub commits the restore, but its ACKs are lost on the way back to the node.
        smoke.link.deaf = True
        resent = smoke.node.stats["resent"]
        hub.handle({"cmd": "smoke", "name": "smoke-1", "level": CLEAN_AIR})
        sub.wait_until(lambda ms: len(events(sub, "smoke")) == 2)
        wait_until(lambda: smoke.node.stats["resent"] >= resent + 5, what="re-sends, no ACK")
        assert len(smoke.node.outstanding()) == 1
        smoke.link.deaf = False
        wait_until(lambda: smoke.node.outstanding() == [], what="an ACK got through")
        assert quiet_resends(smoke, 0.5) == 0
        assert smoke_rows(tmp_path) == [("smoke", "E"), ("smoke", "R")]
        assert [(e["kind"], e["qualifier"]) for e in events(sub, "smoke")] == [
            ("smoke", "E"),
            ("smoke", "R"),
        ]
    assert msg.topic == TOPICS.event("smoke")
    event = msg.json()
    assert (event["cid"], event["qualifier"], event["source"], event["zone"]) == (
        111,
        "E",
        "smoke-1",
        "kitchen",
    )
    assert event["data"]["node"] == 1 and event["data"]["level"] == 45_000
    assert event["data"]["boot"] == smoke.node.boot


# --- (b) 1,000 alarms through bit errors ----------------------------------------------------

ALARMS_PER_NODE = 250
IN_FLIGHT = 8  # below the firmware's max_outstanding (16), so that it never drops a message


def toggles(node: SimNode, count: int) -> Iterator[None]:
    """Raise and clear the node's smoke level ``count`` times, each alarm with its own level;
    yields while waiting for the firmware to see each change."""
    for i in range(count):
        while len(node.node.outstanding()) >= IN_FLIGHT:
            yield
        node.set_smoke_level(SMOKE_THRESHOLD + i)
        while not node.node.state_bits() & codec.STATE_SMOKE:
            yield
        node.set_smoke_level(CLEAN_AIR)
        while node.node.state_bits() & codec.STATE_SMOKE:
            yield


def run_all(steps: list[Iterator[None]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while steps:
        for step in list(steps):
            try:
                next(step)
            except StopIteration:
                steps.remove(step)
        if time.monotonic() > deadline:
            raise AssertionError(f"the nodes did not take their alarms within {timeout} s")
        time.sleep(0.001)


def test_a_thousand_alarms_through_bit_errors_arrive_exactly_once(
    mosquitto, tmp_path: Path
) -> None:
    buses = [
        {"name": "bus-1", "port": "/dev/ttySIM-a", "rs485": True},
        {"name": "bus-2", "port": "/dev/ttySIM-b"},
    ]
    names = ["smoke-1", "smoke-2", "smoke-3", "smoke-4"]
    nodes = [
        {"name": name, "bus": f"bus-{1 + i % 2}", "id": 10 + i, "heartbeat_s": 600}
        for i, name in enumerate(names)
    ]
    expected = {(name, SMOKE_THRESHOLD + i) for name in names for i in range(ALARMS_PER_NODE)}
    with (
        Subscriber(mosquitto, TOPICS.event("smoke")) as sub,
        node_hub(
            mosquitto, tmp_path, nodes_config(nodes, buses), {"poll_ms": 2, "debounce_ms": 0}
        ) as hub,
    ):
        sims = [hub.nodes.node(name) for name in names]
        for name in names:
            wait_until(lambda name=name: heard(hub, name), what=f"{name}'s first heartbeat")
            assert hub.handle({"cmd": "noise", "name": name, "ber": 1e-3})["ok"]
        run_all([toggles(node, ALARMS_PER_NODE) for node in sims], timeout=240)
        sub.wait_until(lambda ms: len({m.json()["id"] for m in ms}) >= 2 * len(expected), 120)
        wait_until(lambda: all(not n.node.outstanding() for n in sims), 30, "every ACK heard")
        received = events(sub)
        bus_health = hub.hub._health_extra()["buses"]
        firmware = [n.node.stats for n in sims]
        links = [n.link.stats for n in sims]
    alarms = [e for e in received if e["qualifier"] == "E"]
    restores = [e for e in received if e["qualifier"] == "R"]
    # Exactly once: by the node's own message key, and by content (each alarm's own level).
    keys = [(e["data"]["node"], e["data"]["boot"], e["data"]["seq"]) for e in received]
    assert len(keys) == len(set(keys)) == 2 * len(expected)
    assert sorted((e["source"], e["data"]["level"]) for e in alarms) == sorted(expected)
    assert len(restores) == len(expected)
    assert not [e for e in received if e["data"].get("from") == "heartbeat"]
    assert all(e["cid"] == 111 for e in received)
    # The noise was there, and the protocol got everything through it.
    assert all(s["dropped"] == 0 and s["errors"] == 0 for s in firmware), firmware
    assert sum(s["resent"] for s in firmware) > 0
    assert all(link.flipped_bits > 0 for link in links)
    assert sum(link.truncated for link in links) > 0 and sum(link.garbage for link in links) > 0
    assert sum(sum(b["bad_frames"].values()) for b in bus_health.values()) > 0
    assert all(b["handler_errors"] == 0 for b in bus_health.values())


# --- (c) supervision ------------------------------------------------------------------------


def test_a_silenced_node_is_reported_lost_once_and_found_once(mosquitto, tmp_path: Path) -> None:
    nodes = [
        {"name": "smoke-1", "bus": "bus-1", "id": 1, "heartbeat_s": 1, "missed": 3},
        {
            "name": "panic-node-1",
            "bus": "bus-1",
            "id": 2,
            "heartbeat_s": 1,
            "missed": 3,
            "supervision_kind": "rf_supervision",
        },
    ]
    topics = [TOPICS.event("supervision"), TOPICS.event("rf_supervision")]
    with (
        Subscriber(mosquitto, *topics) as sub,
        node_hub(mosquitto, tmp_path, nodes_config(nodes)) as hub,
    ):
        fob = hub.nodes.node("panic-node-1")
        wait_until(lambda: heard(hub, "panic-node-1") and heard(hub, "smoke-1"), what="both")
        assert hub.handle({"cmd": "silence", "name": "panic-node-1"})["ok"]
        sent = fob.node.stats["sent"]
        [lost] = sub.wait_for(1, timeout=15)
        time.sleep(2.0)  # two more heartbeat periods, ten more checks: still once
        assert len(sub.messages) == 1
        assert fob.node.stats["sent"] == sent  # silent indeed
        status = hub.handle({"cmd": "status"})["nodes"]["panic-node-1"]
        assert status["silenced"] is True
        assert hub.hub._health_extra()["buses"]["bus-1"]["nodes"]["panic-node-1"]["lost"]
        assert hub.handle({"cmd": "resume", "name": "panic-node-1"})["ok"]
        sub.wait_for(2, timeout=15)
        time.sleep(1.5)  # more heartbeats from it: no second restore
        msgs = sub.messages
    assert [m.topic for m in msgs] == [TOPICS.event("rf_supervision")] * 2
    trouble, restore = (m.json() for m in msgs)
    assert (trouble["cid"], trouble["qualifier"], trouble["source"]) == (381, "E", "panic-node-1")
    assert trouble["data"]["node"] == 2 and trouble["data"]["heard"] is True
    assert trouble["data"]["window_s"] == 3.0
    assert (restore["cid"], restore["qualifier"], restore["source"]) == (381, "R", "panic-node-1")
    assert lost.json()["id"] == trouble["id"]


# --- commands -------------------------------------------------------------------------------


def test_node_commands_check_what_they_are_given(mosquitto, tmp_path: Path) -> None:
    with node_hub(mosquitto, tmp_path, nodes_config()) as hub:
        bad = [
            ({"cmd": "smoke", "name": "nope", "level": 1}, "no node named 'nope'"),
            ({"cmd": "smoke", "name": "smoke-1"}, "level must be an integer"),
            ({"cmd": "smoke", "name": "smoke-1", "level": 70_000}, "level must be an integer"),
            ({"cmd": "smoke", "name": "smoke-1", "level": "high"}, "level must be an integer"),
            ({"cmd": "noise", "name": "smoke-1", "ber": 0.5}, "ber must be a bit error rate"),
            ({"cmd": "noise", "name": "smoke-1"}, "ber must be a bit error rate"),
            ({"cmd": "node-panic", "name": "panic-node-1", "seconds": 0}, "seconds must be"),
            ({"cmd": "silence"}, "no node named None"),
        ]
        for req, error in bad:
            answer = hub.handle(req)
            assert answer["ok"] is False and error in answer["error"], (req, answer)
        status = hub.handle({"cmd": "status"})
        assert set(status["nodes"]) == {"smoke-1", "panic-node-1"}
        smoke = status["nodes"]["smoke-1"]
        assert (smoke["id"], smoke["bus"], smoke["silenced"], smoke["ber"]) == (
            1,
            "bus-1",
            False,
            0,
        )
        assert smoke["port"] == hub.hub.cfg.bus("bus-1").port  # the pty the hub opened
        assert hub.handle({"cmd": "noise", "name": "smoke-1", "ber": 0})["ber"] == 0


# --- scenarios ------------------------------------------------------------------------------


def test_a_scenario_drives_the_nodes(mosquitto, tmp_path: Path) -> None:
    scenario = REPO / "hw_sim" / "scenarios" / "kitchen-smoke.toml"
    with Subscriber(mosquitto, EVENTS) as sub:
        hub = SimulatedHub(
            nodes_config(), tmp_path, broker=(mosquitto.host, mosquitto.port), scenario=scenario
        )
        hub.start()
        try:
            sub.wait_for(5, timeout=30)
            time.sleep(0.5)  # nothing more comes
            msgs = sub.messages
            smoke = hub.nodes.node("smoke-1").status()
        finally:
            hub.stop(drain_timeout_s=1.0)
    assert kinds(msgs) == [
        ("smoke", "E", "smoke-1"),
        ("panic", "E", "panic-node-1"),
        ("panic", "R", "panic-node-1"),
        ("silenced", "E", "silence-1"),
        ("smoke", "R", "smoke-1"),
    ]
    assert smoke["smoke_level"] == 1000 and smoke["smoke"] is False


def test_a_scenario_node_step_is_checked_before_the_hub_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[steps]]\nat = 1\naction = "smoke"\nlevel = 70000\n\n'
        '[[steps]]\nat = 2\naction = "noise"\nnode = "smoke-1"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_scenario(bad)
    assert {path for path, _ in err.value.errors} == {
        "steps[0].node",
        "steps[0].level",
        "steps[1].ber",
    }


# --- the command line -----------------------------------------------------------------------


def tuquan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TUQUAN, *args], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )


def answers(data_dir: Path, check: Callable[[dict[str, Any]], bool] = lambda s: True) -> bool:
    try:
        status = request(data_dir, {"cmd": "status"}, timeout=2)
    except (OSError, ValueError):
        return False
    return bool(status.get("ok")) and check(status)


def kinds(msgs: list[Message]) -> list[tuple[str, str, str]]:
    return [(m.json()["kind"], m.json()["qualifier"], m.json()["source"]) for m in msgs]


def test_run_sim_starts_the_nodes_and_sim_commands_drive_them(mosquitto, tmp_path: Path) -> None:
    hub_dir, log = tmp_path / "hub", (tmp_path / "log.txt").open("ab")
    hub = subprocess.Popen(
        [*TUQUAN, "run", "--sim", "--broker", mosquitto.address, "--data-dir", str(hub_dir)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        with Subscriber(mosquitto, TOPICS.event("smoke"), TOPICS.event("panic")) as sub:
            wait_until(
                lambda: answers(
                    hub_dir,
                    lambda s: all(n["firmware"]["heartbeats"] for n in s["nodes"].values()),
                ),
                timeout=30,
                what="the simulated hub and its nodes",
            )
            smoke = tuquan(
                "sim", "--data-dir", str(hub_dir), "smoke", "smoke-1", "--level", "50000"
            )
            assert smoke.returncode == 0, smoke.stderr
            assert json.loads(smoke.stdout)["alarm"] is True
            [msg] = sub.wait_for(1, timeout=20)
            assert msg.topic == TOPICS.event("smoke")
            assert (msg.json()["cid"], msg.json()["source"]) == (111, "smoke-1")
            panic = tuquan("sim", "--data-dir", str(hub_dir), "node-panic", "panic-node-1")
            assert panic.returncode == 0, panic.stderr
            sub.wait_for(3, timeout=20)  # the fob's panic, and its release
            status = tuquan("sim", "--data-dir", str(hub_dir), "status")
            assert status.returncode == 0
            nodes = json.loads(status.stdout)["nodes"]
            assert nodes["smoke-1"]["smoke"] is True and nodes["smoke-1"]["smoke_level"] == 50_000
            for action in ("silence", "resume"):
                done = tuquan("sim", "--data-dir", str(hub_dir), action, "smoke-1")
                assert done.returncode == 0 and json.loads(done.stdout)["ok"], done
            noise = tuquan("sim", "--data-dir", str(hub_dir), "noise", "smoke-1", "--ber", "1e-3")
            assert noise.returncode == 0 and json.loads(noise.stdout)["ber"] == 1e-3
            clear = tuquan("sim", "--data-dir", str(hub_dir), "noise", "smoke-1", "--ber", "0")
            assert clear.returncode == 0
            unknown = tuquan("sim", "--data-dir", str(hub_dir), "smoke", "nope", "--level", "1")
            assert unknown.returncode == 1 and "no node named 'nope'" in unknown.stdout
            no_level = tuquan("sim", "--data-dir", str(hub_dir), "smoke", "smoke-1")
            assert no_level.returncode == 2 and "needs --level" in no_level.stderr
            msgs = sub.messages
    finally:
        hub.send_signal(signal.SIGTERM)
        code = hub.wait(30)
        log.close()
    assert code == 0, (tmp_path / "log.txt").read_text()[-3000:]
    assert kinds(msgs)[:3] == [
        ("smoke", "E", "smoke-1"),
        ("panic", "E", "panic-node-1"),
        ("panic", "R", "panic-node-1"),
    ]
