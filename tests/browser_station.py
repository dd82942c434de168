"""A whole commune station for the browser tests, every part a real process: Mosquitto, the
police console (``tuquan console``: receiver, desk and web pages) and the default simulated hub
(``tuquan run --sim``), enrolled both ways (the hub's key at the receiver, the commune's key at
the hub), so the hub runs only commands the desk signed and the desk trusts only the hub's
signed health.

The hub's keepalive is 5 s (its last will says offline 7.5 s after it vanished) and its health
comes every 5 s; the desk's silence window is 20 s. ``kill_hub`` is a ``kill -9`` and
``start_hub`` brings it back on the same data dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import httpx

from hw_sim.control import request
from hw_sim.simulator import default_config_path
from testkit.broker import Broker, free_port
from testkit.hubs import COMMUNE, HUB
from testkit.waiting import wait_until

TUQUAN = [sys.executable, "-m", "tuquan"]
REPO = Path(__file__).resolve().parent.parent
PASSWORD = "mật khẩu trực ban 2024"
OPERATOR = "trucban"  # the duty officer
VIEWER = "v"
OTHER_HUB = "truong-2"  # expected, never connects: the map shows it, supervision raises it
HUB_KEEPALIVE_S = 5
HEALTH_INTERVAL_S = 5
WINDOW_S = 20
START_TIMEOUT_S = 90  # the hub loads the detection model and opens its camera on a loaded box


def tuquan(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    """Run ``tuquan ARGS`` from this checkout; its stdout (fails the test on a non-zero exit)."""
    done = subprocess.run(
        [*TUQUAN, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
    assert done.returncode == 0, f"tuquan {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done.stdout


def hub_config(broker_port: int) -> str:
    """The default simulated hub's config file with a short keepalive and health interval."""
    text = default_config_path().read_text()
    changed = text.replace(
        '[broker]\nhost = "127.0.0.1"\nport = 1883\n',
        f'[broker]\nhost = "127.0.0.1"\nport = {broker_port}\nkeepalive_s = {HUB_KEEPALIVE_S}\n',
    ).replace("[uplink]\n", f"[uplink]\nhealth_interval_s = {HEALTH_INTERVAL_S}.0\n")
    assert changed.count(f"keepalive_s = {HUB_KEEPALIVE_S}") == 1, "[broker] not found"
    assert changed.count("health_interval_s =") == 1, "[uplink] not found"
    return changed


def receiver_config(broker_port: int, listen: str) -> str:
    return f"""\
[receiver]
commune = "{COMMUNE}"

[broker]
host = "127.0.0.1"
port = {broker_port}

[supervision]
health_interval_s = {HEALTH_INTERVAL_S}
window_s = {WINDOW_S}

[console]
listen = "{listen}"

[[hubs]]
id = "{HUB}"
name = "Chợ An Đông, cổng 1"
place = "34 An Dương Vương"
latitude = 10.7570
longitude = 106.6730
contact = "Tổ trưởng Nguyễn Văn A, 0901 234 567"

[[hubs]]
id = "{OTHER_HUB}"
name = "Trường tiểu học Lê Lợi"
place = "12 Trần Hưng Đạo"
latitude = 10.7612
longitude = 106.6795
"""


class Process:
    """A ``tuquan`` process with its output in a log file."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*TUQUAN, *self.args],
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> bool:
        """True while it runs; fails the waiting test with its log's tail once it has died."""
        assert self.running, f"{self.name} exited: {self.proc and self.proc.returncode}\n" + (
            self.log_tail()
        )
        return True

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def kill(self) -> None:
        """``kill -9``: nothing said goodbye, the broker's last will speaks for it."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._close_log()

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait (SIGKILL if it hangs); the exit status, None if it had to be killed."""
        if self.proc is None:
            return None
        code: int | None = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                code = None
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Station:
    """Mosquitto, ``tuquan console`` and ``tuquan run --sim`` under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.broker = Broker(root / "broker")
        self.hub_dir = root / "hub"
        self.console_dir = root / "console"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        listen = f"127.0.0.1:{self.port}"
        self.receiver_config = root / "receiver.toml"
        self.receiver_config.write_text(receiver_config(self.broker.port, listen))
        self.hub_config = root / "hub.toml"
        self.hub_config.write_text(hub_config(self.broker.port))
        self.console = Process(
            "tuquan console",
            [
                "console",
                "--config",
                str(self.receiver_config),
                "--data-dir",
                str(self.console_dir),
                "--listen",
                listen,
                "--broker",
                self.broker.address,
            ],  # fmt: skip
            root / "console.log",
        )
        self.hub = Process(
            "tuquan run --sim",
            [
                "run",
                "--sim",
                "--config",
                str(self.hub_config),
                "--broker",
                self.broker.address,
                "--data-dir",
                str(self.hub_dir),
            ],  # fmt: skip
            root / "hub.log",
        )

    # -- the whole station -------------------------------------------------------------

    def start(self) -> Station:
        self.broker.start()
        self.enrol()
        for name, role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
            tuquan("console", "user", "add", name, "--role", role,
                   "--data-dir", str(self.console_dir), stdin=PASSWORD + "\n")  # fmt: skip
        self.console.start()
        self.hub.start()
        wait_until(self._console_answers, START_TIMEOUT_S, "the console to answer")
        self.wait_hub_online()
        return self

    def stop(self) -> None:
        """Stop whatever still runs (a test may have stopped or killed a part already)."""
        for process in (self.hub, self.console):
            process.stop()
        self.broker.stop()

    def enrol(self) -> None:
        """The installer's steps: both keys made, each side told the other's public key."""
        tuquan("keys", "init", "--data-dir", str(self.hub_dir))
        tuquan("keys", "init", "--receiver", "--data-dir", str(self.console_dir))
        hub_key = tuquan("keys", "show", "--data-dir", str(self.hub_dir)).splitlines()[0]
        commune_key = tuquan(
            "keys", "show", "--receiver", "--data-dir", str(self.console_dir)
        ).splitlines()[0]
        tuquan("keys", "trust", HUB, hub_key, "--data-dir", str(self.console_dir))
        tuquan("keys", "trust", "--commune", commune_key, "--data-dir", str(self.hub_dir))

    def _console_answers(self) -> bool:
        self.console.check_alive()
        try:
            return httpx.get(f"{self.url}/login", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    # -- the simulated hub -------------------------------------------------------------

    def sim(self, *args: str) -> dict[str, Any]:
        """``tuquan sim --data-dir HUB ARGS``: the hub's JSON answer."""
        answer: dict[str, Any] = json.loads(tuquan("sim", "--data-dir", str(self.hub_dir), *args))
        return answer

    def hub_status(self) -> dict[str, Any]:
        """The hub's status over its control socket ({} while nobody answers there)."""
        try:
            return request(self.hub_dir, {"cmd": "status"})
        except (OSError, ValueError):
            return {}

    def siren_sounding(self) -> bool:
        return "siren" in self.hub_status().get("sounding", [])

    def camera_frames(self) -> int:
        frames = self.hub_status().get("cameras", {}).get("cam-1", {}).get("frames", 0)
        return int(frames)

    def wait_hub_online(self) -> None:
        """The hub is up, connected, and its camera is playing."""
        wait_until(
            lambda: (
                self.hub.check_alive()
                and self.hub_status().get("online") is True
                and self.camera_frames() >= 5
            ),
            START_TIMEOUT_S,
            "the simulated hub online with cam-1 playing",
            step=0.5,
        )

    def ensure_hub(self) -> None:
        """The hub running again, whatever an earlier test did to it."""
        if not self.hub.running:
            self.hub.start()
        self.wait_hub_online()

    def kill_hub(self) -> None:
        self.hub.kill()

    def press_panic(self) -> None:
        """A resident's short press of panic-1 (the siren sounds for 180 s)."""
        self.sim("press", "panic-1")
        self.sim("release", "panic-1")
