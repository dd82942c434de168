"""The hub under systemd: sd_notify, the watchdog, and the hardening of the shipped units.

The notifier is tested against a real Unix datagram socket bound here, as systemd binds its own;
the hub as a real process (``tuquan run --sim``) pointed at that socket, and in-process with its
store thread blocked. The units are scored with ``systemd-analyze security --offline=yes`` and
checked with ``systemd-analyze verify`` in a scratch root that has the unit's binary.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from gateway.sdnotify import SystemdNotifier
from gateway.service import Hub
from hw_sim.control import request
from settings import parse_config
from testkit.hubs import EVENTS, outbox_counts, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
HUB_UNIT = UNITS / "tuquan.service"
RECEIVER_UNIT = UNITS / "tuquan-receiver.service"
MAX_EXPOSURE = 2.0
# What the hub must still reach under DevicePolicy=closed (docs/operations.md).
HUB_DEVICES = {
    "char-gpiochip": "rw",
    "char-ttyAMA": "rw",
    "char-ttyS": "rw",
    "char-ttyUSB": "rw",
    "char-ttyACM": "rw",
    "char-video4linux": "rw",
    "char-media": "rw",
    "char-dma_heap": "rw",
}


# -- a notify socket, as systemd binds it --------------------------------------------------------


class NotifySocket:
    """A bound Unix datagram socket; ``address`` is what goes into ``$NOTIFY_SOCKET``."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: str | None = None
        if abstract:
            name = f"tuquan-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            # Short: a Unix socket path is limited to 107 bytes, and pytest's tmp_path can be long.
            self._dir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)

    def recv(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            return None

    def wait_for(self, message: str, timeout: float) -> list[str]:
        """Everything received up to and including ``message``; fails after ``timeout``."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            got = self.recv(left) if left > 0 else None
            if got is None:
                raise AssertionError(f"no {message!r} within {timeout} s; got {seen}")
            seen.append(got)
            if got == message:
                return seen

    def drain(self) -> list[str]:
        out: list[str] = []
        while (got := self.recv(0.01)) is not None:
            out.append(got)
        return out

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the notifier ----------------------------------------------------------------------------------


def test_outside_systemd_every_call_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_env({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    notifier.ready()
    notifier.status("running")
    notifier.watchdog()
    notifier.stopping()
    assert notifier.sent == 0


def test_ready_status_and_stopping_reach_the_socket(notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": notify_socket.address})
    notifier.ready()
    notifier.status("outbox: 3 undelivered\nsecond line")
    notifier.stopping()
    assert [notify_socket.recv(5) for _ in range(3)] == [
        "READY=1",
        "STATUS=outbox: 3 undelivered second line",  # one line: a newline starts a new key
        "STOPPING=1",
    ]
    notifier.close()


def test_an_abstract_socket_name_is_reached() -> None:
    sock = NotifySocket(abstract=True)
    try:
        assert sock.address.startswith("@")
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": sock.address})
        notifier.ready()
        assert sock.recv(5) == "READY=1"
        notifier.close()
    finally:
        sock.close()


def test_the_watchdog_interval_comes_from_watchdog_usec_for_this_pid_only() -> None:
    sock = "/run/systemd/notify"
    env = {"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier.from_env(env).watchdog_interval_s == 30.0
    mine = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier.from_env(mine).watchdog_interval_s == 30.0
    # Meant for another process (a wrapper that exec'd us would have to fix it up).
    other = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert SystemdNotifier.from_env(other).watchdog_interval_s is None
    for bad in ("", "0", "-5", "soon"):
        assert SystemdNotifier.from_env({**env, "WATCHDOG_USEC": bad}).watchdog_interval_s is None
    # No socket, no watchdog, whatever WATCHDOG_USEC says.
    assert SystemdNotifier.from_env({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s is None
    assert SystemdNotifier.from_env({"NOTIFY_SOCKET": "relative"}).enabled is False


def test_the_watchdog_pings_at_most_once_per_half_interval(notify_socket: NotifySocket) -> None:
    clock = FakeClock()
    notifier = SystemdNotifier(notify_socket.address, watchdog_interval_s=2.0, clock=clock)
    for _ in range(100):  # the store thread calls it at every turn, often many times a second
        notifier.watchdog()
    assert notify_socket.drain() == ["WATCHDOG=1"]
    clock.now += 0.99
    notifier.watchdog()
    assert notify_socket.drain() == []
    clock.now += 0.01  # half the interval since the last ping
    for _ in range(100):
        notifier.watchdog()
    assert notify_socket.drain() == ["WATCHDOG=1"]
    clock.now += 10.0  # a long gap: one ping, not a burst to catch up
    notifier.watchdog()
    notifier.watchdog()
    assert notify_socket.drain() == ["WATCHDOG=1"]
    notifier.close()


def test_an_unreachable_socket_is_logged_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(folder, "notify")
    clock = FakeClock()
    notifier = SystemdNotifier(path, watchdog_interval_s=1.0, clock=clock)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.sdnotify"):
            notifier.ready()  # nobody has bound the socket: ENOENT
            for _ in range(5):
                notifier.watchdog()
                clock.now += 1.0
            notifier.stopping()
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "could not notify systemd" in warnings[0].getMessage()
            assert notifier.sent == 0
            # The socket appears (systemd back, say): the next notification goes through.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            notifier.watchdog()
            sock.settimeout(5)
            assert sock.recv(100) == b"WATCHDOG=1"
            sock.close()
            assert "notifying systemd again" in caplog.text
    finally:
        notifier.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_full_socket_never_blocks_the_caller(notify_socket: NotifySocket) -> None:
    """The watchdog is pinged from the store thread: a PID 1 that does not read its socket
    must not stop the outbox."""
    clock = FakeClock()
    notifier = SystemdNotifier(notify_socket.address, watchdog_interval_s=1.0, clock=clock)
    done = threading.Event()

    def ping_a_lot() -> None:
        for _ in range(20_000):  # far more than a datagram socket's queue holds
            notifier.watchdog()
            clock.now += 1.0
        done.set()

    threading.Thread(target=ping_a_lot, daemon=True).start()
    assert done.wait(60), "a notification blocked on a full socket"
    assert 0 < notifier.sent < 20_000  # some went through, the rest were refused (EAGAIN)
    notifier.close()


# -- the hub under a watchdog ----------------------------------------------------------------------


def process_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def test_the_hub_says_ready_pings_stops_pinging_when_frozen_and_says_stopping(
    mosquitto, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}  # pytest under systemd
    env["NOTIFY_SOCKET"] = notify_socket.address
    env["WATCHDOG_USEC"] = "2000000"  # pings every 1-2 s: half of 2 s, at the next store turn
    log = (tmp_path / "hub.log").open("wb")
    hub = subprocess.Popen(
        [sys.executable, "-m", "tuquan", "run", "--sim", "--broker", mosquitto.address]
        + ["--data-dir", str(tmp_path / "hub")],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        # The simulated guard post has a camera: READY=1 comes once the model is loaded.
        before_ready = notify_socket.wait_for("READY=1", timeout=120)
        assert all(m == "WATCHDOG=1" for m in before_ready[:-1])  # the store thread runs first
        notify_socket.wait_for("WATCHDOG=1", timeout=10)
        notify_socket.wait_for("WATCHDOG=1", timeout=10)

        # A hung hub: nothing runs, so nothing pings. Waits for the stop, then for silence.
        hub.send_signal(signal.SIGSTOP)
        wait_until(lambda: process_state(hub.pid) == "T", what="hub stopped")
        notify_socket.drain()  # a ping sent just before the stop
        assert notify_socket.recv(3.0) is None, "a frozen hub pinged the watchdog"

        hub.send_signal(signal.SIGCONT)
        notify_socket.wait_for("WATCHDOG=1", timeout=10)

        hub.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", timeout=10)
        assert hub.wait(timeout=30) == 0
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "hub.log").read_text()


def small_hub_config(port: int):
    return parse_config(
        {
            "hub": {"id": "watchdog-hub", "commune": "demo"},
            "broker": {"host": "127.0.0.1", "port": port},
            "inputs": [{"name": "panic-1", "kind": "panic", "pin": 17}],
            "outputs": [{"name": "siren", "kind": "siren", "pin": 23}],
        },
        base_dir=REPO,
        env={},
    )


def test_a_blocked_store_thread_stops_the_pings_until_it_runs_again(
    mosquitto, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    notifier = SystemdNotifier(notify_socket.address, watchdog_interval_s=1.0)
    hub = Hub(
        small_hub_config(mosquitto.port),
        tmp_path,
        pin_factory=MockFactory(),
        notifier=notifier,
    )
    hub.start()
    try:
        notify_socket.wait_for("READY=1", timeout=30)
        notify_socket.wait_for("WATCHDOG=1", timeout=10)

        # The store thread stuck, as on a disk that never answers: everything else still runs.
        entered, release = threading.Event(), threading.Event()

        def stuck(_outbox: object) -> str:
            entered.set()
            release.wait(120)
            return "released"

        result = hub.dispatcher.call(stuck)
        assert entered.wait(10)
        notify_socket.drain()  # a ping from the turn before it got stuck
        assert notify_socket.recv(3.0) is None, "pinged while the store thread was stuck"

        release.set()
        assert result.result(timeout=10) == "released"
        notify_socket.wait_for("WATCHDOG=1", timeout=10)
    finally:
        release.set()
        hub.stop(drain_timeout_s=1.0)
        notifier.close()
    assert "STOPPING=1" in notify_socket.drain()


def test_ready_waits_for_the_store_thread_to_open_the_outbox(
    mosquitto, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """systemd arms the watchdog at READY=1: while the store thread is still opening the outbox
    (a slow disk), the hub works but says nothing; once the thread turns, READY=1 and pings."""
    notifier = SystemdNotifier(notify_socket.address, watchdog_interval_s=1.0)
    factory = MockFactory()
    hub = Hub(small_hub_config(mosquitto.port), tmp_path, pin_factory=factory, notifier=notifier)
    opening, release = threading.Event(), threading.Event()
    really_open = hub.outbox.open

    def slow_open() -> None:  # the disk takes its time (a quick_check on an SD card)
        opening.set()
        release.wait(60)
        really_open()

    hub.outbox.open = slow_open  # type: ignore[method-assign]
    hub.start()
    try:
        assert opening.wait(10)
        factory.pin(17).drive_low()  # the panic button: the siren does not wait for the disk
        wait_until(lambda: hub.rules.sounding() == ["siren"], 5, "the siren")
        assert notify_socket.recv(2.0) is None, "READY=1 (or a ping) before the outbox opened"
        release.set()
        notify_socket.wait_for("READY=1", timeout=10)
        notify_socket.wait_for("WATCHDOG=1", timeout=10)
    finally:
        release.set()
        hub.stop(drain_timeout_s=1.0)
        notifier.close()


# -- the units -------------------------------------------------------------------------------------


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("no systemd-analyze: scripts/setup.sh installs it (apt package systemd)")
    return found


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``{section: [(key, value), ...]}`` in file order; keys repeat (DeviceAllow=...)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is not None:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def last(section: list[tuple[str, str]], key: str) -> str | None:
    values = [v for k, v in section if k == key]
    return values[-1] if values else None


@pytest.mark.parametrize("unit", [HUB_UNIT, RECEIVER_UNIT], ids=lambda p: p.name)
def test_each_unit_scores_at_most_2_0_in_systemd_analyze_security(unit: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert match, output
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, f"{unit.name} scores {exposure}:\n{output}"


def test_the_hub_unit_is_watched_and_still_reaches_its_devices() -> None:
    service = read_unit(HUB_UNIT)["Service"]
    assert last(service, "Type") == "notify"
    assert last(service, "NotifyAccess") == "main"
    assert last(service, "WatchdogSec") == "30"
    assert last(service, "Restart") == "always"
    assert last(read_unit(HUB_UNIT)["Unit"], "StartLimitIntervalSec") == "0"
    # GPIO, serial ports and cameras: PrivateDevices= would hide them all.
    assert last(service, "PrivateDevices") in (None, "no", "false", "0", "off")
    assert last(service, "DevicePolicy") == "closed"
    granted = dict(v.split(None, 1) for k, v in service if k == "DeviceAllow")
    for device, access in HUB_DEVICES.items():
        assert device in granted and access in granted[device], f"{device} {access} not granted"
    # Supplementary groups (gpio, dialout, video) do not exist inside a user namespace.
    assert last(service, "PrivateUsers") in (None, "no", "false", "0", "off")
    # gpiozero reads the board revision from /proc/device-tree or /proc/cpuinfo.
    assert last(service, "ProcSubset") in (None, "all")
    # The hub reads the clock's sync state with adjtimex(), which ProtectClock= forbids.
    assert last(service, "ProtectClock") in (None, "no", "false", "0", "off")
    # ... glibc's adjtimex() being the clock_adjtime system call (clock_adjtime64 on 32-bit).
    filters = [v for k, v in service if k == "SystemCallFilter"]
    assert {"adjtimex", "clock_adjtime", "clock_adjtime64"} <= set(filters[-1].split()), (
        "the clock query must be allowed after ~@privileged, which holds it"
    )


def test_the_units_verify_cleanly(tmp_path: Path) -> None:
    """``systemd-analyze verify`` in a scratch root holding the system's units and a stand-in
    for /opt/tuquan/.venv/bin/tuquan (not installed here); any warning (an unknown or misspelt
    key, a bad value) fails."""
    analyze = systemd_analyze()
    system_units = next(
        (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()),
        None,
    )
    if system_units is None:
        pytest.skip("no systemd unit directory on this machine")
    root = tmp_path / "root"
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    binary = root / "opt/tuquan/.venv/bin/tuquan"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for unit in (HUB_UNIT, RECEIVER_UNIT):
        shutil.copy(unit, etc / unit.name)
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", HUB_UNIT.name, RECEIVER_UNIT.name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# -- the seccomp half of the sandbox, without systemd ---------------------------------------------
# tests/unit_sandbox.py loads a unit's SystemCallFilter=, MemoryDenyWriteExecute= and
# RestrictAddressFamilies= as seccomp filters, as systemd does, and execs a command under them.
# --strict kills the process at any refused call, so none goes unnoticed, except those the units
# refuse on purpose: mbind(), OpenBLAS's memory hint (in @resources), which it does without.
SANDBOX = [sys.executable, str(REPO / "tests" / "unit_sandbox.py")]
STRICT = [*SANDBOX, "--strict", "--tolerate", "mbind"]


def require_seccomp() -> None:
    systemd_analyze()  # expands the filter's groups
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError as exc:
        pytest.skip(f"libseccomp is not installed ({exc}); Debian's systemd depends on it")


def test_the_hub_runs_under_its_units_system_call_filter(
    mosquitto, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """The simulated hub, with its serial nodes, camera and detector (LiteRT, OpenCV, numpy),
    under the hub unit's filters: it says READY, pings, reports a panic and a person, and stops
    cleanly. A refused call would have ended it with SIGSYS."""
    require_seccomp()
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
    env.update(NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="2000000")
    data_dir, log = tmp_path / "hub", tmp_path / "hub.log"
    hub_cmd = [sys.executable, "-m", "tuquan", "run", "--sim", "--broker", mosquitto.address]
    with Subscriber(mosquitto, EVENTS) as sub, log.open("ab") as out:
        proc = subprocess.Popen(
            [*STRICT, str(HUB_UNIT), "--", *hub_cmd, "--data-dir", str(data_dir)],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
        try:
            try:
                notify_socket.wait_for("READY=1", timeout=120)
                assert request(data_dir, {"cmd": "press", "name": "panic-1"}, timeout=10)["ok"]
                walk = {"cmd": "camera", "name": "cam-1", "action": "walk", "seconds": 3.0}
                assert request(data_dir, walk, timeout=10)["ok"]
                sub.wait_until(
                    lambda msgs: {"panic", "person"} <= {m.json()["kind"] for m in msgs},
                    timeout=60,
                )
                notify_socket.wait_for("WATCHDOG=1", timeout=10)
            except (AssertionError, OSError, ValueError) as exc:
                raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()[-3000:]  # -31: killed by SIGSYS
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_the_receiver_runs_under_its_units_system_call_filter(mosquitto, tmp_path: Path) -> None:
    """`tuquan receive` under the receiver unit's filters stores a hub's panic and receipts it,
    then stops cleanly on SIGTERM."""
    require_seccomp()
    log = tmp_path / "receiver.log"
    receive = [sys.executable, "-m", "tuquan", "receive", "--broker", mosquitto.address]
    receive += ["--commune", "demo", "--data-dir", str(tmp_path / "receiver")]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*STRICT, str(RECEIVER_UNIT), "--", *receive],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        with sim_hub(mosquitto, tmp_path / "hub") as hub:
            hub.board.press("panic-1")
            wait_until(
                lambda: outbox_counts(hub).get("delivered", 0) >= 1 or proc.poll() is not None,
                60,
                "the receiver's receipt",
            )
            assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


ADJTIMEX = """
import ctypes
from core.clock import _Timex
libc = ctypes.CDLL(None, use_errno=True)
print(libc.adjtimex(ctypes.byref(_Timex())), ctypes.get_errno())
"""


def test_the_clock_check_needs_the_hub_units_adjtimex_line(tmp_path: Path) -> None:
    """core/clock.py's read-only adjtimex() gets the clock state under the hub unit's filter,
    and is refused (EPERM) without the line that allows it again after ~@privileged."""
    require_seccomp()
    lines = HUB_UNIT.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("SystemCallFilter=adjtimex")]
    assert len(kept) == len(lines) - 1
    without = tmp_path / HUB_UNIT.name
    without.write_text("\n".join(kept) + "\n")

    def adjtimex_under(unit: Path) -> tuple[int, int]:
        result = subprocess.run(
            [*SANDBOX, str(unit), "--", sys.executable, "-c", ADJTIMEX],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        state, err = result.stdout.split()
        return int(state), int(err)

    assert adjtimex_under(HUB_UNIT)[0] >= 0  # TIME_OK ... TIME_ERROR: the kernel answered
    assert adjtimex_under(without) == (-1, 1)  # EPERM
