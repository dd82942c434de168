"""Commune brokers bridged to a province broker, configured by ``tuquan bridge-config`` itself.

The province Mosquitto authenticates every client (a password file made by
``mosquitto_passwd``) and enforces the ACL lines the command wrote for each bridge and for the
province receiver, plus a ``tap`` user that may read everything (tests count what arrived). Each
commune Mosquitto is persistent and includes the bridge file the command wrote
(``include_dir``), whose address is a ``BlackHole`` proxy in front of the province: ``cut``
makes the link silent (nothing passes, nothing closes, as a dead route does) and ``heal``
resets it. ``bridge_up`` reads the bridge's own notification on the commune broker.

    with BridgedBrokers(tmp_path, ["xa-a", "xa-b"], hubs=2) as net:
        net.province        # Broker
        net.communes["xa-a"]  # Broker
        net.receiver_login  # (user, password) for a province receiver
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from commune.bridge_config import make_plan, notification_topic, province_acl
from commune.broker_config import make_password_file
from testkit.broker import Broker, free_port
from testkit.mqtt import Subscriber
from testkit.proxy import BlackHole

RECEIVER_USER = "province-receiver"
CONSOLE_USER = "province-console"
TAP_USER = "tap"


def bridge_user(commune: str) -> str:
    return f"bridge-{commune}"


def bridge_client_id(commune: str) -> str:
    """What ``tuquan bridge-config`` names the bridge by default."""
    return f"tuquan-bridge-{commune}"


class BridgedBrokers:
    def __init__(
        self,
        root: Path,
        communes: Sequence[str],
        *,
        hubs: int = 2,
        keepalive_s: int = 5,
        sizing: Sequence[str] = (),
        commune_config: str = "sys_interval 1\nmax_inflight_messages 10000",
        after_bridge: str = "",
    ) -> None:
        """``sizing``: more ``tuquan bridge-config`` flags (``--outage-s``, rates...);
        ``commune_config`` lines come before the bridge file, ``after_bridge`` lines after it
        (and so override it: a smaller queue, for a test that wants the bridge to drop)."""
        self.after_bridge = after_bridge
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.names = list(communes)
        self.passwords = {
            user: secrets.token_urlsafe(12)
            for user in [*map(bridge_user, communes), RECEIVER_USER, CONSOLE_USER, TAP_USER]
        }
        port = free_port()
        self.proxies: dict[str, BlackHole] = {}
        self.communes: dict[str, Broker] = {}
        self.bridge_files: dict[str, Path] = {}
        self.province = Broker(self.root / "province", port=port)  # configured below
        try:
            for commune in communes:
                self._write_bridge(commune, hubs, keepalive_s, sizing)
            self._start_province()
            for commune in communes:
                self._start_commune(commune, commune_config)
        except BaseException:
            self.close()
            raise

    @property
    def receiver_login(self) -> tuple[str, str]:
        return RECEIVER_USER, self.passwords[RECEIVER_USER]

    @property
    def console_login(self) -> tuple[str, str]:
        return CONSOLE_USER, self.passwords[CONSOLE_USER]

    def tap(self, *topics: str) -> Subscriber:
        """A subscriber on the province broker that may read everything."""
        return Subscriber(
            self.province, *topics, username=TAP_USER, password=self.passwords[TAP_USER]
        )

    def queue_limits(self) -> tuple[int, int]:
        """The sum of the bridges' max_queued_messages and max_queued_bytes: what the province
        broker must hold when every bridge heals at once (after a restart of it)."""
        messages = bytes_ = 0
        for path in self.bridge_files.values():
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max_queued_messages":
                    messages += int(value)
                elif key == "max_queued_bytes":
                    bytes_ += int(value)
        return messages, bytes_

    def _start_province(self) -> None:
        workdir = self.province.workdir
        acl = [
            province_acl(
                make_plan(
                    {
                        "communes": (commune,),
                        "province": ("127.0.0.1:1",),
                        "username": bridge_user(commune),
                        "rates": {"hubs": 1},
                    }
                ),
                (RECEIVER_USER,) if i == 0 else (),
                (CONSOLE_USER,) if i == 0 else (),
            )
            for i, commune in enumerate(self.names)
        ]
        acl.append(f"\nuser {TAP_USER}\ntopic read tuquan/#\ntopic read $SYS/#\n")
        (workdir / "tuquan.acl").write_text("\n".join(acl))
        make_password_file(workdir / "tuquan.passwd", self.passwords)
        messages, bytes_ = self.queue_limits()
        self.province = Broker(
            workdir,
            port=self.province.port,
            allow_anonymous=False,
            persistent=True,
            extra_config="\n".join(
                [
                    f"password_file {workdir / 'tuquan.passwd'}",
                    f"acl_file {workdir / 'tuquan.acl'}",
                    f"max_queued_messages {messages}",
                    f"max_queued_bytes {bytes_}",
                ]
            ),
        )
        self.province.start()

    def _write_bridge(
        self, commune: str, hubs: int, keepalive_s: int, sizing: Sequence[str]
    ) -> None:
        """``tuquan bridge-config`` for the commune, its address a proxy to the province."""
        workdir = self.root / commune
        conf_d = workdir / "conf.d"
        conf_d.mkdir(parents=True, exist_ok=True)
        proxy = BlackHole(self.province)
        self.proxies[commune] = proxy
        credentials = workdir / "bridge-credentials.toml"
        credentials.write_text(f'password = "{self.passwords[bridge_user(commune)]}"\n')
        bridge_file = conf_d / "tuquan-bridge.conf"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tuquan",
                "bridge-config",
                "--commune",
                commune,
                "--province",
                f"{proxy.host}:{proxy.port}",
                "--username",
                bridge_user(commune),
                "--credentials-file",
                str(credentials),
                "--hubs",
                str(hubs),
                "--keepalive-s",
                str(keepalive_s),
                "--out",
                str(bridge_file),
                *sizing,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, f"tuquan bridge-config exited {done.returncode}: {done.stderr}"
        self.bridge_files[commune] = bridge_file

    def _start_commune(self, commune: str, extra: str) -> None:
        workdir = self.root / commune
        # Mosquitto reads an include_dir where the line is: what follows it overrides it.
        broker = Broker(
            workdir,
            persistent=True,
            extra_config=f"{extra}\ninclude_dir {workdir / 'conf.d'}\n{self.after_bridge}",
        )
        broker.start()
        self.communes[commune] = broker

    def bridge_up(self, commune: str) -> bool | None:
        """The bridge's state as the province broker has it: "1" when it connected, its will
        "0" once the province found the link dead (None before either)."""
        with self.tap(notification_topic(bridge_client_id(commune))) as sub:
            try:
                message = sub.wait_for(1, timeout=2)[-1]
            except AssertionError:
                return None
        return message.payload == b"1"

    def province_connects(self, commune: str) -> int:
        """How many times the commune's bridge has connected to the province broker."""
        try:
            log = self.province.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return log.count(f" as {bridge_client_id(commune)} (")

    def cut(self, commune: str) -> None:
        self.proxies[commune].swallow()

    def heal(self, commune: str) -> None:
        self.proxies[commune].heal()

    def close(self) -> None:
        for broker in self.communes.values():
            broker.kill()
        for proxy in self.proxies.values():
            with contextlib.suppress(OSError):
                proxy.close()
        self.province.kill()

    def __enter__(self) -> BridgedBrokers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
