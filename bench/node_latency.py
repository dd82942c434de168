"""Sensor node alarm -> subscriber latency over a pty at 115200 baud, against a bare reader that
publishes at once, and against the line's own transfer time.

Hub: the simulator's default hub (receipts off, no camera) with its sensor bus (115200 baud)
and node ``smoke-1`` running the real firmware (firmware_py/node.py) on the far end of a pty,
polling every 1 ms with no debounce (a real node adds its debounce, 30 ms by default, and up to one
poll, 10 ms). An alarm is the detector's level raised above its threshold; the node's ALARM
frame goes over the pty to the hub's serial-bus driver, which reports it, commits it to the
outbox, ACKs it and publishes it. Times, all ``time.perf_counter_ns`` in this one process: the
pin edge (just before the level is set); the frame (when the firmware writes it to its UART);
the ACK (when the hub's bytes reach the node's UART); the event at an MQTT subscriber.

Bare: a second pty, a thread reading it with pyserial as the hub does, decoding with the same
codec and publishing each frame with one paho QoS 1 publish, no outbox; its frame is written to
the pty by this process. The cases take turns (hub alarm, its restore, bare frame, ...).

The physical floor is the frame's own time on a 115200-baud wire: 10 bits a byte (8N1), 15
bytes for an ALARM (1.30 ms), 12 for the ACK. A pty does not pace at the baud rate: it moves a
frame in microseconds, so the measured figures contain no wire time; on a real line add the
floor (and the ACK's time for the round trip).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import tty
from pathlib import Path
from typing import Any

import serial

from bench import common
from firmware_py import codec
from hw_sim.nodes import SMOKE_THRESHOLD
from hw_sim.simulator import SimulatedHub
from testkit.broker import Broker
from testkit.hubs import sim_config
from testkit.mqtt import Subscriber, close_client, connected_client
from testkit.waiting import wait_until

BAUD = 115_200
WARMUP = 20
CLEAN_AIR = 1_000
BARE_TOPIC = "bench/bare/alarm"
FIRMWARE = {"poll_ms": 1, "debounce_ms": 0}


def wire_ms(nbytes: int) -> float:
    """Time on a 115200-baud 8N1 wire."""
    return nbytes * 10 / BAUD * 1000


class Taps:
    """When the node's UART writes (frames out) and when the hub's bytes reach it (ACKs)."""

    def __init__(self, link: Any) -> None:
        self.sent: list[tuple[int, bytes]] = []
        self.heard: list[tuple[int, bytes]] = []
        send, deliver = link.send, link.deliver

        def tapped_send(data: bytes) -> None:
            self.sent.append((time.perf_counter_ns(), data))
            send(data)

        def tapped_deliver(data: bytes) -> None:
            self.heard.append((time.perf_counter_ns(), data))
            deliver(data)

        link.send, link.deliver = tapped_send, tapped_deliver


class BareReader:
    """A pty read with pyserial as the hub reads its bus; each frame decoded and published."""

    def __init__(self, broker: Broker) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = serial.Serial(os.ttyname(self.slave), BAUD, timeout=0.1, exclusive=True)
        self.pub = connected_client(broker, "bench-bare")
        self.read_at: list[int] = []  # when each frame came out of the pty
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bare-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        decoder = codec.Decoder()
        while not self._stop.is_set():
            data = self.port.read(self.port.in_waiting or 1)
            if not data:
                continue
            now = time.perf_counter_ns()
            for frame in decoder.feed(data):
                self.read_at.append(now)
                self.pub.publish(BARE_TOPIC, b"%d" % frame.seq, qos=1)

    def send(self, frame: bytes) -> int:
        t0 = time.perf_counter_ns()
        os.write(self.master, frame)
        return t0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.port.close()
        close_client(self.pub)
        for fd in (self.master, self.slave):
            os.close(fd)


def frames_in(data: bytes) -> list[Any]:
    return list(codec.Decoder().feed(data))


def stats(
    name: str, values_ms: list[float], floor_ms: float, bare_p99: float | None
) -> dict[str, Any]:
    p50, p99 = common.percentile(values_ms, 50), common.percentile(values_ms, 99)
    return {
        "case": name,
        "n": len(values_ms),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(values_ms), 3),
        "floor_ms": round(floor_ms, 3),
        "p50_over_floor": common.ratio(p50, floor_ms),
        "p99_over_floor": common.ratio(p99, floor_ms),
        "p99_over_bare_p99": common.ratio(p99, bare_p99) if bare_p99 else None,
    }


def run(broker: Broker, data_dir: Path, n: int) -> list[dict[str, Any]]:
    # The sensor bus alone: a camera pipeline would share the CPU.
    cfg = sim_config(camera=False, uplink={"receipts": False})
    sim = SimulatedHub(cfg, data_dir, broker=(broker.host, broker.port), node_firmware=FIRMWARE)
    node = sim.nodes.node("smoke-1")
    assert sim.hub.cfg.bus(node.spec.bus).baud == BAUD
    taps = Taps(node.link)
    smoke_topic = sim.hub.topics.event("smoke")
    arrivals = Subscriber(broker, smoke_topic, BARE_TOPIC, timeout=30)
    bare = BareReader(broker)
    edges: list[tuple[int, int]] = []  # (level, edge ns)
    bare_sent: list[int] = []
    sim.start()
    try:
        wait_until(lambda: sim.hub.uplink.connected, 10, "hub connection")
        wait_until(lambda: node.node.stats["heartbeats"] > 0, 10, "the node's boot")
        for i in range(WARMUP + n):
            level = SMOKE_THRESHOLD + i
            seen = arrivals.count
            t0 = time.perf_counter_ns()
            node.set_smoke_level(level)
            arrivals.message_at(seen)
            if i >= WARMUP:
                edges.append((level, t0))
            node.set_smoke_level(CLEAN_AIR)
            arrivals.message_at(seen + 1)
            wait_until(lambda: not node.node.outstanding(), 10, "the node's ACKs", step=0.005)
            frame = codec.encode(codec.ALARM, 99, 1, i, codec.alarm_payload(codec.SMOKE, level))
            t_bare = bare.send(frame)
            arrivals.message_at(seen + 2)
            if i >= WARMUP:
                bare_sent.append(t_bare)
            time.sleep(0.002)
    finally:
        sim.stop(drain_timeout_s=1.0)
        bare.close()
        arrivals.close()

    # Match each alarm's edge, frame, ACK and arrival.
    arrived = {}
    bare_arrived = []
    for message in arrivals.messages:
        if message.topic == BARE_TOPIC:
            bare_arrived.append(message.received_ns)
            continue
        event = message.json()
        if event["qualifier"] == "E":
            arrived.setdefault(event["data"]["level"], message.received_ns)
    sent = []  # (ns, frame) of every ALARM the node wrote, first copies and re-sends
    for t, data in taps.sent:
        sent += [(t, f) for f in frames_in(data) if f.mtype == codec.ALARM]
    acks = []
    for t, data in taps.heard:
        acks += [(t, f) for f in frames_in(data) if f.mtype == codec.ACK]
    edge_ms, frame_ms, ack_ms = [], [], []
    for level, t_edge in edges:
        t_frame, frame = next(
            (t, f) for t, f in sent if t >= t_edge and codec.get_u16(f.payload, 1) == level
        )
        t_ack = next(t for t, f in acks if t >= t_frame and f.seq == frame.seq)
        edge_ms.append((arrived[level] - t_edge) / 1e6)
        frame_ms.append((arrived[level] - t_frame) / 1e6)
        ack_ms.append((t_ack - t_frame) / 1e6)
    bare_ms = [(b - a) / 1e6 for a, b in zip(bare_sent, bare_arrived[WARMUP:], strict=True)]
    pty_ms = [(b - a) / 1e6 for a, b in zip(bare_sent, bare.read_at[WARMUP:], strict=True)]
    alarm_bytes = len(codec.encode(codec.ALARM, 1, 1, 1, codec.alarm_payload(codec.SMOKE, 1)))
    ack_bytes = len(codec.encode(codec.ACK, 1, 1, 1))
    floor = wire_ms(alarm_bytes)
    bare_p99 = common.percentile(bare_ms, 99)
    return [
        stats("pty alone: frame written -> read by pyserial", pty_ms, floor, None),
        stats("bare: frame -> pyserial, decode, paho QoS 1 -> subscriber", bare_ms, floor, None),
        stats("hub: node's frame -> subscriber", frame_ms, floor, bare_p99),
        stats("hub: pin edge -> subscriber (1 ms poll, no debounce)", edge_ms, floor, bare_p99),
        stats(
            "hub: node's frame -> ACK back at the node (after commit)",
            ack_ms,
            floor + wire_ms(ack_bytes),
            None,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    n = 200 if args.quick else 1000
    data_dir = common.disk_dir(args.data_root, "bench-node-latency-")
    fs = common.filesystem_of(data_dir)
    common.log_to_file(data_dir / "hub.log")
    try:
        with common.mosquitto() as broker:
            rows = run(broker, data_dir, n)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    common.table(
        f"Sensor node alarm -> subscriber over a pty, {n} alarms (115200 baud; outbox on "
        f"{fs['device']} {fs['fstype']})",
        [
            "case",
            "n",
            "p50 ms",
            "p99 ms",
            "max ms",
            "floor ms",
            "p50/floor",
            "p99/floor",
            "p99/bare",
        ],
        [
            [
                r["case"],
                r["n"],
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["floor_ms"],
                r["p50_over_floor"],
                r["p99_over_floor"],
                "-" if r["p99_over_bare_p99"] is None else r["p99_over_bare_p99"],
            ]
            for r in rows
        ],
    )
    print(
        "floor: the frame's time on a 115200-baud wire (8N1), which a pty does not spend: "
        "15 bytes for an ALARM, plus 12 for the ACK in the round trip. On a real line add it "
        "to the measured times."
    )
    common.report(
        "node_latency",
        args,
        {"alarms": n, "baud": BAUD, "firmware": FIRMWARE, "outbox_fs": fs, "rows": rows},
    )


if __name__ == "__main__":
    main()
