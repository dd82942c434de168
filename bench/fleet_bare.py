"""The bare baseline for ``bench.fleet``: N plain paho clients that only connect and publish the
same messages at the same rates (a retained health every ``--health-s``, an event every
minute / ``--telemetry-per-min``, both QoS 1, of the fleet's sizes), and nothing else: no ids,
no seq, no ledger, no receipts, no commands. Three ways to drive them:

- ``selectors``: one thread and one selector for all, paho's external-loop API, the least a
  Python process can do;
- ``asyncio``: the same callbacks on an asyncio event loop (``add_reader``/``add_writer``);
- ``threads``: paho's own ``loop_start``, a thread per client.

Prints ``connected N`` once every client has its CONNACK, then runs for ``--duration-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import selectors
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.topics import HubTopics
from hw_sim.fleet import payloads


def messages(hub: str) -> tuple[bytes, bytes]:
    """A health and a telemetry event of the sizes the fleet's hubs publish."""
    health = payloads.health_object(
        hub=hub, started=time.monotonic(), last_seq=1, pending=0, sent=0, undelivered={},
        in_flight=0, resent=0, uplink=payloads.uplink_health("online", time.time(), 0),
        malformed_commands=0, refused_commands=0, bad_receipts=0, forged_receipts=0,
    )  # fmt: skip
    _, _, event = payloads.event_bytes(
        hub, 1, "telemetry", "hub", "fleet", payloads.telemetry_data(1, 1.0), None
    )
    return payloads.health_bytes(health, None), event


class Bare:
    """One client: its topics, its payloads, its schedule."""

    def __init__(self, n: int, commune: str, host: str, port: int) -> None:
        self.topics = HubTopics(commune, f"bare-{n:05d}")
        self.host, self.port = host, port
        self.health, self.event = messages(self.topics.hub)
        self.connected = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"tuquan-{commune}-{self.topics.hub}",
            protocol=mqtt.MQTTv5,
        )
        client.will_set(self.topics.status, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        self.client = client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connected = True
        client.publish(self.topics.status, b"online", qos=1, retain=True)

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 60
        self.client.connect(self.host, self.port, 30, clean_start=False, properties=props)

    def publish_health(self) -> None:
        if self.connected:
            self.client.publish(self.topics.health, self.health, qos=1, retain=True)

    def publish_event(self) -> None:
        if self.connected:
            self.client.publish(self.topics.event("telemetry"), self.event, qos=1)


Job = tuple[float, Callable[[], None], float]


def schedule(bares: list[Bare], health_s: float, event_s: float) -> list[Job]:
    """(first due, job, period) for every client's two jobs, phases spread evenly."""
    now = time.monotonic()
    n = len(bares)
    jobs = []
    for i, bare in enumerate(bares):
        jobs.append((now + health_s * i / n, bare.publish_health, health_s))
        if event_s:
            jobs.append((now + event_s * i / n, bare.publish_event, event_s))
    return jobs


def run_selectors(bares: list[Bare], args: argparse.Namespace) -> None:
    import heapq

    sel = selectors.DefaultSelector()
    writing: set[int] = set()

    def hook(bare: Bare) -> None:
        c = bare.client
        c.on_socket_open = lambda cl, u, s: sel.register(s, selectors.EVENT_READ, bare)
        c.on_socket_close = lambda cl, u, s: sel.unregister(s)

        def want(cl: Any, u: Any, s: Any) -> None:
            writing.add(id(bare))
            sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE, bare)

        def done(cl: Any, u: Any, s: Any) -> None:
            if id(bare) in writing:
                writing.discard(id(bare))
                sel.modify(s, selectors.EVENT_READ, bare)

        c.on_socket_register_write = want
        c.on_socket_unregister_write = done

    for bare in bares:
        hook(bare)
        bare.connect()
    heap = [(due, n, job, period) for n, (due, job, period) in enumerate(schedule(
        bares, args.health_s, 60.0 / args.telemetry_per_min if args.telemetry_per_min else 0.0
    ))]  # fmt: skip
    heapq.heapify(heap)
    end = None
    next_misc = time.monotonic()
    announced = False
    while end is None or time.monotonic() < end:
        now = time.monotonic()
        timeout = max(0.0, min(heap[0][0] if heap else now + 1, next_misc) - now)
        for key, events in sel.select(timeout):
            if events & selectors.EVENT_READ:
                key.data.client.loop_read()
            if events & selectors.EVENT_WRITE:
                key.data.client.loop_write()
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            due, n, job, period = heapq.heappop(heap)
            job()
            heapq.heappush(heap, (due + period, n, job, period))
        if now >= next_misc:
            for bare in bares:
                bare.client.loop_misc()
            next_misc = now + 1.0
        if not announced and all(b.connected for b in bares):
            announced = True
            end = time.monotonic() + args.duration_s
            print(f"connected {len(bares)}", flush=True)


def run_asyncio(bares: list[Bare], args: argparse.Namespace) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for bare in bares:
            c = bare.client
            c.on_socket_open = lambda cl, u, s, c=c: loop.add_reader(s, c.loop_read)
            c.on_socket_close = lambda cl, u, s: loop.remove_reader(s)
            c.on_socket_register_write = lambda cl, u, s, c=c: loop.add_writer(s, c.loop_write)
            c.on_socket_unregister_write = lambda cl, u, s: loop.remove_writer(s)
            bare.connect()

        async def every(first: float, period: float, job: Callable[[], None]) -> None:
            await asyncio.sleep(max(0.0, first - time.monotonic()))
            while True:
                job()
                await asyncio.sleep(period)

        async def misc() -> None:
            while True:
                for bare in bares:
                    bare.client.loop_misc()
                await asyncio.sleep(1.0)

        period = 60.0 / args.telemetry_per_min if args.telemetry_per_min else 0.0
        tasks = [asyncio.create_task(every(d, p, j)) for d, j, p in schedule(
            bares, args.health_s, period)]  # fmt: skip
        tasks.append(asyncio.create_task(misc()))
        while not all(b.connected for b in bares):
            await asyncio.sleep(0.05)
        print(f"connected {len(bares)}", flush=True)
        await asyncio.sleep(args.duration_s)
        for task in tasks:
            task.cancel()

    asyncio.run(main())


def run_threads(bares: list[Bare], args: argparse.Namespace) -> None:
    for bare in bares:
        bare.connect()
        bare.client.loop_start()
    while not all(b.connected for b in bares):
        time.sleep(0.05)
    print(f"connected {len(bares)}", flush=True)
    period = 60.0 / args.telemetry_per_min if args.telemetry_per_min else 0.0
    jobs = schedule(bares, args.health_s, period)
    stop = threading.Event()
    end = time.monotonic() + args.duration_s
    import heapq

    heap = [(due, n, job, p) for n, (due, job, p) in enumerate(jobs)]
    heapq.heapify(heap)
    while time.monotonic() < end:
        due, n, job, p = heapq.heappop(heap)
        stop.wait(max(0.0, due - time.monotonic()))
        job()
        heapq.heappush(heap, (due + p, n, job, p))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["selectors", "asyncio", "threads"], default="selectors")
    p.add_argument("--hubs", type=int, required=True)
    p.add_argument("--broker", action="append", required=True, metavar="HOST:PORT")
    p.add_argument("--commune", default="bare")
    p.add_argument("--health-s", type=float, default=30.0)
    p.add_argument("--telemetry-per-min", type=float, default=1.0)
    p.add_argument("--duration-s", type=float, default=60.0)
    args = p.parse_args(argv)
    brokers = [(h, int(port)) for h, _, port in (b.rpartition(":") for b in args.broker)]
    bares = [Bare(n, args.commune, *brokers[n % len(brokers)]) for n in range(args.hubs)]
    {"selectors": run_selectors, "asyncio": run_asyncio, "threads": run_threads}[args.mode](
        bares, args
    )
    print(json.dumps({"done": True}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
