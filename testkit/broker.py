"""A real Mosquitto on a free loopback port.

``Broker`` is one process with its own config file and log in its own directory; ``stop()`` is
a clean shutdown (SIGTERM), ``kill()`` a crash (SIGKILL), ``start()`` brings it back on the same
port (so clients reconnect to the same address) and ``restart()`` does both. ``Brokers`` starts
several under one directory and kills them all at the end; ``running_broker()`` is one broker
for a ``with`` block, in a temporary directory unless given one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
MISSING = (
    "mosquitto is not installed (tests and benchmarks use a real broker). "
    "Run `make test`, which installs the Debian package mosquitto, or `apt-get install mosquitto`."
)
START_ATTEMPTS = 3  # another process may take the free port before Mosquitto binds it


class MosquittoMissing(RuntimeError):
    """No mosquitto executable on PATH or in the usual places."""


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_CANDIDATES if os.access(p, os.X_OK)), None)


def require_mosquitto() -> str:
    executable = find_mosquitto()
    if executable is None:
        raise MosquittoMissing(MISSING)
    return executable


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the kernel picks it when we bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Broker:
    """One Mosquitto process with its config file and log under ``workdir``.

    ``extra_config`` lines follow the ``listener`` line, so listener options in it (``cafile``,
    ``certfile``, ``require_certificate``...) apply to this listener; ``allow_anonymous=False``
    makes clients authenticate (``password_file``, or a certificate with
    ``use_identity_as_username``). ``persistent=True`` keeps sessions and queued messages in
    ``workdir/db`` across a clean stop (saved every second, so also mostly across a kill).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        executable: str | None = None,
        host: str = HOST,
        port: int | None = None,
        extra_config: str = "",
        allow_anonymous: bool = True,
        persistent: bool = False,
        ready_timeout: float = 10.0,
    ) -> None:
        self.executable = executable or require_mosquitto()
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.extra_config = extra_config
        self.allow_anonymous = allow_anonymous
        self.persistent = persistent
        self.ready_timeout = ready_timeout
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def config_lines(self) -> list[str]:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
        ]
        if self.persistent:
            store = self.workdir / "db"
            store.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {store}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        lines += ["log_dest stderr"] + [
            f"log_type {t}" for t in ("error", "warning", "notice", "information")
        ]
        if os.geteuid() == 0:
            # Started as root, Mosquitto drops to user "mosquitto", which cannot read workdir.
            lines.append("user root")
        if self.extra_config:
            lines.append(self.extra_config)
        return lines

    def _spawn(self) -> bool:
        """Start once; True when it accepts TCP connections, False if it exited early."""
        self.config_path.write_text("\n".join(self.config_lines()) + "\n")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.executable, "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"mosquitto on {self.address} did not accept connections within "
            f"{self.ready_timeout} s; log:\n{self.log_tail()}"
        )

    def start(self, *, retry_for: float = 5.0) -> None:
        """Start (or restart) on ``self.port``; retries while the port is briefly busy."""
        if self.running:
            raise RuntimeError(f"mosquitto on {self.address} is already running")
        deadline = time.monotonic() + retry_for
        while not self._spawn():
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"mosquitto could not start on {self.address}; log:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: SIGTERM (a persistent broker saves), then wait (SIGKILL if it hangs)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash: SIGKILL, so nothing in memory reaches disk."""
        self._end(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        """A clean stop and a start on the same port."""
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10.0)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Broker {self.address} {state}>"


class Brokers:
    """Starts brokers, each in its own directory under ``root``; ``close()`` kills them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.executable = require_mosquitto()
        self.started: list[Broker] = []

    def start(
        self,
        *,
        name: str | None = None,
        extra_config: str = "",
        allow_anonymous: bool = True,
        persistent: bool = False,
    ) -> Broker:
        """A running broker on a free port (another one if the port was taken meanwhile)."""
        workdir = self.root / (name or f"mosquitto-{len(self.started)}")
        last_error: RuntimeError | None = None
        for _ in range(START_ATTEMPTS):
            broker = Broker(
                workdir,
                executable=self.executable,
                extra_config=extra_config,
                allow_anonymous=allow_anonymous,
                persistent=persistent,
            )
            self.started.append(broker)
            try:
                broker.start(retry_for=0.0)
                return broker
            except RuntimeError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def close(self) -> None:
        for broker in self.started:
            broker.kill()


@contextmanager
def running_broker(
    workdir: Path | None = None,
    *,
    extra_config: str = "",
    allow_anonymous: bool = True,
    persistent: bool = False,
) -> Iterator[Broker]:
    """One running broker for the ``with`` block, stopped cleanly at its end."""
    with tempfile.TemporaryDirectory(prefix="testkit-mosquitto-") as tmp:
        brokers = Brokers(workdir or Path(tmp))
        broker = brokers.start(
            name="mosquitto",
            extra_config=extra_config,
            allow_anonymous=allow_anonymous,
            persistent=persistent,
        )
        try:
            yield broker
        finally:
            broker.stop()
            brokers.close()
