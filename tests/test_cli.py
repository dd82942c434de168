"""The command line as installers and the police use it: real processes, a real broker."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from hw_sim.control import request
from testkit.hubs import EVENTS
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

TUQUAN = [sys.executable, "-m", "tuquan"]
REPO = Path(__file__).resolve().parent.parent


def spawn(*args: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [*TUQUAN, *args], stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL, cwd=REPO
    )


def read_json_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> list[dict]:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    lines: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(lines)} of {count} lines in {timeout} s: {lines}"
        if sel.select(left):
            line = proc.stdout.readline()
            assert line, "process closed its output"
            lines.append(json.loads(line))
    return lines


def hub_answers(data_dir: Path) -> bool:
    try:
        return bool(request(data_dir, {"cmd": "status"}, timeout=2).get("ok"))
    except (OSError, ValueError):
        return False


def test_sim_status_fails_when_no_hub_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [*TUQUAN, "sim", "--data-dir", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no simulated hub answers" in result.stderr


def test_run_sim_receive_and_press_from_another_process(mosquitto, tmp_path: Path) -> None:
    hub_dir, log = tmp_path / "hub", tmp_path / "log.txt"
    receiver = spawn(
        "receive",
        "--broker",
        mosquitto.address,
        "--commune",
        "demo",
        "--data-dir",
        str(tmp_path / "receiver"),
        log=log,
    )
    hub = spawn("run", "--sim", "--broker", mosquitto.address, "--data-dir", str(hub_dir), log=log)
    try:
        wait_until(lambda: hub_answers(hub_dir), timeout=30, what="simulated hub")
        time.sleep(1.0)  # the receiver subscribes right after connecting
        press = subprocess.run(
            [*TUQUAN, "sim", "--data-dir", str(hub_dir), "press", "panic-1"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert press.returncode == 0, press.stderr
        assert json.loads(press.stdout)["ok"] is True
        [alert] = read_json_lines(receiver, 1, timeout=20)
        assert alert["kind"] == "panic" and alert["hub"] == "sim-hub" and alert["cid"] == 120
        status = subprocess.run(
            [*TUQUAN, "sim", "--data-dir", str(hub_dir), "status"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        state = json.loads(status.stdout)
        assert status.returncode == 0 and state["outputs"]["siren"] is True
        wait_until(
            lambda: request(hub_dir, {"cmd": "status"})["outbox"].get("delivered") == 1,
            what="the receipt reached the hub",
        )
        bad = subprocess.run(
            [*TUQUAN, "sim", "--data-dir", str(hub_dir), "press", "nope"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert bad.returncode == 1 and "no input named 'nope'" in bad.stdout
    finally:
        for proc in (hub, receiver):
            proc.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in (hub, receiver)]
    assert codes == [0, 0], log.read_text()[-3000:]
    assert not (hub_dir / "sim.sock").exists()


def test_sigterm_publishes_offline_and_keeps_undelivered_events(mosquitto, tmp_path: Path) -> None:
    hub_dir = tmp_path / "hub"
    hub = spawn(
        "run",
        "--sim",
        "--broker",
        mosquitto.address,
        "--data-dir",
        str(hub_dir),
        log=tmp_path / "log.txt",
    )
    with Subscriber(mosquitto, "tuquan/v1/demo/sim-hub/status") as sub:
        wait_until(lambda: hub_answers(hub_dir), timeout=30, what="simulated hub")
        request(hub_dir, {"cmd": "press", "name": "panic-1"})
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(30) == 0
        sub.wait_until(lambda ms: ms[-1].payload == b"offline")
    # No receiver ran: the event stays in the outbox for the next start.
    import sqlite3

    db = sqlite3.connect(hub_dir / "outbox.sqlite3")
    assert db.execute("SELECT kind, state FROM outbox").fetchall() == [("panic", 1)]


def test_scenario_file_is_played(mosquitto, tmp_path: Path) -> None:
    scenario = REPO / "hw_sim" / "scenarios" / "panic.toml"
    with Subscriber(mosquitto, EVENTS) as sub:
        hub = spawn(
            "run",
            "--sim",
            str(scenario),
            "--broker",
            mosquitto.address,
            "--data-dir",
            str(tmp_path / "hub"),
            log=tmp_path / "log.txt",
        )
        try:
            msgs = sub.wait_for(2, timeout=30)
        finally:
            hub.send_signal(signal.SIGTERM)
            hub.wait(30)
    assert [m.json()["kind"] for m in msgs] == ["panic", "silenced"]


def test_a_bad_scenario_names_the_step_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[steps]]\nat = 1\naction = "jump"\n\n[[steps]]\nat = -1\naction = "press"\n')
    result = subprocess.run(
        [*TUQUAN, "run", "--sim", str(bad), "--data-dir", str(tmp_path / "hub")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "TUQUAN_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "steps[0].action: must be one of" in result.stderr
    assert "steps[1].at: must be a number" in result.stderr
    assert "steps[1].input: press needs the name of an input" in result.stderr


def test_version_and_plain_help() -> None:
    version = subprocess.run([*TUQUAN, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and re.fullmatch(r"tuquan \S+\n", version.stdout)
    helped = subprocess.run([*TUQUAN, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "``" not in helped.stdout and "run" in helped.stdout


def test_the_sim_commands_actions_are_the_simulators() -> None:
    # The command line lists them itself (its help keeps their order, and building the parser
    # must not load OpenCV): they must stay the ones the simulator carries out.
    from hw_sim.camera import ACTIONS
    from hw_sim.nodes import NODE_COMMANDS
    from tuquan.cli.sim import CAMERA_ACTIONS, NODE_ACTIONS

    assert CAMERA_ACTIONS == ACTIONS
    assert set(NODE_ACTIONS) == NODE_COMMANDS
