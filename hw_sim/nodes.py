"""Simulated sensor nodes: the real node firmware on the far end of a pty.

For every ``[[buses]]`` entry of the hub's configuration whose port does not exist here, the
simulator opens a pty pair (``os.openpty``) and gives the hub the slave's path as the bus port,
so the hub's own driver (``sensors/serial_bus.py``) opens it with pyserial as it would a USB
adapter (a bus whose port exists is left to the hub as it is). Every ``[[nodes]]`` entry on a
simulated bus becomes a simulated board on its bus's line: the firmware of ``firmware_py/``
(its ``Node`` class and codec, the code that ships to the boards) runs under CPython on one
thread per node, with a :class:`~hw_sim.machine_shim.Board` as its ``machine`` module.

Each board is wired as ``firmware_py/config.py``'s example: a smoke detector whose alarm output
pulls GPIO 15 low and whose analog level reaches ADC 26 (the simulated detector trips at its
``threshold`` and clears below it), a panic button on GPIO 14, a closed case switch on GPIO 13
and a battery on ADC 29. On an RS-485 bus the node drives its DE pin, and every node on the
line hears the others, as on one twisted pair.

Faults, per node: ``silence`` stops the node's firmware (no heartbeat, no frame) until
``resume``; ``noise`` puts bit errors on the node's link in both directions, at a bit error
rate, and now and then a truncated frame or a burst of garbage bytes; ``deaf`` drops everything
the hub sends to the node. The line and the links, with their noise, are
``hw_sim/bus_line.py``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from firmware_py import compat
from firmware_py.node import Node, check_config
from hw_sim.board import SimError
from hw_sim.bus_line import BusLine
from hw_sim.machine_shim import Board
from settings import BusConfig, Config, NodeConfig

log = logging.getLogger(__name__)

# The board's wiring (firmware_py/config.py's example Pico).
UART_ID = 0
TX_PIN, RX_PIN, DE_PIN = 0, 1, 2
SMOKE_PIN, PANIC_PIN, TAMPER_PIN = 15, 14, 13
LEVEL_PIN, BATTERY_PIN = 26, 29
ADC_VREF_MV, BATTERY_DIVIDER = 3300, 3.0

SMOKE_THRESHOLD = 30_000  # the simulated detector's trip level on the read_u16 scale (~1.5 V)
CLEAN_AIR_LEVEL = 1_200
BATTERY_MV = 3_900
DEFAULT_PANIC_S = 0.5
NODE_COMMANDS = frozenset({"smoke", "silence", "resume", "noise", "node-panic"})


def firmware_config(
    spec: NodeConfig, bus: BusConfig, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The firmware settings of a simulated node: the hub's view of it (id, baud, heartbeat)
    and the board's wiring; ``overrides`` (any DEFAULTS key of node.py) go on top."""
    cfg: dict[str, Any] = {
        "node_id": spec.id,
        "uart_id": UART_ID,
        "tx_pin": TX_PIN,
        "rx_pin": RX_PIN,
        "baud": bus.baud,
        "rs485": bus.rs485,
        "de_pin": DE_PIN if bus.rs485 else None,
        "inputs": {
            "smoke": {"pin": SMOKE_PIN, "active": 0, "pull": "up"},
            "panic": {"pin": PANIC_PIN, "active": 0, "pull": "up"},
            "tamper": {"pin": TAMPER_PIN, "active": 1, "pull": "up"},
        },
        "smoke_level_pin": LEVEL_PIN,
        "battery_pin": BATTERY_PIN,
        "battery_divider": BATTERY_DIVIDER,
        "adc_vref_mv": ADC_VREF_MV,
        # The firmware counts whole seconds (1..65535): never slower than the hub expects.
        "heartbeat_s": min(0xFFFF, max(1, int(spec.heartbeat_s))),
        "watchdog_ms": 0,
        "start_delay_ms": 0,
    }
    cfg.update(overrides or {})
    return cfg


def build_node(
    cfg: dict[str, Any], machine: Board, clock: Any, log_fn: Callable[[str], None] | None
) -> Any:
    """The firmware's Node on a simulated board, built as firmware_py/main.py's ``build`` does
    on a real one (the same machine calls)."""
    cfg = check_config(cfg)
    de = None
    if cfg["rs485"]:
        de = machine.Pin(cfg["de_pin"], machine.Pin.OUT, value=0)
    uart = machine.UART(
        cfg["uart_id"],
        baudrate=cfg["baud"],
        tx=machine.Pin(cfg["tx_pin"]),
        rx=machine.Pin(cfg["rx_pin"]),
        timeout=0,
    )
    inputs = {}
    for name, spec in cfg["inputs"].items():
        pull = {"up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN}.get(spec.get("pull"))
        if pull is None:
            inputs[name] = machine.Pin(spec["pin"], machine.Pin.IN)
        else:
            inputs[name] = machine.Pin(spec["pin"], machine.Pin.IN, pull)
    adcs = {}
    if cfg["smoke_level_pin"] is not None:
        adcs["smoke_level"] = machine.ADC(machine.Pin(cfg["smoke_level_pin"]))
    if cfg["battery_pin"] is not None:
        adcs["battery"] = machine.ADC(machine.Pin(cfg["battery_pin"]))
    return Node(cfg, uart, clock, inputs=inputs, adcs=adcs, de=de, log=log_fn)


def battery_raw(mv: float) -> int:
    """The ADC reading (read_u16) of a battery voltage behind the board's divider."""
    return round(mv / (ADC_VREF_MV * BATTERY_DIVIDER) * 0xFFFF)


class SimNode:
    """One simulated board running the node firmware on its own thread."""

    def __init__(
        self,
        spec: NodeConfig,
        bus: BusConfig,
        line: BusLine,
        *,
        firmware: Mapping[str, Any] | None = None,
        threshold: int = SMOKE_THRESHOLD,
        seed: int | None = None,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.line = line
        self.link = line.attach(spec.name, seed)
        self.threshold = threshold
        self.level = CLEAN_AIR_LEVEL
        self.panic_pressed = False
        self.board = Board(
            {UART_ID: self.link},
            # idle wiring: detector output and button open (pulled up), case switch closed
            levels={SMOKE_PIN: 1, PANIC_PIN: 1, TAMPER_PIN: 0},
            adc_levels={LEVEL_PIN: CLEAN_AIR_LEVEL, BATTERY_PIN: battery_raw(BATTERY_MV)},
        )
        try:
            self.node = build_node(
                firmware_config(spec, bus, firmware), self.board, compat.SystemClock(), log.warning
            )
        except ValueError as exc:
            raise SimError(f"node {spec.name}: {exc}") from None
        self.config: dict[str, Any] = self.node.config  # with the firmware's defaults
        self._silent = threading.Event()
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._run, name=f"node-{self.name}", daemon=True)

    # -- the firmware's loop --------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        """node.run(), one step at a time, so that the node can be silenced and stopped."""
        poll_s = self.config["poll_ms"] / 1000
        while not self._stop.is_set():
            if not self._silent.is_set():
                try:
                    self.node.step()  # never raises, by design; a bug must not end the board
                except Exception:
                    log.exception("node %s: firmware step failed", self.name)
            self._stop.wait(poll_s)

    def stop(self) -> None:
        self._stop.set()
        for timer in self._timers:
            timer.cancel()
        if self._thread.is_alive():
            self._thread.join(2.0)

    # -- what the simulation does to it --------------------------------------------------

    def set_smoke_level(self, level: Any) -> bool:
        """The detector's analog level; at or above ``threshold`` its alarm output goes active.
        Returns whether it is in alarm."""
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 0xFFFF:
            raise SimError(f"level must be an integer from 0 to 65535, got {level!r}")
        self.level = level
        self.board.set_adc(LEVEL_PIN, level)  # first, so the ALARM carries the new level
        alarm = level >= self.threshold
        self.board.wire(SMOKE_PIN, 0 if alarm else 1)  # open collector: low in alarm
        return alarm

    def press_panic(self) -> None:
        self.panic_pressed = True
        self.board.wire(PANIC_PIN, 0)

    def release_panic(self) -> None:
        self.panic_pressed = False
        self.board.wire(PANIC_PIN, 1)

    def panic(self, seconds: Any = DEFAULT_PANIC_S) -> None:
        """Press the panic button now and release it after ``seconds``."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise SimError(f"seconds must be a number, got {seconds!r}")
        if not 0 < seconds <= 600:
            raise SimError("seconds must be in (0, 600]")
        self.press_panic()
        timer = threading.Timer(seconds, self.release_panic)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def silence(self) -> None:
        """The node stops: no heartbeat, no frame, until ``resume``."""
        self._silent.set()

    def resume(self) -> None:
        """The node carries on where it stopped (a message still unacknowledged is re-sent,
        and its overdue heartbeat goes out)."""
        self._silent.clear()

    @property
    def silenced(self) -> bool:
        return self._silent.is_set()

    def set_noise(self, ber: Any) -> None:
        self.link.noise.set_ber(ber)

    def status(self) -> dict[str, Any]:
        node = self.node
        return {
            "id": self.spec.id,
            "bus": self.spec.bus,
            "port": self.line.path,
            "silenced": self.silenced,
            "smoke_level": self.level,
            "smoke_threshold": self.threshold,
            "smoke": self.level >= self.threshold,
            "panic": self.panic_pressed,
            "ber": self.link.noise.ber,
            "boot": node.boot,
            "state": node.state_bits(),
            "outstanding": len(node.outstanding()),
            "firmware": dict(node.stats),
            "last_error": node.last_error,
            "link": asdict(self.link.stats),
        }


class SimNodes:
    """Every bus line and node of a simulated hub.

    Each bus whose port does not exist on this machine gets a pty and simulated nodes; a bus
    whose port exists (an adapter plugged in, a pty a test made) is left to the hub as it is,
    and its nodes are not simulated.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        firmware: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.lines: dict[str, BusLine] = {}
        self.nodes: dict[str, SimNode] = {}
        self.real_buses: list[str] = []  # ports that exist here: the hub opens them as they are
        try:
            for bus in cfg.buses:
                if os.path.exists(bus.port):
                    log.info("bus %s: %s exists; it is used as it is", bus.name, bus.port)
                    self.real_buses.append(bus.name)
                    continue
                self.lines[bus.name] = BusLine(bus.name, rs485=bus.rs485)
            for spec in cfg.nodes:
                if spec.bus not in self.lines:
                    continue
                self.nodes[spec.name] = SimNode(
                    spec,
                    cfg.bus(spec.bus),
                    self.lines[spec.bus],
                    firmware=firmware,
                    seed=None if seed is None else seed * 65536 + spec.id,
                )
        except BaseException:
            self.close()
            raise

    def hub_config(self, cfg: Config) -> Config:
        """``cfg`` with every bus's port replaced by its line's pty."""
        buses = tuple(
            b.model_copy(update={"port": self.lines[b.name].path}) if b.name in self.lines else b
            for b in cfg.buses
        )
        return cfg.model_copy(update={"buses": buses})

    def start(self, ready: Callable[[str], bool] | None = None, timeout_s: float = 5.0) -> None:
        """Start the lines and the nodes; with ``ready``, each line's nodes once
        ``ready(bus name)`` says the hub has its port open (bounded by ``timeout_s``), so that
        their first heartbeats are not lost."""
        deadline = time.monotonic() + timeout_s
        for line in self.lines.values():
            while ready is not None and not ready(line.name) and time.monotonic() < deadline:
                time.sleep(0.01)
            line.start()
            for node in self.nodes.values():
                if node.line is line:
                    node.start()

    def stop(self) -> None:
        """Stop every node's firmware (the lines stay open for the hub)."""
        for node in self.nodes.values():
            node.stop()

    def close(self) -> None:
        """Close the lines (after the hub has closed its ports)."""
        for line in self.lines.values():
            line.close()

    def node(self, name: Any) -> SimNode:
        node = self.nodes.get(name) if isinstance(name, str) else None
        if node is None:
            known = ", ".join(sorted(self.nodes)) or "none"
            raise SimError(f"no node named {name!r} (nodes: {known})")
        return node

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out one node command (``NODE_COMMANDS``); raises SimError for a bad one."""
        cmd = request.get("cmd")
        node = self.node(request.get("name"))
        answer: dict[str, Any] = {"ok": True, "cmd": cmd, "name": node.name}
        if cmd == "smoke":
            answer["alarm"] = node.set_smoke_level(request.get("level"))
            answer["level"] = node.level
        elif cmd == "silence":
            node.silence()
        elif cmd == "resume":
            node.resume()
        elif cmd == "noise":
            node.set_noise(request.get("ber"))
            answer["ber"] = node.link.noise.ber
        elif cmd == "node-panic":
            node.panic(request.get("seconds", DEFAULT_PANIC_S))
        else:
            raise SimError(f"unknown node command {cmd!r}")
        return answer

    def status(self) -> dict[str, Any]:
        return {name: node.status() for name, node in self.nodes.items()}
