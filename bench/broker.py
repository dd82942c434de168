"""A throwaway Mosquitto on a free loopback port, for one benchmark run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"


def find_mosquitto() -> str:
    for path in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Broker:
    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        self.host = HOST
        self.port = free_port()
        self.workdir = workdir
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence false",
            # Unlimited queue per client: the default (1000) silently drops QoS 1 messages
            # when a subscriber falls behind a fast publisher, which would end a run early.
            "max_queued_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto", which cannot read workdir
        if extra_config:
            lines.append(extra_config)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = workdir / "mosquitto.log"
        self.start()

    def restart(self) -> None:
        """Stop (SIGTERM, so a persistent broker saves) and start again on the same port."""
        self.stop()
        self.start()

    def start(self) -> None:
        """Start Mosquitto on this port and wait until it listens."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10.0
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto on port {self.port} never listened") from None
                time.sleep(0.02)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10.0)


@contextmanager
def mosquitto(extra_config: str = "") -> Iterator[Broker]:
    """A running broker for the ``with`` block; retries if another process takes the port."""
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as tmp:
        for attempt in range(3):
            try:
                broker = Broker(Path(tmp), extra_config)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        try:
            yield broker
        finally:
            broker.stop()
