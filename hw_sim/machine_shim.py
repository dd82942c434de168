"""MicroPython's ``machine`` module for sensor-node firmware running under CPython.

On a board, ``firmware_py/main.py`` builds its node from ``machine.Pin``, ``machine.ADC``,
``machine.UART`` and ``machine.WDT``, and times it with the ``time`` module's ticks. Here one
:class:`Board` stands in for the ``machine`` module of one simulated board: ``board.Pin``,
``board.ADC``, ``board.UART`` and ``board.WDT`` take the same arguments as MicroPython's and
keep to that board (pin 15 of one node is not pin 15 of another). The simulation is the wiring:
it drives input pins (:meth:`Board.wire`, :meth:`SimPin.drive`) and sets ADC readings
(:meth:`SimADC.set_u16`). A UART's bytes go to the board's :class:`Wire` for that UART id,
which the simulator connects to a pty. Ticks come from ``firmware_py.compat.SystemClock``, which
has MicroPython's ``ticks_ms``/``ticks_diff``/``sleep_ms``.

Only what the node firmware uses is here.
"""

from __future__ import annotations

from typing import Any, Protocol

DEFAULT_BAUD = 115_200


class Wire(Protocol):
    """The far side of a UART: where its bytes go and where the bytes it reads come from."""

    def send(self, data: bytes) -> None:
        """Bytes the UART transmits (any thread)."""

    def waiting(self) -> int:
        """How many received bytes are waiting to be read."""

    def receive(self, size: int) -> bytes:
        """Up to ``size`` received bytes (fewer or none if fewer are waiting)."""


class SimPin:
    """``machine.Pin``: an input the simulation drives, or an output the firmware sets."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    board: Board  # set on the per-board subclass

    def __init__(self, id: Any, mode: int = -1, pull: int = -1, value: int | None = None) -> None:
        self.id = id
        self.mode = mode
        self.pull = pull
        wired = self.board.levels.get(id)
        if value is not None:
            level = 1 if value else 0
        elif wired is not None:
            level = wired
        else:
            level = 1 if pull == self.PULL_UP else 0
        self._level = level
        self.changes = 0  # value(v) calls by the firmware (an output's toggles)
        if mode != -1:
            self.board.pins[id] = self

    def value(self, v: Any = None) -> int | None:
        if v is None:
            return self._level
        self._level = 1 if v else 0
        self.changes += 1
        return None

    def drive(self, level: int) -> None:
        """The wiring sets the level the firmware reads (a button, a detector's output)."""
        self._level = 1 if level else 0


class SimADC:
    """``machine.ADC``: ``read_u16()`` returns whatever the simulation last set."""

    ATTN_11DB = 3
    board: Board

    def __init__(self, pin: Any) -> None:
        self.pin = pin
        pin_id = getattr(pin, "id", pin)
        self.raw: int = self.board.adc_levels.get(pin_id, 0)
        self.board.adcs[pin_id] = self

    def atten(self, value: int) -> None:
        pass

    def read_u16(self) -> int:
        return self.raw

    def set_u16(self, raw: int) -> None:
        self.raw = max(0, min(0xFFFF, int(raw)))


class SimUART:
    """``machine.UART`` over the board's wire for this UART id. ``timeout=0``: reads return at
    once with what is there, or None."""

    board: Board

    def __init__(
        self,
        id: int,
        baudrate: int = DEFAULT_BAUD,
        tx: Any = None,
        rx: Any = None,
        timeout: int = 0,
        **kwargs: Any,
    ) -> None:
        self.id = id
        self.baudrate = baudrate
        self.wire = self.board.wires[id]
        self.board.uarts[id] = self

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        data = bytes(buf)
        self.wire.send(data)
        return len(data)

    def any(self) -> int:
        return self.wire.waiting()

    def read(self, nbytes: int = -1) -> bytes | None:
        waiting = self.wire.waiting()
        if not waiting:
            return None
        return self.wire.receive(waiting if nbytes is None or nbytes < 0 else nbytes) or None

    def flush(self) -> None:
        """The bytes are handed to the pty at once, so they have always left."""

    def txdone(self) -> bool:
        return True


class SimWDT:
    """``machine.WDT``: counts feeds (the simulation never resets a board)."""

    board: Board

    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        self.timeout = timeout
        self.feeds = 0

    def feed(self) -> None:
        self.feeds += 1


class Board:
    """One simulated board: a stand-in for its ``machine`` module.

    ``wires`` maps UART ids to wires; ``levels`` sets the level an input pin reads before the
    firmware makes it (the wiring at power-up), ``adc_levels`` an ADC pin's first reading.
    """

    def __init__(
        self,
        wires: dict[int, Wire],
        levels: dict[Any, int] | None = None,
        adc_levels: dict[Any, int] | None = None,
    ) -> None:
        self.wires = dict(wires)
        self.levels = dict(levels or {})
        self.adc_levels = dict(adc_levels or {})
        self.pins: dict[Any, SimPin] = {}
        self.adcs: dict[Any, SimADC] = {}
        self.uarts: dict[int, SimUART] = {}
        # Classes bound to this board, so that board.Pin.IN and board.Pin(15, ...) read as
        # machine.Pin.IN and machine.Pin(15, ...) do on MicroPython.
        self.Pin: type[SimPin] = type("Pin", (SimPin,), {"board": self})
        self.ADC: type[SimADC] = type("ADC", (SimADC,), {"board": self})
        self.UART: type[SimUART] = type("UART", (SimUART,), {"board": self})
        self.WDT: type[SimWDT] = type("WDT", (SimWDT,), {"board": self})

    def wire(self, pin_id: Any, level: int) -> None:
        """Drive an input pin (made or not yet made by the firmware) to ``level``."""
        self.levels[pin_id] = 1 if level else 0
        pin = self.pins.get(pin_id)
        if pin is not None:
            pin.drive(level)

    def set_adc(self, pin_id: Any, raw: int) -> None:
        """Set what an ADC pin reads (0..65535)."""
        self.adc_levels[pin_id] = raw
        adc = self.adcs.get(pin_id)
        if adc is not None:
            adc.set_u16(raw)
