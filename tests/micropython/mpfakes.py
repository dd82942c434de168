"""Stand-ins for machine.Pin, machine.ADC, machine.UART and machine.WDT that the node firmware
runs against, written to run under both MicroPython and CPython (the CPython tests load this
same file), so both interpreters exercise the node with identical fakes.

MicroPython-compatible: no typing, no dataclasses, no f-string `=`.
"""


class FakePin:
    """An input or output pin. Set `fail` to an exception to make value() raise it."""

    def __init__(self, value=0, clock=None):
        self._value = value
        self.clock = clock
        self.fail = None
        self.history = []  # (tick or None, value) for every value(v) call

    def value(self, v=None):
        if self.fail is not None:
            raise self.fail
        if v is None:
            return self._value
        self._value = 1 if v else 0
        tick = self.clock.ticks_ms() if self.clock is not None else None
        self.history.append((tick, self._value))
        return None

    def set(self, v):
        """Drive the pin from outside (a test, the wiring)."""
        self._value = 1 if v else 0


class FakeADC:
    def __init__(self, raw=0):
        self.raw = raw
        self.fail = None

    def read_u16(self):
        if self.fail is not None:
            raise self.fail
        return self.raw


class FakeWDT:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class FakeUART:
    """Records what the node writes; `deliver()` puts bytes where read() finds them.

    With `de` (the RS-485 driver-enable pin), each write and flush records that pin's level,
    so a test can tell whether the driver was on while the bytes went out.
    """

    def __init__(self, clock=None, de=None, has_flush=True):
        self.clock = clock
        self.de = de
        self.rx = bytearray()
        self.writes = []  # (tick, bytes, de level or None)
        self.flushes = []  # (tick, de level or None)
        self.fail = None
        if not has_flush:
            self.flush = None

    def _tick(self):
        return self.clock.ticks_ms() if self.clock is not None else None

    def _de(self):
        return self.de.value() if self.de is not None else None

    def write(self, buf):
        if self.fail is not None:
            raise self.fail
        data = bytes(buf)
        self.writes.append((self._tick(), data, self._de()))
        self.on_write(data)
        return len(data)

    def on_write(self, data):
        """Called with every frame written (a subclass may forward it)."""

    def flush(self):
        self.flushes.append((self._tick(), self._de()))

    def any(self):
        return len(self.rx)

    def read(self, n=-1):
        if not self.rx:
            return None
        if n < 0 or n > len(self.rx):
            n = len(self.rx)
        data = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return data

    def deliver(self, data):
        self.rx.extend(data)

    def written(self):
        """Everything written so far, as one byte string."""
        return b"".join(w[1] for w in self.writes)
