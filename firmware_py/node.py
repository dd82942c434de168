# The sensor node's logic, independent of hardware: it runs on a Pico or an ESP32 under
# MicroPython (main.py builds the machine objects), under CPython in tests and in the hub
# simulator (with fakes or a `machine` shim), and under MicroPython's WebAssembly port in tests.
#
# Build one with
#
#     node = Node(config, uart, clock, inputs={...}, adcs={...}, de=None, wdt=None)
#     node.run()            # forever: step(), feed the watchdog, sleep poll_ms
#     node.step()           # or one pass at a time (never raises)
#
# and give it objects with only these methods:
#
#   uart    write(buf) -> int   any() -> int (bytes waiting)   read(n) -> bytes or None
#           optional: flush() (wait until sent) or txdone() -> bool; used only with RS-485
#   inputs  dict name -> pin with value() -> 0/1; names "smoke", "panic", "heat", "tamper";
#           leave out what the node does not have
#   adcs    dict name -> adc with read_u16() -> 0..65535; names "smoke_level", "battery"
#   de      RS-485 driver-enable pin (DE and /RE tied together) with value(v), or None
#   clock   ticks_ms(), ticks_diff(a, b), sleep_ms(ms), optionally sleep_us(us): MicroPython's
#           `time` module itself, or compat.SystemClock() / compat.ManualClock()
#   wdt     feed(), or None
#   rand    rand(n) -> int in [0, n) for jitter and the first seq (default compat.make_rand())
#   boot    the boot byte (default: a random byte); seq: the first seq (default: random)
#   log     log(text) for errors, or None (default: count them silently)
#
# config is a dict (see DEFAULTS and config.py); check_config() merges the defaults in and
# reports every bad key at once. The frames are those of codec.py; docs/protocol.md explains
# the protocol, the ACK rules and the timings.
#
# MicroPython-compatible code only: no typing, no dataclasses, no f-strings, no abc; dicts are
# not ordered on MicroPython, so nothing here depends on dict order.

try:
    from . import codec, compat
except ImportError:  # flat on the device: codec.py and compat.py beside this file
    import codec
    import compat

# Inputs a node may have: name -> (what in ALARM/RESTORE, HEARTBEAT state bit). The tamper
# switch sends TAMPER when the case opens and RESTORE(CASE) when it closes.
POINTS = ("smoke", "panic", "heat", "tamper")
_POINT_WHAT = {"smoke": codec.SMOKE, "panic": codec.PANIC, "heat": codec.HEAT, "tamper": codec.CASE}
_POINT_BIT = {
    "smoke": codec.STATE_SMOKE,
    "panic": codec.STATE_PANIC,
    "heat": codec.STATE_HEAT,
    "tamper": codec.STATE_TAMPER,
}

# Longest wait for the inputs to settle before the first heartbeat of a boot.
BOOT_SETTLE_MS = 1000

DEFAULTS = {
    # Identity and link
    "node_id": None,  # required: 1..65534 (0 and 0xFFFF are reserved)
    "uart_id": 0,  # machine.UART number (main.py)
    "tx_pin": 0,  # (main.py)
    "rx_pin": 1,  # (main.py)
    "baud": 115200,  # the hub's [[buses]] default
    "rs485": False,  # drive de_pin high while transmitting
    "de_pin": None,  # RS-485 DE and /RE tied together (main.py)
    # Inputs: name -> {"pin": n, "active": 0 or 1 (level meaning alarm / case open),
    #                  "pull": "up", "down" or None}
    "inputs": {},
    "smoke_level_pin": None,  # ADC pin of the detector's analog output, or None (main.py)
    "battery_pin": None,  # ADC pin behind the battery divider, or None (mains-powered)
    "battery_divider": 3.0,  # battery voltage / ADC pin voltage (Pico VSYS: 3)
    "adc_vref_mv": 3300,  # ADC full scale
    "low_battery_mv": 3400,  # LOW_BATTERY below this ...
    "battery_hysteresis_mv": 150,  # ... restored at or above low_battery_mv + this
    "battery_every_s": 10,  # how often to measure the battery
    # Timing
    "heartbeat_s": 30,  # HEARTBEAT period, the hub's default heartbeat_s; it allows 8 missed
    "poll_ms": 10,  # loop period
    "debounce_ms": 30,  # an input must hold a level this long to count (0: at once)
    "retry_first_ms": 50,  # first re-send after this; doubles each time ...
    "retry_max_ms": 2000,  # ... up to this (each with +-12.5 % jitter)
    "max_outstanding": 16,  # unacknowledged messages kept for re-sending (10..64)
    "watchdog_ms": 5000,  # machine.WDT timeout, 0 for none (main.py; rp2 max 8388)
    "start_delay_ms": 3000,  # main.py waits this before arming the watchdog (Ctrl-C window)
}

_INT_RANGES = {
    "node_id": (1, 0xFFFE),
    "uart_id": (0, 9),
    "baud": (300, 4000000),
    "adc_vref_mv": (500, 6000),
    "low_battery_mv": (0, 65535),
    "battery_hysteresis_mv": (0, 5000),
    "battery_every_s": (1, 3600),
    "heartbeat_s": (1, 65535),
    "poll_ms": (1, 1000),
    "debounce_ms": (0, 5000),
    "retry_first_ms": (10, 10000),
    "retry_max_ms": (10, 60000),
    "max_outstanding": (10, 64),
    "watchdog_ms": (0, 60000),
    "start_delay_ms": (0, 60000),
}
_PIN_KEYS = ("tx_pin", "rx_pin", "de_pin", "smoke_level_pin", "battery_pin")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pin(value):
    # A GPIO number, or a name some ports accept ("GPIO0", "D5").
    return _is_int(value) or (isinstance(value, str) and len(value) > 0)


def check_config(config):
    """The node's settings: DEFAULTS overlaid with config, checked.

    Raises ValueError naming every bad key (e.g. "config.heartbeat_s: ...").
    """
    errors = []
    if not isinstance(config, dict):
        raise ValueError("config: must be a dict, got %r" % (config,))
    merged = {}
    for key in DEFAULTS:
        merged[key] = DEFAULTS[key]
    for key in config:
        if key not in DEFAULTS:
            errors.append("config.%s: unknown key" % key)
        else:
            merged[key] = config[key]
    for key in _INT_RANGES:
        value = merged[key]
        low, high = _INT_RANGES[key]
        if not _is_int(value) or not low <= value <= high:
            errors.append("config.%s: must be an integer %d..%d, got %r" % (key, low, high, value))
    for key in _PIN_KEYS:
        value = merged[key]
        if value is not None and not _is_pin(value):
            errors.append("config.%s: must be a pin number or name, got %r" % (key, value))
    if not isinstance(merged["rs485"], bool):
        errors.append("config.rs485: must be true or false, got %r" % (merged["rs485"],))
    elif merged["rs485"] and merged["de_pin"] is None:
        errors.append("config.de_pin: needed when rs485 is on")
    divider = merged["battery_divider"]
    if isinstance(divider, bool) or not isinstance(divider, (int, float)) or divider <= 0:
        errors.append("config.battery_divider: must be a positive number, got %r" % (divider,))
    first, most = merged["retry_first_ms"], merged["retry_max_ms"]
    if _is_int(first) and _is_int(most) and most < first:
        errors.append("config.retry_max_ms: must be at least retry_first_ms")
    inputs = merged["inputs"]
    if not isinstance(inputs, dict):
        errors.append("config.inputs: must be a dict of name -> {pin, active, pull}")
    else:
        for name in inputs:
            _check_input(name, inputs[name], errors)
    if errors:
        raise ValueError("; ".join(errors))
    return merged


def _check_input(name, spec, errors):
    where = "config.inputs.%s" % name
    if name not in POINTS:
        errors.append("%s: unknown input (known: %s)" % (where, ", ".join(POINTS)))
        return
    if not isinstance(spec, dict):
        errors.append("%s: must be a dict with pin, active and pull" % where)
        return
    for key in spec:
        if key not in ("pin", "active", "pull"):
            errors.append("%s.%s: unknown key" % (where, key))
    if not _is_pin(spec.get("pin")):
        errors.append("%s.pin: must be a pin number or name, got %r" % (where, spec.get("pin")))
    if spec.get("active", 1) not in (0, 1) or isinstance(spec.get("active"), bool):
        errors.append("%s.active: must be 0 or 1, got %r" % (where, spec.get("active")))
    if spec.get("pull") not in (None, "up", "down"):
        errors.append('%s.pull: must be "up", "down" or null, got %r' % (where, spec.get("pull")))


class _Point:
    """One debounced digital input."""

    __slots__ = ("name", "pin", "active", "state", "raw", "since")

    def __init__(self, name, pin, active, now):
        self.name = name
        self.pin = pin
        self.active = active
        self.state = False  # debounced: True = alarm / case open
        self.raw = False
        self.since = now


class _Pending:
    """A message sent and not yet acknowledged."""

    __slots__ = ("seq", "mtype", "what", "frame", "tries", "last", "wait")

    def __init__(self, seq, mtype, what, frame):
        self.seq = seq
        self.mtype = mtype
        self.what = what
        self.frame = frame
        self.tries = 0  # transmissions so far
        self.last = 0  # tick of the last transmission
        self.wait = 0  # ms from last to the next transmission


class Node:
    def __init__(
        self,
        config,
        uart,
        clock,
        inputs=None,
        adcs=None,
        de=None,
        wdt=None,
        rand=None,
        boot=None,
        seq=None,
        log=None,
    ):
        cfg = check_config(config)
        self.config = cfg
        self.node_id = cfg["node_id"]
        self.uart = uart
        self.clock = clock
        self.de = de
        self.wdt = wdt
        self.log = log
        self.rand = rand if rand is not None else compat.make_rand()
        self.boot = (boot if boot is not None else compat.random_byte()) & 0xFF
        # A random first seq as well as a random boot byte: a rebooted node that happens to
        # draw its previous boot byte still does not repeat (boot, seq) keys the hub remembers.
        self.seq = (seq if seq is not None else self.rand(0x10000)) & 0xFFFF
        self.decoder = codec.Decoder()
        self.pending = []  # _Pending, oldest first
        self.stats = {
            "sent": 0,  # frames written, first copies and re-sends, heartbeats included
            "resent": 0,
            "acked": 0,
            "dropped": 0,  # unacknowledged messages given up because the queue was full
            "heartbeats": 0,
            "errors": 0,  # exceptions caught (pins, ADC, UART, watchdog)
            "rx_frames": 0,  # valid frames heard (any node's)
            # ACKs naming this node that match nothing pending: a heartbeat's, a second one for
            # a re-sent copy, or one for an earlier boot
            "unmatched_acks": 0,
        }
        self.last_error = None

        # byte time at 8N1 = 10 bits, rounded up
        self._char_us = (10 * 1000000 + cfg["baud"] - 1) // cfg["baud"]
        self._debounce = cfg["debounce_ms"]
        self._retry_first = cfg["retry_first_ms"]
        self._retry_max = cfg["retry_max_ms"]
        self._hb_ms = cfg["heartbeat_s"] * 1000
        self._battery_ms = cfg["battery_every_s"] * 1000

        now = clock.ticks_ms()
        self.points = []
        specs = cfg["inputs"]
        inputs = inputs or {}
        for name in POINTS:
            if name in inputs and inputs[name] is not None:
                spec = specs.get(name) or {}
                self.points.append(_Point(name, inputs[name], spec.get("active", 1), now))
        adcs = adcs or {}
        self.level_adc = adcs.get("smoke_level")
        self.battery_adc = adcs.get("battery")
        self.battery_mv = 0  # last measurement; 0 when the node has no battery sensing
        self.low_battery = False
        self.level = 0  # last smoke level read
        self._battery_last = now
        self._battery_due = True  # measure on the first step
        self._hb_last = now
        self._hb_wait = 0
        # The first heartbeat announces the boot. It waits (up to BOOT_SETTLE_MS from the first
        # step) until every input has been read and debounced, so that its state bits are the
        # node's real state: a hub that compares them with what it holds must not take a
        # not-yet-debounced input for a restore.
        self._booting = True
        self._boot_tick = None
        if de is not None:
            self._guard(de.value, 0)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, steps=None):
        """step(), feed the watchdog, sleep poll_ms; forever, or `steps` times."""
        done = 0
        poll = self.config["poll_ms"]
        while steps is None or done < steps:
            self.step()
            if self.wdt is not None:
                self._guard(self.wdt.feed)
            self.clock.sleep_ms(poll)
            done += 1

    def step(self):
        """One pass: receive ACKs, read inputs, battery, heartbeat, re-sends. Never raises."""
        self._guard(self._receive)
        for point in self.points:
            self._guard(self._poll_point, point)
        if self.battery_adc is not None:
            self._guard(self._poll_battery)
        self._guard(self._heartbeat_if_due)
        self._guard(self._resend_due)

    def state_bits(self):
        bits = 0
        for point in self.points:
            if point.state:
                bits |= _POINT_BIT[point.name]
        if self.low_battery:
            bits |= codec.STATE_LOW_BATTERY
        return bits

    def outstanding(self):
        """Sequence numbers sent and not yet acknowledged, oldest first."""
        return [p.seq for p in self.pending]

    # -- inputs --------------------------------------------------------------------------------

    def _poll_point(self, point):
        now = self.clock.ticks_ms()
        raw = (1 if point.pin.value() else 0) == point.active
        if raw != point.raw:
            point.raw = raw
            point.since = now
        if raw != point.state and self.clock.ticks_diff(now, point.since) >= self._debounce:
            point.state = raw
            self._point_changed(point)

    def _point_changed(self, point):
        what = _POINT_WHAT[point.name]
        if point.name == "tamper":
            if point.state:
                self._queue(codec.TAMPER, what, b"")
            else:
                self._queue(codec.RESTORE, what, codec.alarm_payload(what, 0))
            return
        level = self._read_level() if point.name == "smoke" else 0
        mtype = codec.ALARM if point.state else codec.RESTORE
        self._queue(mtype, what, codec.alarm_payload(what, level))

    def _read_level(self):
        if self.level_adc is None:
            return 0
        try:
            self.level = self.level_adc.read_u16() & 0xFFFF
        except Exception as e:  # keep the last good level; the alarm goes out regardless
            self._error(e)
        return self.level

    def _poll_battery(self):
        now = self.clock.ticks_ms()
        if (
            not self._battery_due
            and self.clock.ticks_diff(now, self._battery_last) < self._battery_ms
        ):
            return
        self._battery_due = False
        self._battery_last = now
        adc = self.battery_adc
        total = 0
        for _ in range(4):
            total += adc.read_u16()
        raw = total / 4
        cfg = self.config
        mv = int(raw * cfg["adc_vref_mv"] * cfg["battery_divider"] / 65535 + 0.5)
        self.battery_mv = mv
        low = cfg["low_battery_mv"]
        if not self.low_battery and mv < low:
            self.low_battery = True
            self._queue(codec.LOW_BATTERY, None, codec.u16(mv))
        elif self.low_battery and mv >= low + cfg["battery_hysteresis_mv"]:
            self.low_battery = False
            # No message type says "battery restored": the heartbeat's state bit does, so
            # send one now rather than at the next period.
            self._hb_wait = 0

    # -- heartbeat -----------------------------------------------------------------------------

    def _heartbeat_if_due(self):
        now = self.clock.ticks_ms()
        if self._booting:
            if self._boot_tick is None:
                self._boot_tick = now
            unsettled = False
            for point in self.points:
                if point.raw != point.state:
                    unsettled = True
            if unsettled and self.clock.ticks_diff(now, self._boot_tick) < BOOT_SETTLE_MS:
                return
            self._booting = False
        elif self.clock.ticks_diff(now, self._hb_last) < self._hb_wait:
            return
        self._hb_last = now
        # Up to 1/16 early, never late, so that nodes powered up together drift apart on a
        # shared bus and the hub's window (a multiple of the period) still holds.
        self._hb_wait = self._hb_ms - self.rand(self._hb_ms // 16 + 1)
        self._read_level()
        payload = codec.heartbeat_payload(
            self.battery_mv, self.state_bits(), self.level, self.config["heartbeat_s"]
        )
        frame = codec.encode(codec.HEARTBEAT, self.node_id, self.boot, self._next_seq(), payload)
        # Heartbeats are not re-sent: the next one supersedes a lost one.
        self.stats["heartbeats"] += 1
        self._transmit(frame)

    # -- reliable messages ---------------------------------------------------------------------

    def _next_seq(self):
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        return seq

    def _queue(self, mtype, what, payload):
        """Send a message now and keep it for re-sending until the hub ACKs it."""
        if len(self.pending) >= self.config["max_outstanding"]:
            self._evict()
        seq = self._next_seq()
        frame = codec.encode(mtype, self.node_id, self.boot, seq, payload)
        item = _Pending(seq, mtype, what, frame)
        self.pending.append(item)
        self._send_pending(item, self.clock.ticks_ms())

    def _evict(self):
        """Make room: drop the oldest message a newer one of the same kind supersedes
        (e.g. an earlier smoke ALARM when a later one is queued); else the oldest non-ALARM;
        else the oldest."""
        pending = self.pending
        victim = None
        for i in range(len(pending)):
            old = pending[i]
            for newer in pending[i + 1 :]:
                if newer.mtype == old.mtype and newer.what == old.what:
                    victim = i
                    break
            if victim is not None:
                break
        if victim is None:
            for i in range(len(pending)):
                if pending[i].mtype != codec.ALARM:
                    victim = i
                    break
        if victim is None:
            victim = 0
        pending.pop(victim)
        self.stats["dropped"] += 1

    def _backoff(self, tries):
        """Wait after the tries-th transmission: 50, 100, 200 ... ms capped, +-12.5 %."""
        wait = self._retry_first
        for _ in range(tries - 1):
            wait *= 2
            if wait >= self._retry_max:
                break
        if wait > self._retry_max:
            wait = self._retry_max
        spread = wait // 8
        return wait - spread + self.rand(2 * spread + 1)

    def _send_pending(self, item, now):
        item.tries += 1
        item.last = now
        item.wait = self._backoff(item.tries)
        if item.tries > 1:
            self.stats["resent"] += 1
        self._transmit(item.frame)

    def _resend_due(self):
        clock = self.clock
        for item in list(self.pending):  # oldest first, so the hub sees them in seq order
            now = clock.ticks_ms()
            if clock.ticks_diff(now, item.last) >= item.wait:
                self._guard(self._send_pending, item, now)

    # -- receive -------------------------------------------------------------------------------

    def _receive(self):
        uart = self.uart
        for _ in range(8):  # bounded: a babbling bus must not starve the inputs
            waiting = uart.any()
            if not waiting:
                return
            data = uart.read(min(waiting, 256))
            if not data:
                return
            for frame in self.decoder.feed(data):
                self.stats["rx_frames"] += 1
                self._handle(frame)

    def _handle(self, frame):
        # On a shared RS-485 bus the node hears other nodes' messages and their ACKs: only
        # ACKs naming this node and this boot concern it.
        if frame.mtype != codec.ACK or frame.node != self.node_id:
            return
        if frame.boot == self.boot:
            pending = self.pending
            for i in range(len(pending)):
                if pending[i].seq == frame.seq:
                    pending.pop(i)
                    self.stats["acked"] += 1
                    return
        self.stats["unmatched_acks"] += 1

    # -- transmit ------------------------------------------------------------------------------

    def _transmit(self, frame):
        """Write one frame; with RS-485, hold DE high from just before the first byte until
        the last stop bit has left the UART."""
        self.stats["sent"] += 1
        de = self.de
        if de is None:
            self.uart.write(frame)
            return
        de.value(1)
        try:
            self.uart.write(frame)
            self._wait_sent(len(frame))
        finally:
            de.value(0)

    def _wait_sent(self, nbytes):
        uart = self.uart
        flush = getattr(uart, "flush", None)
        txdone = getattr(uart, "txdone", None)
        if flush is not None:
            # MicroPython >= 1.20 on rp2, esp32, stm32 ...: returns once the data has gone;
            # some ports return while the last byte is still on the wire, hence the guard.
            flush()
            self._sleep_us(self._char_us)
        elif txdone is not None:
            clock = self.clock
            start = clock.ticks_ms()
            limit = (nbytes + 2) * self._char_us // 1000 + 10
            while not txdone() and clock.ticks_diff(clock.ticks_ms(), start) < limit:
                self._sleep_us(self._char_us)
            self._sleep_us(self._char_us)
        else:
            # No way to ask the UART: wait for the frame's time on the wire plus one byte.
            self._sleep_us((nbytes + 1) * self._char_us)

    def _sleep_us(self, us):
        sleep_us = getattr(self.clock, "sleep_us", None)
        if sleep_us is not None:
            sleep_us(us)
        else:
            self.clock.sleep_ms((us + 999) // 1000)

    # -- errors --------------------------------------------------------------------------------

    def _guard(self, fn, *args):
        """Call fn; count and remember any exception instead of letting it stop the node."""
        try:
            fn(*args)
        except Exception as e:
            self._error(e)

    def _error(self, e):
        self.stats["errors"] += 1
        self.last_error = "%s: %s" % (type(e).__name__, e)
        if self.log is not None:
            try:  # noqa: SIM105 (MicroPython has no contextlib)
                self.log("node %d: %s" % (self.node_id, self.last_error))
            except Exception:
                pass
