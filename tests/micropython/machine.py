"""A stand-in for MicroPython's `machine` module (Pin, ADC, UART, WDT) for running main.py
under the WebAssembly port, which has no hardware. It records what the firmware did with it.

Set LEVELS[pin] before the firmware makes its pins to choose an input's level; with no entry an
input reads 1 with a pull-up, else 0. WDT_LIMIT stops the program (SystemExit) after that many
feeds, so a test can run the endless node loop for a while.
"""

LEVELS = {}
PINS = {}
UARTS = []
ADCS = []
WDTS = []
WDT_LIMIT = 50


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        if value is not None:
            self._value = 1 if value else 0
        elif id in LEVELS:
            self._value = LEVELS[id]
        else:
            self._value = 1 if pull == Pin.PULL_UP else 0
        self.history = [self._value]
        if mode != -1:
            PINS[id] = self

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0
        self.history.append(self._value)
        return None


class ADC:
    def __init__(self, pin):
        self.pin = pin
        self.raw = 30000
        ADCS.append(self)

    def read_u16(self):
        return self.raw


class UART:
    def __init__(self, id, baudrate=9600, tx=None, rx=None, timeout=0, **kwargs):
        self.args = {"id": id, "baudrate": baudrate, "timeout": timeout}
        self.tx = tx
        self.rx = rx
        self.written = bytearray()
        self.outputs_at_write = []  # {pin id: level} of every output pin, per write
        UARTS.append(self)

    def write(self, buf):
        self.written.extend(buf)
        levels = {}
        for pin_id in PINS:
            if PINS[pin_id].mode == Pin.OUT:
                levels[pin_id] = PINS[pin_id].value()
        self.outputs_at_write.append(levels)
        return len(buf)

    def flush(self):
        pass

    def any(self):
        return 0

    def read(self, n=-1):
        return None


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        WDTS.append(self)

    def feed(self):
        self.feeds += 1
        if self.feeds >= WDT_LIMIT:
            raise SystemExit(0)
