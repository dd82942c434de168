"""``tuquan receive`` as a process of its own, for tests that kill a receiver for real (SIGKILL:
no offline status, no last batch, the socket torn down by the kernel).

    with ReceiverProcess.configured(broker, tmp_path / "rx-a", commune="demo",
                                    share_group="police", client_id="rx-a",
                                    data_dir=shared) as rx:
        rx.wait_subscribed()
        ...
        rx.kill()

Its config file is written beside its logs (``receiver.toml``); its feed (stdout) goes to
``feed.jsonl`` and its log (stderr) to ``receiver.log`` in ``workdir``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from testkit.mqtt import HasAddress
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]


def receiver_toml(broker: HasAddress, **receiver: Any) -> str:
    """A receiver config: ``[receiver]`` from the keywords (strings, ints, lists of strings)
    and ``[broker]`` at ``broker``'s address."""
    lines = ["[receiver]"]
    for key, value in receiver.items():
        if value is None:
            continue
        # JSON's strings, lists and integers are TOML's too.
        lines.append(f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}")
    lines += ["[broker]", f'host = "{broker.host}"', f"port = {broker.port}"]
    return "\n".join(lines) + "\n"


class ReceiverProcess:
    def __init__(self, workdir: Path, config: Path, data_dir: Path, *args: str) -> None:
        self.workdir = workdir
        self.config = config
        self.data_dir = data_dir
        self.args = args
        self.log_path = workdir / "receiver.log"
        self.feed_path = workdir / "feed.jsonl"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def configured(
        cls, broker: HasAddress, workdir: Path, *, data_dir: Path, **receiver: Any
    ) -> ReceiverProcess:
        """A receiver process whose ``[receiver]`` table is ``receiver`` (not started)."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "receiver.toml"
        config.write_text(receiver_toml(broker, **receiver))
        return cls(workdir, config, data_dir)

    def start(self) -> ReceiverProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "tuquan", "receive", "--config", str(self.config)]
        command += ["--data-dir", str(self.data_dir), *self.args]
        with self.feed_path.open("ab") as out, self.log_path.open("ab") as err:
            self._proc = subprocess.Popen(
                command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=REPO
            )
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_subscribed(self, timeout: float = 30.0, times: int = 1) -> None:
        """Until its log says it subscribed (``times`` times since it was first started)."""
        wait_until(
            lambda: self.log().count('msg="subscribed to') >= times or not self.running,
            timeout,
            f"receiver subscribed; log:\n{self.log()[-2000:]}",
        )
        if not self.running:
            raise AssertionError(f"receiver exited; log:\n{self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        self._signal(signal.SIGKILL)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean stop) and wait; SIGKILL if it does not end in time."""
        self._signal(signal.SIGTERM)
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self._proc.wait(10)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self._proc.wait(10)

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
