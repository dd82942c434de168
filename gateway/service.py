"""Wires one hub together: outbox, store thread, uplink, GPIO, sensor buses, Modbus
detectors, cameras, local alarm rules, and the link report (the status LED and the ``uplink``
trouble event, gateway/link_report.py).

The hardware comes in as a gpiozero pin factory (lgpio on a Pi, MockFactory in simulation) and,
for cameras, optional frame sources that replace the ones the config describes (the simulator's
virtual cameras); nothing here knows which.

Cameras, the detector and the snapshot store are imported only when the config has cameras:
a hub without them never loads OpenCV, Pillow or the inference runtime. A detection model that
cannot be loaded (missing, wrong hash) leaves the cameras off: the hub reports one
``camera_offline`` per camera saying why, and runs on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

from core.clock import ClockStatus
from core.events import NEW, RESTORE, Event
from core.topics import HubTopics
from gateway.alarm import AlarmRule, AlarmRules
from gateway.broker import BrokerSettings, settings_from_table
from gateway.command_check import command_trust
from gateway.commands import Commands
from gateway.dispatcher import Dispatcher
from gateway.guarded_outbox import GuardedOutbox
from gateway.link_report import LinkReport
from gateway.receipts import receipt_gate
from gateway.sdnotify import SystemdNotifier
from gateway.snapshots import SnapshotPublisher
from gateway.trust import load_hub_keys
from gateway.uplink import Liveness, Uplink, UplinkHandlers
from sensors.gpio_inputs import GpioInputs
from sensors.gpio_outputs import make_outputs, output_faults
from sensors.modbus import ModbusPollers
from sensors.serial_bus import SerialBuses
from settings import Config

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
SNAPSHOT_DIR = "snapshots"
REFUSED_FILE = "cameras-refused.json"  # cameras reported off because the model was refused


def broker_settings(cfg: Config, override: tuple[str, int] | None = None) -> BrokerSettings:
    """The hub's connection settings: its ``[broker]`` under its client id."""
    return settings_from_table(cfg.broker, cfg.client_id, override)


def status_led_name(cfg: Config) -> str | None:
    """``uplink.status_led``, else the first LED output that no alarm rule drives."""
    if cfg.uplink.status_led is not None:
        return cfg.uplink.status_led
    driven = {rule.output for rule in cfg.rules}
    return next((o.name for o in cfg.outputs if o.kind == "led" and o.name not in driven), None)


class HubStatus(TypedDict):
    """The hub's state now (:meth:`Hub.status`), as JSON."""

    hub: str
    commune: str
    online: bool  # connected, and the link not found silent
    inputs: dict[str, bool | str]  # active or not, "fault" while its pin cannot be read
    outputs: dict[str, bool]  # on or off
    sounding: list[str]  # the outputs the alarm rules have on
    buses: dict[str, bool]  # each serial bus: its port open or not
    outbox: dict[str, int]  # rows by state, undelivered rows by priority


class Hub:
    """One hub. Besides its lifecycle (start, stop) and its event entry point (emit), what
    others use of it is its public surface: status, health, camera_health, bus_open,
    mute_inputs. Its attributes are the parts it wires together (tests may look at them)."""

    def __init__(
        self,
        cfg: Config,
        data_dir: Path,
        *,
        pin_factory: Any = None,
        broker: tuple[str, int] | None = None,
        camera_sources: Mapping[str, Any] | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the outbox reports it and runs from memory
            log.error("data dir %s cannot be made: %s", self.data_dir, exc)
        self.topics = HubTopics(cfg.hub.commune, cfg.hub.id)
        self.snapshots: SnapshotPublisher | None = None
        self.clock = ClockStatus()
        # systemd's watchdog is pinged from the store thread's turns: if the thread that owns
        # the outbox hangs (a disk that never answers), the pings stop and systemd restarts us.
        self._notifier = notifier if notifier is not None else SystemdNotifier.from_env()
        # Outputs and the siren's rules first: nothing below (the disk, the broker) may keep
        # the siren from sounding. The outbox file is opened later, by the store thread.
        self.outputs = make_outputs(cfg.outputs, pin_factory)
        self.rules = AlarmRules(
            [AlarmRule(frozenset(r.when), r.output, r.seconds) for r in cfg.rules], self.outputs
        )
        self.keys = load_hub_keys(self.data_dir)
        signer = self.keys.signing if self.keys is not None else None
        self.outbox = GuardedOutbox(
            self.data_dir / OUTBOX_FILE,
            cfg.hub.id,
            max_events=cfg.outbox.max_events,
            delivered_retention_s=cfg.outbox.delivered_retention_s,
            report=self.emit,
            signer=signer,
        )
        self.dispatcher = Dispatcher(
            self.outbox,
            self.topics,
            receipts=cfg.uplink.receipts,
            receipt_timeout_s=cfg.uplink.receipt_timeout_s,
            health_interval_s=cfg.uplink.health_interval_s,
            health_extra=self._health_extra,
            on_turn=self._on_store_turn,
            signer=signer,
        )
        self.receipts = receipt_gate(
            cfg.hub.id, self.keys, self.data_dir, self.dispatcher.on_receipt
        )
        led = status_led_name(cfg)
        self.link_report = LinkReport(
            self.emit,
            trouble_after_s=cfg.uplink.trouble_after_s,
            led=self.outputs[led] if led is not None else None,
            led_name=led,
        )
        self.uplink = Uplink(
            broker_settings(cfg, broker),
            self.topics,
            UplinkHandlers(
                connected=self._on_connected,
                disconnected=self._on_disconnected,
                published=self._on_published,
                receipt=self.receipts,
                command=self._on_command,
                receiver_online=self.dispatcher.on_receiver_online,
                link_changed=self.link_report.changed,
            ),
            liveness=Liveness(cfg.uplink.ping_interval_s, cfg.uplink.link_timeout_s),
        )
        self.dispatcher.attach(self.uplink)
        self.inputs = GpioInputs(cfg.inputs, self.emit, pin_factory)
        self.buses = SerialBuses(cfg.buses, cfg.nodes, self.emit)
        self.modbus = ModbusPollers(cfg.modbus, self.emit)
        # Cameras: the store and its publisher now, the detector and the pipelines at start.
        self.camera_sources = dict(camera_sources or {})
        self.cameras: Any = None  # sensors.camera.cameras.Cameras, once started
        self.camera_error: str | None = None  # why the cameras are off
        if cfg.cameras:
            from sensors.camera.snapshots import SnapshotStore

            store = SnapshotStore(self.data_dir / SNAPSHOT_DIR, max_bytes=cfg.snapshots.max_bytes)
            self.snapshots = SnapshotPublisher(store, self.topics, self.uplink)
        signed = command_trust(self.keys, self.data_dir, cfg.hub.id, cfg.hub.commune)
        self.commands = Commands(
            {"silence": self._cmd_silence, "ping": self._cmd_ping, "snapshot": self._cmd_snapshot},
            answer=lambda result: self.uplink.publish_json(self.topics.cmd_result, result),
            signed=signed,
            hub_key=self.keys.signing if self.keys is not None else None,
            clock_synced=lambda: self.clock.synced(),
        )
        self._running = False
        self._store_turned = threading.Event()
        self._ready_lock = threading.Lock()
        self._ready_sent = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        log.info("hub %s (commune %s) starting", self.cfg.hub.id, self.cfg.hub.commune)
        self.dispatcher.start()
        self.link_report.start()
        self.uplink.start()
        self.inputs.start()
        self.buses.start()
        self.modbus.start()
        if self.snapshots is not None:
            self.snapshots.start()
        if self.cfg.cameras:
            self._start_cameras()
        self._running = True
        # Inputs, outputs and cameras are up (the model is loaded); READY=1 now, or at the
        # store thread's first turn if it is still opening the outbox.
        if self._store_turned.is_set():
            self._ready()

    def _on_store_turn(self) -> None:
        """Store thread, every turn: feed the watchdog, and say READY=1 at the first turn after
        start(). systemd arms the watchdog at READY=1, so READY waits for the thread that feeds
        it to be past opening the outbox (a quick_check of a large file on a slow SD card must
        not pass for a hang); until then TimeoutStartSec= bounds the start."""
        self._store_turned.set()
        if self._running:
            self._ready()
        self._notifier.watchdog()

    def _ready(self) -> None:
        with self._ready_lock:
            if self._ready_sent:
                return
            self._ready_sent = True
        self._notifier.ready()

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop taking input, publish what can go out within the timeout, close everything."""
        if not self._running:
            return
        self._running = False
        self._notifier.stopping()
        log.info("hub stopping")
        self.inputs.close()
        self.buses.close()
        self.modbus.close()
        if self.cameras is not None:
            self.cameras.stop()
        if self.snapshots is not None:
            self.snapshots.stop()
        self.link_report.close()  # before the store thread ends: it may still emit
        self.dispatcher.stop(drain_timeout_s)
        self.uplink.stop()
        self.commands.close()
        self.rules.close()
        for out in self.outputs.values():
            out.close()
        self.outbox.close()
        log.info("hub stopped")

    # -- the public surface (any thread but the store thread) -----------------------------

    def status(self, timeout_s: float = 10.0) -> HubStatus:
        """Inputs and outputs with their states, what is sounding, the buses, the link, the
        outbox counts. The counts are read on the store thread: the hub must be started, and a
        store thread that does not answer within ``timeout_s`` raises TimeoutError."""
        outbox = self.dispatcher.call(lambda o: o.counts()).result(timeout=timeout_s)
        return HubStatus(
            hub=self.cfg.hub.id,
            commune=self.cfg.hub.commune,
            online=self.uplink.online,
            inputs=self.inputs.states(),
            outputs={name: out.is_active for name, out in self.outputs.items()},
            sounding=self.rules.sounding(),
            buses={name: self.bus_open(name) for name in self.buses.buses},
            outbox=outbox,
        )

    def health(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """The health payload the hub publishes (retained, every ``health_interval_s`` while
        online), built now, online or not. Built on the store thread, as status() is."""
        return self.dispatcher.call(lambda _outbox: self.dispatcher.health()).result(
            timeout=timeout_s
        )

    def bus_open(self, name: str) -> bool:
        """Whether serial bus ``name`` has its port open; KeyError for a bus not configured."""
        return self.buses.buses[name].is_open

    def mute_inputs(self) -> None:
        """Inputs stop reporting: the first step of a shutdown, so that a button still held
        does not report its release as the simulator lets go of it."""
        self.inputs.mute()

    # -- the event entry point (any thread) -----------------------------------------------

    def emit(self, event: Event) -> Future[list[Event]]:
        """Sound local outputs at once, then queue the event for commit and publishing."""
        event = replace(event, clock_synced=self.clock.synced())
        self.rules.handle(event)
        return self._record(event)

    def _record(self, event: Event) -> Future[list[Event]]:
        """Queue the event for commit and publishing, without the alarm rules (for what they
        already did: a remote silence has silenced)."""
        committed = self.dispatcher.submit([event])  # logged after: the store thread goes first
        log.info(
            "event %s %s%s from %s",
            event.id,
            event.kind,
            " restore" if event.is_restore else "",
            event.source,
        )
        return committed

    # -- cameras --------------------------------------------------------------------------

    def _start_cameras(self) -> None:
        """Load the detector and start a pipeline per camera; if the model is refused, report
        each camera off (once) and run on without them."""
        d = self.cfg.detection
        try:
            from sensors.detection import ModelError, load_detector

            try:
                detector = load_detector(
                    d.model, threads=d.threads, models_dir=d.models_dir, min_score=d.min_score
                )
            except ModelError as exc:
                self._cameras_off(
                    f"the detection model was refused: {exc}. The cameras are off until the "
                    "model file is fixed and the hub restarted"
                )
                return
            from sensors.camera.cameras import Cameras

            assert self.snapshots is not None
            self.cameras = Cameras(
                self.cfg.cameras,
                emit=self.emit,
                detector=detector,
                snapshot=self.snapshots.put,
                sources=self.camera_sources,
                clock_synced=self.clock.synced,
            )
            self.cameras.start()
        except Exception as exc:  # a broken installation (no OpenCV...) must not stop the hub
            log.exception("cameras could not start")
            self.cameras = None
            self._cameras_off(f"the cameras could not start: {type(exc).__name__}: {exc}")
            return
        log.info(
            "%d camera(s) started with detector %s (%d threads)",
            len(self.cfg.cameras),
            d.model,
            d.threads,
        )
        self._cameras_back()

    def _cameras_off(self, error: str) -> None:
        """One ``camera_offline`` per camera, saying why; not again while still off."""
        self.camera_error = error
        log.error("cameras off: %s", error)
        reported = self._refused()
        for camera in self.cfg.cameras:
            if camera.name in reported:
                continue
            self.emit(
                Event(
                    kind="camera_offline",
                    zone=camera.zone or camera.name,
                    source=camera.name,
                    qualifier=NEW,
                    data={"camera": camera.name, "error": error[:500]},
                )
            )
            reported.add(camera.name)
        self._write_refused(reported)

    def _cameras_back(self) -> None:
        """The restore of the ``camera_offline`` an earlier start reported for the model."""
        reported = self._refused()
        for camera in self.cfg.cameras:
            if camera.name in reported:
                self.emit(
                    Event(
                        kind="camera_offline",
                        zone=camera.zone or camera.name,
                        source=camera.name,
                        qualifier=RESTORE,
                        data={"camera": camera.name, "detector": self.cfg.detection.model},
                    )
                )
        if reported:
            self._write_refused(set())

    def _refused(self) -> set[str]:
        try:
            names = json.loads((self.data_dir / REFUSED_FILE).read_text())
        except (OSError, ValueError):
            return set()
        return {str(n) for n in names} if isinstance(names, list) else set()

    def _write_refused(self, names: set[str]) -> None:
        path = self.data_dir / REFUSED_FILE
        try:
            if names:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(sorted(names)))
                tmp.replace(path)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            log.exception("could not record the cameras reported off in %s", path)

    def camera_health(self) -> dict[str, Any]:
        if not self.cfg.cameras:
            return {"cameras": {}, "detector": None, "snapshots": None}
        if self.cameras is not None:
            health: dict[str, Any] = self.cameras.health()
        else:
            # Off because the model was refused, or not started yet (the model is loading).
            off = {"running": False, "error": self.camera_error}
            if self.camera_error is None:
                off = {"running": False, "starting": True}
            health = {"cameras": {c.name: off for c in self.cfg.cameras}, "detector": None}
        health["snapshots"] = self.snapshots.health() if self.snapshots is not None else None
        return health

    # -- uplink handlers (paho's network thread) ------------------------------------------

    def _on_connected(self) -> None:
        self.dispatcher.on_connected()
        if self.snapshots is not None:
            self.snapshots.on_connected()

    def _on_disconnected(self) -> None:
        self.dispatcher.on_disconnected()
        if self.snapshots is not None:
            self.snapshots.on_disconnected()

    def _on_published(self, mid: int, accepted: bool) -> None:
        if self.snapshots is not None:
            self.snapshots.on_published(mid, accepted)
        self.dispatcher.on_published(mid, accepted)

    # -- commands (paho's network thread) -------------------------------------------------

    def _on_command(
        self, name: str, payload: bytes, retained: bool = False, expiry_s: int | None = None
    ) -> None:
        self.commands.handle(name, payload, retained, expiry_s)

    @property
    def malformed_commands(self) -> int:
        return self.commands.malformed

    @property
    def refused_commands(self) -> int:
        return self.commands.refused

    # Command handlers: the body in, the result's fields out.

    def _cmd_silence(self, body: dict[str, Any]) -> dict[str, Any]:
        by = str(body.get("by", "remote"))[:64]
        silenced = self.rules.silence(reason=f"remote command by {by}")
        # Recorded without the rules: they would silence a second time.
        event = Event(kind="silenced", zone="hub", source="remote", data={"by": by})
        self._record(replace(event, clock_synced=self.clock.synced()))
        return {"silenced": silenced}

    def _cmd_ping(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"ts": time.time()}

    def _cmd_snapshot(self, body: dict[str, Any]) -> dict[str, Any]:
        event_id = body.get("id")
        if not isinstance(event_id, str) or not event_id:
            return {"ok": False, "error": '"id" (an event id) is required'}
        if self.snapshots is None or not self.snapshots.republish(event_id):
            return {"ok": False, "id": event_id[:64], "error": "no snapshot for that event"}
        return {"id": event_id, "topic": self.topics.snapshot(event_id)}

    def uplink_health(self) -> dict[str, Any]:
        """Health's ``uplink``: the link's state, round trip, outages, takeovers, the LED."""
        return {**self.uplink.health(), **self.link_report.health()}

    def _health_extra(self) -> dict[str, Any]:
        return {
            "uplink": self.uplink_health(),
            "clock_synced": self.clock.synced(),
            "inputs": self.inputs.states(),
            "sounding": self.rules.sounding(),
            "output_faults": output_faults(self.outputs),
            "malformed_commands": self.malformed_commands,
            "refused_commands": self.refused_commands,
            "bad_receipts": self.uplink.stats.bad_receipts + self.receipts.forged,
            "forged_receipts": self.receipts.forged,
            "buses": self.buses.health(),
            "modbus": self.modbus.health(),
            **self.camera_health(),
        }
