# The sensor bus frame codec, shared by the node firmware (MicroPython) and the hub (CPython).
#
# It must run on MicroPython: no typing, no dataclasses, no f-strings with `=`, nothing beyond
# builtins. The format is documented in docs/protocol.md.
#
# On the wire a frame is   0x00 | COBS(body) | 0x00
# and the body is          ver:u8 type:u8 node:u16 boot:u8 seq:u16 payload:0..MAX_PAYLOAD crc:u16
# (big-endian; CRC-16/CCITT-FALSE over everything before it). COBS removes every 0x00 from the
# body, so 0x00 only ever delimits frames and a receiver resynchronises at the next one after
# garbage, a truncated frame or a flipped bit.

VERSION = 1
MAX_PAYLOAD = 32
HEADER_LEN = 7
MIN_BODY = HEADER_LEN + 2
MAX_BODY = HEADER_LEN + MAX_PAYLOAD + 2
# COBS adds one byte per 254 and the leading code byte; frames are far below 254 bytes.
MAX_ENCODED = MAX_BODY + 2

# Message types
ALARM = 0x01  # payload: what:u8 level:u16        sent at once, re-sent until ACKed
RESTORE = 0x02  # payload: what:u8 level:u16      the condition has cleared
TAMPER = 0x03  # payload: (none)                  the node's case is open
LOW_BATTERY = 0x04  # payload: millivolts:u16
HEARTBEAT = 0x05  # payload: millivolts:u16 state:u8 level:u16 interval_s:u16
ACK = 0x06  # hub -> node; header node/boot/seq name the frame acknowledged; no payload

TYPE_NAMES = {
    ALARM: "alarm",
    RESTORE: "restore",
    TAMPER: "tamper",
    LOW_BATTERY: "low_battery",
    HEARTBEAT: "heartbeat",
    ACK: "ack",
}
PAYLOAD_LEN = {ALARM: 3, RESTORE: 3, TAMPER: 0, LOW_BATTERY: 2, HEARTBEAT: 7, ACK: 0}

# "what" in ALARM and RESTORE
SMOKE = 1
PANIC = 2
HEAT = 3
FIRE = 4
CASE = 5  # RESTORE only: the node's tamper switch closed again
WHAT_NAMES = {SMOKE: "smoke", PANIC: "panic", HEAT: "heat", FIRE: "fire", CASE: "tamper"}

# Bits of HEARTBEAT state
STATE_SMOKE = 0x01
STATE_PANIC = 0x02
STATE_TAMPER = 0x04
STATE_LOW_BATTERY = 0x08
STATE_HEAT = 0x10


def _make_crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _make_crc_table()


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): crc16(b"123456789") == 0x29B1."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def cobs_encode(data):
    out = bytearray(len(data) + len(data) // 254 + 1)
    code_at = 0
    code = 1
    n = 1
    for byte in data:
        if byte:
            out[n] = byte
            n += 1
            code += 1
        if not byte or code == 0xFF:
            out[code_at] = code
            code_at = n
            n += 1
            code = 1
    out[code_at] = code
    return bytes(out[:n])


def cobs_decode(data):
    """Decode one COBS block (no 0x00 inside); None if it is not valid COBS."""
    out = bytearray()
    i = 0
    end = len(data)
    while i < end:
        code = data[i]
        nxt = i + code
        if code == 0 or nxt > end:
            return None
        out.extend(data[i + 1 : nxt])
        i = nxt
        if code != 0xFF and i < end:
            out.append(0)
    return bytes(out)


def u16(value):
    return bytes(((value >> 8) & 0xFF, value & 0xFF))


def get_u16(data, at):
    return (data[at] << 8) | data[at + 1]


def encode_body(mtype, node, boot, seq, payload=b""):
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    head = bytes((VERSION, mtype & 0xFF)) + u16(node) + bytes((boot & 0xFF,)) + u16(seq)
    body = head + bytes(payload)
    return body + u16(crc16(body))


def encode(mtype, node, boot, seq, payload=b""):
    """One frame ready for the wire, delimiters included."""
    return b"\x00" + cobs_encode(encode_body(mtype, node, boot, seq, payload)) + b"\x00"


class Frame:
    __slots__ = ("mtype", "node", "boot", "seq", "payload")

    def __init__(self, mtype, node, boot, seq, payload):
        self.mtype = mtype
        self.node = node
        self.boot = boot
        self.seq = seq
        self.payload = payload

    def key(self):
        """Same node, boot and sequence: a re-sent copy of the same message."""
        return (self.node, self.boot, self.seq)

    def __eq__(self, other):
        return isinstance(other, Frame) and self.as_tuple() == other.as_tuple()

    def __hash__(self):
        return hash(self.as_tuple())

    def as_tuple(self):
        return (self.mtype, self.node, self.boot, self.seq, bytes(self.payload))

    def __repr__(self):
        return "Frame(%s node=%d boot=%d seq=%d payload=%s)" % (
            TYPE_NAMES.get(self.mtype, str(self.mtype)),
            self.node,
            self.boot,
            self.seq,
            bytes(self.payload).hex(),
        )


def decode_body(body):
    """A Frame from one COBS-decoded body, or a short reason string why not."""
    if len(body) < MIN_BODY:
        return "short"
    if len(body) > MAX_BODY:
        return "long"
    if crc16(body[:-2]) != get_u16(body, len(body) - 2):
        return "crc"
    if body[0] != VERSION:
        return "version"
    mtype = body[1]
    payload = bytes(body[HEADER_LEN:-2])
    expected = PAYLOAD_LEN.get(mtype)
    if expected is None:
        return "type"
    if len(payload) != expected:
        return "length"
    return Frame(mtype, get_u16(body, 2), body[4], get_u16(body, 5), payload)


class Decoder:
    """Feed it bytes as they arrive; it returns whole, valid frames and counts the rest.

    Never raises on any input: garbage, truncation and bit errors only move counters.
    """

    def __init__(self):
        self.buf = bytearray()
        self.frames = 0
        self.errors = {}
        self.overflow = False

    def _bad(self, reason):
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def bad_frames(self):
        return sum(self.errors.values())

    def feed(self, data):
        out = []
        data = bytes(data)
        start = 0
        while True:
            zero = data.find(b"\x00", start)
            if zero < 0:
                self._keep(data[start:])
                return out
            chunk = data[start:zero]
            start = zero + 1
            if self.buf:
                chunk = bytes(self.buf) + chunk
                self.buf = bytearray()
            if self.overflow or len(chunk) > MAX_ENCODED:
                self.overflow = False
                self._bad("long")
            elif chunk:
                body = cobs_decode(chunk)
                frame = decode_body(body) if body is not None else "cobs"
                if isinstance(frame, str):
                    self._bad(frame)
                else:
                    self.frames += 1
                    out.append(frame)

    def _keep(self, tail):
        """Hold a partial frame until its delimiter comes; drop it if it outgrows any frame."""
        if self.overflow:
            return
        if len(self.buf) + len(tail) > MAX_ENCODED:
            self.overflow = True
            self.buf = bytearray()
        else:
            self.buf.extend(tail)


# Payload helpers (both sides)


def alarm_payload(what, level=0):
    return bytes((what & 0xFF,)) + u16(level)


def heartbeat_payload(millivolts, state, level, interval_s):
    return u16(millivolts) + bytes((state & 0xFF,)) + u16(level) + u16(interval_s)


def parse_heartbeat(payload):
    """(millivolts, state, level, interval_s)"""
    return (get_u16(payload, 0), payload[2], get_u16(payload, 3), get_u16(payload, 5))
