"""Runs the real hub on simulated hardware, driven through the control socket or a scenario.

GPIO pins come from gpiozero's MockFactory, sensor buses are ptys with the node firmware on the
far end (``hw_sim/nodes.py``), and cameras are virtual cameras playing a street scene
(``hw_sim/camera.py``; imported only when the config has cameras).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from core.errors import TuquanError
from core.events import KINDS, NEW, Event
from gateway.service import Hub
from hw_sim.board import SimBoard, SimError
from hw_sim.control import ControlServer
from hw_sim.nodes import NODE_COMMANDS, SimNodes
from hw_sim.scenario import ScenarioPlayer, load_scenario
from settings import Config, load_config

log = logging.getLogger(__name__)

MAX_EMIT = 10_000


def default_config_path() -> Path:
    return Path(str(resources.files("hw_sim") / "default_hub.toml"))


def load_sim_config(path: Path | None = None) -> Config:
    return load_config(path or default_config_path())


class SimulatedHub:
    def __init__(
        self,
        cfg: Config,
        data_dir: Path,
        *,
        broker: tuple[str, int] | None = None,
        scenario: Path | None = None,
        node_firmware: Mapping[str, Any] | None = None,
    ) -> None:
        steps = load_scenario(scenario) if scenario is not None else None  # fail before opening
        self.board = SimBoard()
        # Sensor nodes run the real firmware on ptys; the hub gets the ptys as its bus ports.
        self.nodes = SimNodes(cfg, firmware=node_firmware)
        self.cfg = self.nodes.hub_config(cfg)  # the hub's config
        self.cameras: dict[str, Any] = {}  # name -> hw_sim.camera.VirtualCamera
        try:
            # Wired before the hub opens its pins: they read the resting levels from the start.
            self.board.attach(self.cfg.inputs, self.cfg.outputs)
            if cfg.cameras:
                from hw_sim.camera import virtual_cameras

                self.cameras = virtual_cameras(cfg.cameras)
            self.hub = Hub(
                self.cfg,
                data_dir,
                pin_factory=self.board.factory,
                broker=broker,
                camera_sources=self.cameras,
            )
        except BaseException:
            self.nodes.close()
            raise
        self.control = ControlServer(data_dir, self.handle)
        self.player = ScenarioPlayer(steps, self.handle) if steps is not None else None

    def start(self) -> None:
        self.hub.start()
        self.nodes.start(ready=self.hub.bus_open)
        self.control.start()
        if self.player is not None:
            self.player.start()

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        if self.player is not None:
            self.player.stop()
        self.control.close()
        self.nodes.stop()
        self.hub.mute_inputs()
        self.board.release_all()
        self.hub.stop(drain_timeout_s)
        self.board.close()
        self.nodes.close()  # the ptys, once the hub has closed its ports

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out one control request (control-socket threads and the scenario thread)."""
        cmd = request.get("cmd")
        try:
            if cmd in ("press", "release"):
                name = str(request.get("name"))
                getattr(self.board, str(cmd))(name)
                return {"ok": True, "cmd": cmd, "name": name}
            if cmd == "hold":
                name = str(request.get("name"))
                self.board.hold(name, float(request.get("seconds", 3.0)))
                return {"ok": True, "cmd": cmd, "name": name}
            if cmd == "emit":
                return self._emit(request)
            if cmd in NODE_COMMANDS:
                return self.nodes.handle(request)
            if cmd == "camera":
                return self._camera(request)
            if cmd == "status":
                return self.status()
            if cmd == "health":
                return {"ok": True, "health": self.hub.health()}
        except SimError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _emit(self, request: dict[str, Any]) -> dict[str, Any]:
        """Inject events as a sensor would; answers once they are committed (accepted)."""
        kind = str(request.get("kind", "telemetry"))
        count = int(request.get("count", 1))
        if kind not in KINDS:
            raise SimError(f"unknown event kind {kind!r}")
        if not 1 <= count <= MAX_EMIT:
            raise SimError(f"count must be 1..{MAX_EMIT}")
        events = [
            Event(kind=kind, zone="sim", source="sim", qualifier=NEW, data={"n": i})
            for i in range(count)
        ]
        futures = [self.hub.emit(e) for e in events]
        try:
            stored = [e for f in futures for e in f.result(timeout=30)]
        except TuquanError as exc:  # the outbox refuses them (a full disk)
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "events": [{"id": e.id, "seq": e.seq} for e in stored]}

    def _camera(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"cmd": "camera", "name": "cam-1", "action": "walk", "seconds": 6}``"""
        name = str(request.get("name"))
        camera = self.cameras.get(name)
        if camera is None:
            known = ", ".join(sorted(self.cameras)) or "none"
            raise SimError(f"no simulated camera named {name!r} (cameras: {known})")
        action = str(request.get("action"))
        seconds = request.get("seconds")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float)
        ):
            raise SimError("seconds must be a number")
        done = camera.act(action, seconds)
        return {"ok": True, "cmd": "camera", "name": name, "action": action, **done}

    def camera_status(self) -> dict[str, Any]:
        """Each camera: its scene (virtual cameras) and what the hub's pipeline makes of it."""
        health = self.hub.camera_health()["cameras"]
        out: dict[str, Any] = {}
        for camera in self.cfg.cameras:
            entry: dict[str, Any] = {}
            if camera.name in self.cameras:
                entry["scene"] = self.cameras[camera.name].status()
            entry.update(health.get(camera.name, {}))
            out[camera.name] = entry
        return out

    def status(self) -> dict[str, Any]:
        """The hub's status, with the simulated nodes and cameras."""
        return {
            "ok": True,
            **self.hub.status(),
            "nodes": self.nodes.status(),
            "cameras": self.camera_status(),
        }
