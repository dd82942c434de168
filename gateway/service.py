"""Wires one hub together: outbox, store thread, uplink, GPIO, sensor buses, Modbus
detectors, local alarm rules.

The hardware comes in as a gpiozero pin factory (lgpio on a Pi, MockFactory in simulation);
nothing here knows which.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.alarm import AlarmRule, AlarmRules
from gateway.clock import ClockStatus
from gateway.config import Config
from gateway.dispatcher import Dispatcher
from gateway.events import Event
from gateway.outbox import Outbox
from gateway.topics import HubTopics
from gateway.uplink import BrokerSettings, Uplink, UplinkHandlers
from sensors.gpio import GpioInputs, make_outputs
from sensors.modbus import ModbusPollers
from sensors.serial_bus import SerialBuses

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"


def broker_settings(cfg: Config, override: tuple[str, int] | None = None) -> BrokerSettings:
    b = cfg.broker
    host, port = override if override else (b.host, b.port)
    tls = b.tls
    return BrokerSettings(
        host=host,
        port=port,
        client_id=cfg.client_id,
        keepalive_s=b.keepalive_s,
        username=b.username,
        password=b.password.get_secret_value() if b.password else None,
        tls=tls is not None,
        ca_file=str(tls.ca_file) if tls and tls.ca_file else None,
        cert_file=str(tls.cert_file) if tls and tls.cert_file else None,
        key_file=str(tls.key_file) if tls and tls.key_file else None,
        tls_insecure=bool(tls and tls.insecure),
    )


class Hub:
    def __init__(
        self,
        cfg: Config,
        data_dir: Path,
        *,
        pin_factory: Any = None,
        broker: tuple[str, int] | None = None,
    ) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.topics = HubTopics(cfg.hub.commune, cfg.hub.id)
        self.clock = ClockStatus()
        self.outbox = Outbox(
            self.data_dir / OUTBOX_FILE,
            cfg.hub.id,
            max_events=cfg.outbox.max_events,
            delivered_retention_s=cfg.outbox.delivered_retention_s,
        )
        self.dispatcher = Dispatcher(
            self.outbox,
            self.topics,
            receipts=cfg.uplink.receipts,
            receipt_timeout_s=cfg.uplink.receipt_timeout_s,
            health_interval_s=cfg.uplink.health_interval_s,
            health_extra=self._health_extra,
        )
        self.uplink = Uplink(
            broker_settings(cfg, broker),
            self.topics,
            UplinkHandlers(
                connected=self.dispatcher.on_connected,
                disconnected=self.dispatcher.on_disconnected,
                published=self.dispatcher.on_published,
                receipt=self.dispatcher.on_receipt,
                command=self._on_command,
            ),
        )
        self.dispatcher.attach(self.uplink)
        self.outputs = make_outputs(cfg.outputs, pin_factory)
        self.rules = AlarmRules(
            [AlarmRule(frozenset(r.when), r.output, r.seconds) for r in cfg.rules], self.outputs
        )
        self.inputs = GpioInputs(cfg.inputs, self.emit, pin_factory)
        self.buses = SerialBuses(cfg.buses, cfg.nodes, self.emit)
        self.modbus = ModbusPollers(cfg.modbus, self.emit)
        self.malformed_commands = 0
        self._running = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "hub %s (commune %s) starting; outbox %s holds %d undelivered events",
            self.cfg.hub.id,
            self.cfg.hub.commune,
            self.outbox.path,
            self.outbox.undelivered,
        )
        self.dispatcher.start()
        self.uplink.start()
        self.inputs.start()
        self.buses.start()
        self.modbus.start()
        self._running = True

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop taking input, publish what can go out within the timeout, close everything."""
        if not self._running:
            return
        self._running = False
        log.info("hub stopping")
        self.inputs.close()
        self.buses.close()
        self.modbus.close()
        self.dispatcher.stop(drain_timeout_s)
        self.uplink.stop()
        self.rules.close()
        for out in self.outputs.values():
            out.close()
        self.outbox.close()
        log.info("hub stopped")

    # -- the event entry point (any thread) -----------------------------------------------

    def emit(self, event: Event) -> Future[list[Event]]:
        """Sound local outputs at once, then queue the event for commit and publishing."""
        event = replace(event, clock_synced=self.clock.synced())
        self.rules.handle(event)
        committed = self.dispatcher.submit([event])  # logged after: the store thread goes first
        log.info(
            "event %s %s%s from %s",
            event.id,
            event.kind,
            " restore" if event.is_restore else "",
            event.source,
        )
        return committed

    # -- remote commands (paho's network thread) ------------------------------------------

    def _on_command(self, name: str, payload: bytes, retained: bool = False) -> None:
        try:
            body = json.loads(payload) if payload else {}
            if not isinstance(body, dict):
                raise ValueError("command body must be a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            self.malformed_commands += 1
            log.warning("dropped malformed command %s: %s", name[:40], exc)
            return
        request_id = str(body.get("request_id", ""))[:64]
        result: dict[str, Any] = {"cmd": name[:40], "request_id": request_id, "ok": True}
        refusal = _refusal(body, retained, time.time())
        if refusal is not None:
            # A retained or stale `silence` would silence an alarm nobody has seen yet.
            self.malformed_commands += 1
            log.warning("refused command %s: %s", name[:40], refusal)
            result.update(ok=False, error=refusal, hub_ts=round(time.time(), 3))
        elif name == "silence":
            by = str(body.get("by", "remote"))[:64]
            result["silenced"] = self.rules.silence(reason=f"remote command by {by}")
            self.emit(Event(kind="silenced", zone="hub", source="remote", data={"by": by}))
        elif name == "ping":
            result["ts"] = time.time()
        else:
            self.malformed_commands += 1
            result.update(ok=False, error=f"unknown command {name[:40]!r}")
        self.uplink.publish_json(self.topics.cmd_result, result)

    def _health_extra(self) -> dict[str, Any]:
        return {
            "clock_synced": self.clock.synced(),
            "inputs": self.inputs.states(),
            "sounding": self.rules.sounding(),
            "malformed_commands": self.malformed_commands,
            "bad_receipts": self.uplink.stats.bad_receipts,
            "buses": self.buses.health(),
            "modbus": self.modbus.health(),
        }


COMMAND_MAX_AGE_S = 120.0  # a command's optional "ts" older than this is refused as stale
COMMAND_MAX_AHEAD_S = 30.0  # ... and one this far in the hub's future (clock skew, replay)


def _refusal(body: dict[str, Any], retained: bool, now: float) -> str | None:
    """Why a command must not be carried out, or None.

    Commands are not retained: a retained one would run again at every reconnect. The optional
    "ts" (Unix seconds, when the console sent it) bounds how late a command queued in the
    hub's session may still act.
    """
    if retained:
        return "retained commands are refused"
    if "ts" not in body:
        return None
    ts = body["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return "ts must be Unix seconds"
    if now - ts > COMMAND_MAX_AGE_S:
        return f"stale command: sent {now - ts:.0f} s ago (limit {COMMAND_MAX_AGE_S:.0f} s)"
    if ts - now > COMMAND_MAX_AHEAD_S:
        return "ts is in the future"
    return None
