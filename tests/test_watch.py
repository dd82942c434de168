"""``tuquan watch`` on a real receiver store: the queue and the hubs, the operator's commands
from a pipe and from a terminal (a real pseudo-terminal), and stores it must refuse."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from commune.alerts import AlertBook
from commune.audit import AuditLog
from commune.db import Db
from commune.hubs import HubBook
from commune.store import EventStore, ReceivedEvent
from core.events import RESTORE, Event, utc_iso
from testkit.waiting import wait_until

TUQUAN = [sys.executable, "-m", "tuquan"]
REPO = Path(__file__).resolve().parent.parent
OPERATOR = "truc-ban-1"
# Events stored two days back: their ages read "2d" however long the suite takes.
BASE = datetime.now(UTC) - timedelta(days=2, hours=1)


def stored(
    hub: str, kind: str, seconds_ago: float, zone: str = "", qualifier: str = "E"
) -> ReceivedEvent:
    event = Event(kind, zone or f"{kind}-zone", f"{kind}-1", qualifier, seq=1)
    at = utc_iso((BASE - timedelta(seconds=seconds_ago)).timestamp())
    return ReceivedEvent.from_event(
        event, hub=hub, commune="phuong-1", payload=event.to_json(hub).decode(), received_at=at
    )


def store_events(data_dir: Path, *events: ReceivedEvent) -> None:
    with EventStore(data_dir / "receiver.sqlite3") as store:
        store.store_batch(list(events))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    make_store(tmp_path)
    return tmp_path


def make_store(data_dir: Path) -> None:
    """A receiver store with alerts 1..4 followed, alert 4 acknowledged, and a fifth event
    stored after that (a bare receiver: only the watch can open its alert)."""
    store_events(
        data_dir,
        stored("cho-an-dong", "person", 600),  # alert 1: a detection
        stored("truong-hoc", "tamper", 500),  # alert 2, closed by its restore
        stored("truong-hoc", "tamper", 400, qualifier=RESTORE),
        stored("chung-cu", "panic", 300),  # alert 3
        stored("cho-an-dong", "panic", 60),  # alert 4 (past the incident window of 1)
        stored("chung-cu", "telemetry", 50),  # opens nothing
    )
    with Db(data_dir / "receiver.sqlite3") as db:
        alerts = AlertBook(db)
        assert [c.action for c in alerts.follow()] == ["opened", "opened", "restored"] + [
            "opened"
        ] * 2
        alerts.acknowledge(4, "day-officer")
        hubs = HubBook(db)
        hubs.record_status("chung-cu", "online")  # now
        hubs.record_health("chung-cu", {"outbox": {"undelivered_alarm": 2}}, verified=True)
        hubs.record_status("truong-hoc", "offline")
        long_ago = utc_iso(BASE.timestamp())  # heard from two days ago, and not since
        hubs.record_health("cho-an-dong", {"outbox": {}}, verified=False, at=long_ago)
    # Alert 5; its zone holds an escape sequence that would clear an operator's screen.
    store_events(data_dir, stored("chung-cu", "sensor_tamper", 30, zone="gate\x1b[2J"))


def watch(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TUQUAN, "watch", "--data-dir", str(data_dir), "--operator", OPERATOR, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def table(output: str, title: str) -> list[list[str]]:
    """The rows (split on runs of spaces) under ``title`` up to the next blank line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 2 :]:
        if not line:
            break
        rows.append(line.split())
    return rows


def test_once_prints_the_queue_in_order_and_the_hubs(data_dir: Path) -> None:
    result = watch(data_dir, "--once")
    assert result.returncode == 0, result.stderr
    assert "ALERTS: 4 open" in result.stdout
    alerts = table(result.stdout, "ALERTS")
    # Alarms first (the unacknowledged one before the acknowledged one), then the trouble
    # the watch opened itself from the event stored after the last follow(), then the
    # detection; the tamper its restore closed is not listed.
    assert [(r[0], r[1], r[4], r[6]) for r in alerts] == [
        ("3", "ALARM", "panic", "new"),
        ("4", "ALARM", "panic", "acknowledged"),
        ("5", "trouble", "sensor_tamper", "new"),
        ("1", "detection", "person", "new"),
    ]
    assert alerts[1][-1] == "day-officer" and alerts[0][2] == "2d"
    hubs = {r[0]: r for r in table(result.stdout, "HUBS")}
    assert set(hubs) == {"cho-an-dong", "chung-cu", "truong-hoc"}
    assert (hubs["chung-cu"][2], hubs["chung-cu"][4:]) == ("online", ["alarm", "2", "verified"])
    assert hubs["truong-hoc"][2] == "offline"
    assert hubs["cho-an-dong"][2:4] == ["silent", "2d"]  # its last event, two days ago
    assert hubs["cho-an-dong"][-2:] == ["NOT", "VERIFIED"]
    assert alerts[2][5] == "gate?[2J"  # shown, not obeyed
    assert "\x1b" not in result.stdout  # plain text into a pipe


def test_once_shows_the_hubs_a_config_expects(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "receiver.toml"
    config.write_text(
        '[receiver]\ncommune = "phuong-1"\n\n'
        '[[hubs]]\nid = "nha-van-hoa"\nname = "Nhà văn hóa"\n\n'
        '[[hubs]]\nid = "chung-cu"\nname = "Chung cư Hòa Bình"\n',
        encoding="utf-8",
    )
    result = watch(data_dir, "--once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    hubs = {r[0]: " ".join(r[1:]) for r in table(result.stdout, "HUBS")}
    assert hubs["nha-van-hoa"].startswith("Nhà văn hóa never seen")
    assert hubs["chung-cu"].startswith("Chung cư Hòa Bình online")
    assert "Chung cư Hòa Bình (chung-cu)" in result.stdout  # in the queue too


def test_commands_on_stdin_act_audited_and_bad_ones_change_nothing(data_dir: Path) -> None:
    bad = [
        "ack " + "1" + "0" * 30,  # 10**30
        "a -3",
        "ack 99",  # no such alert
        "a 2",  # closed by its restore
        "c 1 maybe",  # no such outcome
        "ack 1\x1b[2J",  # control characters
        "c 1 test " + "x" * 10_000,  # a huge line
        "frobnicate",
    ]
    commands = ["ack 3", *bad, "c 5 false_alarm  the cat, again", "h", "q", "ack 1"]
    result = watch(data_dir, stdin="\n".join(commands) + "\n")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == len(bad)  # one short line for each
    assert f"alert 3 acknowledged by {OPERATOR}" in result.stdout
    assert f"alert 5 closed by {OPERATOR}: false_alarm" in result.stdout

    with Db(data_dir / "receiver.sqlite3") as db:
        alerts, audit = AlertBook(db), AuditLog(db)
        three, five, one = alerts.get(3), alerts.get(5), alerts.get(1)
        assert three is not None and (three.state, three.ack_by) == ("acknowledged", OPERATOR)
        assert five is not None and (five.state, five.outcome) == ("closed", "false_alarm")
        assert (five.closed_by, five.note) == (OPERATOR, "the cat, again")
        assert one is not None and one.state == "new"  # after "q", nothing more was read
        mine = [(r.alert_id, r.action) for r in audit.recent() if r.actor == OPERATOR]
        assert sorted(mine) == [(3, "acknowledged"), (5, "closed")]


def test_announces_alerts_opened_while_it_runs(data_dir: Path) -> None:
    proc = subprocess.Popen(
        [*TUQUAN, "watch", "--data-dir", str(data_dir), "--operator", OPERATOR, "--refresh", "0.2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        lines: list[str] = []
        out = proc.stdout
        threading.Thread(target=lambda: lines.extend(out), daemon=True).start()
        wait_until(lambda: any(line.startswith("HUBS") for line in lines), 30, "the board")
        store_events(data_dir, stored("nha-van-hoa", "fire", 0))  # another process writes
        wait_until(
            lambda: any("new alert 6: ALARM fire at nha-van-hoa" in line for line in lines),
            30,
            "the new alarm announced",
        )
        proc.stdin.write("q\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_terminal_operator_acknowledges_on_the_live_display(data_dir: Path) -> None:
    pid, master = pty.fork()
    if pid == 0:  # the child: the watch on the pseudo-terminal
        os.chdir(REPO)
        os.execv(sys.executable, [*TUQUAN, "watch", "--data-dir", str(data_dir),
                                  "--operator", OPERATOR, "--refresh", "0.2"])  # fmt: skip
    screen = bytearray()

    def drain() -> None:  # the display must be read, or the child blocks writing it
        try:
            while chunk := os.read(master, 65536):
                screen.extend(chunk)
        except OSError:  # the child is gone
            pass

    threading.Thread(target=drain, daemon=True).start()
    db = Db(data_dir / "receiver.sqlite3")
    alerts = AlertBook(db)

    def acknowledged() -> bool:
        alert = alerts.get(3)
        return alert is not None and alert.ack_by == OPERATOR

    try:
        wait_until(lambda: b"Open alerts" in screen, 30, "the live display")
        assert b"\x07" in screen  # an unacknowledged alarm when the watch started: the bell
        os.write(master, b"a 3\x1b[A\r")  # an arrow key typed in the middle is ignored
        wait_until(acknowledged, 30, "alert 3 acknowledged")
        os.write(master, b"q\r")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        db.close()
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(master)


def test_a_missing_store_is_named_and_not_created(tmp_path: Path) -> None:
    result = watch(tmp_path / "nowhere", "--once")
    assert result.returncode == 2
    assert str(tmp_path / "nowhere" / "receiver.sqlite3") in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_a_damaged_store_is_refused_without_a_traceback(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 64
    (tmp_path / "receiver.sqlite3").write_bytes(garbage)
    result = watch(tmp_path, "--once")
    assert result.returncode == 2
    assert "receiver.sqlite3" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "receiver.sqlite3").read_bytes() == garbage
