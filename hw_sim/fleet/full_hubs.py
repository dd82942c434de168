"""A handful of full simulated hubs among the light ones: the real hub (``gateway.service.Hub``
with its outbox, store thread, uplink and alarm rules) on simulated hardware, in this process,
each with a data dir of its own.

They take the same load as the light hubs: telemetry through the simulator's control channel
(``emit``, as a sensor would) and, in a drill, a press of ``panic-1`` through the same
channel. What they sent and what came back is read from their outboxes at the end: every row
with its seq and state, and the time from its commit to its receipt.
"""

from __future__ import annotations

import logging
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.signing import PublicKey, SigningKey
from gateway.trust import HUB_KEY_FILE, trust_commune
from hw_sim.control import request
from hw_sim.fleet.profile import BrokerTarget, HubTiming
from hw_sim.simulator import SimulatedHub, default_config_path
from settings import Config, parse_config

log = logging.getLogger(__name__)

# The default simulated hub without its camera and sensor bus: quick to start, and no CPU
# spent on frames in a load test of the link.
LEFT_OUT = ("cameras", "detection", "snapshots", "buses", "nodes")
DELIVERED = 2  # the outbox's row state once receipted


def full_hub_config(hub: str, target: BrokerTarget, timing: HubTiming) -> Config:
    data = tomllib.loads(default_config_path().read_text())
    for name in LEFT_OUT:
        data.pop(name, None)
    data["hub"].update(id=hub, commune=target.commune, name=f"Fleet full hub {hub}")
    data["broker"] = {
        "host": target.host,
        "port": target.port,
        "keepalive_s": max(5, timing.keepalive_s),
    }
    data.setdefault("uplink", {}).update(
        receipts=True,
        receipt_timeout_s=timing.receipt_timeout_s,
        health_interval_s=timing.health_s,
    )
    return parse_config(data, base_dir=default_config_path().parent, env={})


@dataclass(frozen=True)
class OutboxRow:
    id: str
    seq: int
    priority: int
    state: int
    created_at: float | None
    delivered_at: float | None


class FullHub:
    def __init__(
        self,
        hub: str,
        target: BrokerTarget,
        timing: HubTiming,
        data_dir: Path,
        commune_key: PublicKey | None,
    ) -> None:
        self.hub = hub
        self.target = target
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        # Made before the hub starts, so it can be enrolled with the light hubs' keys.
        self.key, _ = SigningKey.load_or_create(data_dir / HUB_KEY_FILE)
        if commune_key is not None:
            trust_commune(data_dir, commune_key)
        self.sim = SimulatedHub(
            full_hub_config(hub, target, timing), data_dir, broker=(target.host, target.port)
        )
        self.telemetry_sent = 0
        self.panics = 0
        self.failures = 0

    def start(self) -> None:
        self.sim.start()

    def stop(self) -> None:
        self.sim.stop(drain_timeout_s=1.0)

    def _request(self, message: dict[str, Any]) -> bool:
        try:
            answer = request(self.data_dir, message)
        except (OSError, ValueError) as exc:
            self.failures += 1
            log.error("full hub %s: control request %s failed: %s", self.hub, message, exc)
            return False
        if not answer.get("ok"):
            self.failures += 1
            log.error("full hub %s: %s refused: %s", self.hub, message, answer.get("error"))
            return False
        return True

    def telemetry(self) -> None:
        if self._request({"cmd": "emit", "kind": "telemetry"}):
            self.telemetry_sent += 1

    def panic(self) -> None:
        """A short press of the panic button (well under its hold time: a panic, not duress)."""
        if self._request({"cmd": "press", "name": "panic-1"}):
            self.panics += 1
        self._request({"cmd": "release", "name": "panic-1"})

    def online(self) -> bool:
        return bool(self.sim.hub.uplink.online)

    def undelivered(self) -> int:
        counts = self.sim.hub.status()["outbox"]
        return int(counts.get("pending", 0)) + int(counts.get("sent", 0))

    def rows(self) -> list[OutboxRow]:
        """Every row of the hub's outbox (delivered rows are kept a day)."""

        def read(outbox: Any) -> list[tuple[Any, ...]]:
            return list(
                outbox.conn.execute(
                    "SELECT id, seq, priority, state, created_at, delivered_at FROM outbox"
                    " ORDER BY seq"
                )
            )

        raw = self.sim.hub.dispatcher.call(read).result(timeout=30)
        return [OutboxRow(*r) for r in raw]


def wait_online(hubs: list[FullHub], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(h.online() for h in hubs):
            return True
        time.sleep(0.1)
    return all(h.online() for h in hubs)
