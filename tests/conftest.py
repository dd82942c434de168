"""Shared fixtures: a real Mosquitto broker on a free loopback port.

``mosquitto`` yields a running :class:`Broker`; ``mosquitto_factory`` makes more brokers (a second
commune, a bridge, a TLS listener) with extra configuration lines. Every broker is stopped when
the test ends, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_CANDIDATES if os.access(p, os.X_OK)), None)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel picks it when we bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Broker:
    """One Mosquitto process with its own config file and log under ``workdir``.

    ``stop()`` is a clean shutdown (SIGTERM), ``kill()`` a crash (SIGKILL); ``start()`` brings
    it back on the same port, so clients reconnect to the same address.

    ``extra_config`` lines follow the ``listener`` line, so listener options in it (``cafile``,
    ``certfile``, ``require_certificate``...) apply to the test's listener; ``allow_anonymous``
    false makes clients authenticate (``password_file``, or a certificate with
    ``use_identity_as_username``).
    """

    def __init__(
        self,
        executable: str,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_config: str = "",
        allow_anonymous: bool = True,
        ready_timeout: float = 10.0,
    ) -> None:
        self.executable = executable
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.extra_config = extra_config
        self.allow_anonymous = allow_anonymous
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

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            # Started as root, Mosquitto drops to user "mosquitto", which cannot read tmp_path.
            lines.append("user root")
        if self.extra_config:
            lines.append(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    def _spawn(self) -> bool:
        """Start once; True when it accepts TCP connections, False if it exited early."""
        self._write_config()
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
        """Clean shutdown: SIGTERM, then wait (SIGKILL if it hangs)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash: SIGKILL, so nothing in memory reaches disk."""
        self._end(signal.SIGKILL, 10.0)

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


def _require_mosquitto() -> str:
    executable = find_mosquitto()
    if executable is None:
        pytest.fail(
            "mosquitto is not installed (tests use a real broker). "
            "Run `make test`, which installs the Debian package mosquitto, "
            "or `apt-get install mosquitto`.",
            pytrace=False,
        )
    return executable


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start brokers on demand: ``mosquitto_factory(extra_config="...")`` -> running Broker.

    ``allow_anonymous=False`` turns anonymous access off (see :class:`Broker`)."""
    executable = _require_mosquitto()
    brokers: list[Broker] = []

    def make(
        *, extra_config: str = "", name: str | None = None, allow_anonymous: bool = True
    ) -> Broker:
        workdir = tmp_path / (name or f"mosquitto-{len(brokers)}")
        last_error: RuntimeError | None = None
        for _ in range(3):  # another process may take the free port before Mosquitto binds it
            broker = Broker(
                executable, workdir, extra_config=extra_config, allow_anonymous=allow_anonymous
            )
            brokers.append(broker)
            try:
                broker.start(retry_for=0.0)
                return broker
            except RuntimeError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    try:
        yield make
    finally:
        for broker in brokers:
            broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """A running Mosquitto on 127.0.0.1 and a free port, anonymous access, no persistence."""
    return mosquitto_factory(name="mosquitto")
