"""Broker outage and return: how soon the hub is back, delivers the outage's events, and how
many it delivers twice.

``python -m bench.reconnect`` (``--quick``: shorter outages, one round; ``--outage S`` to choose
the lengths). Each round runs, in this process, a real Mosquitto (without persistence, its
default; ``--persistence``: with), the real commune receiver (storing and receipting) and the
real simulated hub (no camera, no sensor bus, the default ``[uplink]``: receipts on). A
telemetry producer emits ``RATE`` events a second through the hub's sensor path (``Hub.emit``,
waiting for the commit) from before the outage to the end; a panic is pressed half-way through
the outage. The broker is stopped
(SIGTERM) for the outage, then started again on the same port. Times are from the moment it
accepts TCP connections again ("back"):

* hub connected: its uplink's CONNACK (``uplink.stats.connects`` goes up);
* receiver subscribed: its SUBACK (it has its own backoff, 1-30 s, and the hub re-sends what is
  unreceipted when it sees the receiver online);
* first and last outage event stored: the receiver's ``on_new_event`` for the first and for the
  last of the events emitted while the broker was down (the panic included): "all of the
  outage delivered";
* duplicates: events the receiver got again though it had them (its ``duplicates`` count) from
  the outage's start to the end of the round, and event ids that reached a plain QoS 1
  subscriber more than once.

Baselines in the same round: bare paho clients connected to the same broker before the outage
and left to reconnect by themselves, one with the hub's own ``reconnect_delay_set`` pair (the
hub draws its pair at random, so the same draw is copied), one with paho's defaults (1-120 s);
and the broker's own start (process spawned to accepting TCP). The hub's reconnect time is set
by the backoff, so "ratio" is hub against bare paho with the same delays.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench import common
from commune.receiver import Receiver
from core.events import Event
from hw_sim.simulator import SimulatedHub
from testkit.broker import Broker
from testkit.hubs import COMMUNE, EVENTS, press_and_release, sim_hub
from testkit.waiting import WaitTimeout, wait_until

RATE = 20  # telemetry events a second, before, during and after the outage
FULL_OUTAGES = (41.0, 93.0)  # the lengths of the reference's outages
QUICK_OUTAGES = (5.0, 12.0)
ROUNDS = 3
WARMUP_S = 3.0  # telemetry flowing and stored before the broker goes
SETTLE_S = 5.0  # after the last outage event is stored, for late duplicates
DELIVERY_TIMEOUT_S = 240.0
STEP_S = 0.005  # how often the timed waits look
PAHO_DEFAULT_DELAYS = (1, 120)


class BareClient:
    """A bare paho client (MQTT 5, paho's defaults but its reconnect delays) that reconnects by
    itself; ``connects`` are the monotonic times of its CONNACKs. ``topic`` given: it
    subscribes at QoS 1 on every connect and counts every message's event id."""

    def __init__(self, broker: Broker, delays: tuple[int, int], topic: str | None = None) -> None:
        self.connects: list[float] = []
        self.ids: Counter[str] = Counter()  # under ``lock``: paho's thread counts
        self.lock = threading.Lock()
        self.topic = topic
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-bare-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.reconnect_delay_set(min_delay=delays[0], max_delay=delays[1])
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        self.connects.append(time.monotonic())
        if self.topic:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            event_id = str(json.loads(msg.payload)["id"])
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            self.ids[event_id] += 1

    def wait_ready(self, timeout: float = 10.0) -> None:
        wait_until(lambda: self.connects, timeout, "bare client connected")
        if self.topic:
            assert self._subscribed.wait(timeout), "bare subscriber: no SUBACK"

    def connected_after(self, t: float) -> float | None:
        return next((c for c in self.connects if c >= t), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Arrivals:
    """What the receiver stored, by event id: the monotonic time it was first handed on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: dict[str, float] = {}
        self.panics: list[float] = []

    def __call__(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self.first.setdefault(str(event["id"]), now)
            if event.get("kind") == "panic":
                self.panics.append(now)

    def stored(self, ids: list[str]) -> int:
        with self._lock:
            return sum(i in self.first for i in ids)


class Telemetry:
    """Emits ``RATE`` telemetry events a second through the hub's sensor path, each waiting for
    its commit; keeps (monotonic emit time, id) of each."""

    def __init__(self, hub: SimulatedHub) -> None:
        self.hub = hub
        self.emitted: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-telemetry", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n, start = 0, time.monotonic()
        while not self._stop.is_set():
            event = Event(kind="telemetry", zone="bench", source="bench", data={"n": n})
            self.hub.hub.emit(event).result(timeout=30)
            self.emitted.append((time.monotonic(), str(event.id)))
            n += 1
            self._stop.wait(max(0.0, start + n / RATE - time.monotonic()))

    def between(self, t0: float, t1: float) -> list[str]:
        return [i for t, i in self.emitted if t0 <= t < t1]

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)


@contextmanager
def receiver_on(broker: Broker, db: Path, arrivals: Arrivals) -> Iterator[Receiver]:
    receiver = Receiver(broker.host, broker.port, COMMUNE, db, on_new_event=arrivals)
    receiver.start()
    try:
        assert receiver.wait_subscribed(10), "receiver did not subscribe"
        yield receiver
    finally:
        receiver.stop()


def since(t: float | None, back: float) -> float | None:
    return None if t is None else round(t - back, 2)


def one_outage(
    root: Path, outage_s: float, persistence: bool, resend_on_receiver: bool = True
) -> dict[str, Any]:
    arrivals = Arrivals()
    with (
        common.mosquitto(persistent=persistence) as broker,
        receiver_on(broker, root / "receiver.sqlite3", arrivals) as receiver,
        sim_hub(broker, root / "hub", camera=False, sensor_bus=False) as hub,
    ):
        uplink = hub.hub.uplink
        if not resend_on_receiver:
            # --explore-no-resend: the hub no longer re-sends what is unreceipted when the
            # receiver says it is back (what a receiver whose session was kept would ask for)
            uplink.handlers.receiver_online = lambda: None
        wait_until(lambda: uplink.connected, 10, "hub connected")
        delays = uplink._delays  # the hub's own random draw, copied to the bare client
        bare_same = BareClient(broker, delays)
        bare_default = BareClient(broker, PAHO_DEFAULT_DELAYS)
        watcher = BareClient(broker, (1, 1), topic=EVENTS)
        clients = (bare_same, bare_default, watcher)
        telemetry = Telemetry(hub)
        try:
            for c in clients:
                c.wait_ready()
            time.sleep(WARMUP_S)
            before = telemetry.between(0.0, time.monotonic())
            wait_until(lambda: arrivals.stored(before) == len(before), 30, "warm-up stored")
            connects_before = uplink.stats.connects
            duplicates_before = receiver.stats.duplicates
            with watcher.lock:
                watcher_before = Counter(watcher.ids)

            broker.stop()
            down = time.monotonic()
            time.sleep(outage_s / 2)
            press_and_release(hub)
            time.sleep(max(0.0, down + outage_s - time.monotonic()))
            spawned = time.monotonic()
            broker.start()
            back = time.monotonic()

            outage_ids = telemetry.between(down, back)
            hub_back = receiver_back = None
            deadline = back + DELIVERY_TIMEOUT_S
            while time.monotonic() < deadline:
                now = time.monotonic()
                if hub_back is None and uplink.stats.connects > connects_before:
                    hub_back = now
                if receiver_back is None and receiver.wait_subscribed(0):
                    receiver_back = now
                delivered = arrivals.stored(outage_ids) == len(outage_ids) and arrivals.panics
                # the bare clients too: paho's defaults come back last (34 s after 93 s)
                if delivered and all(c.connected_after(back) for c in clients):
                    break
                time.sleep(STEP_S)
            telemetry.stop()
            every = [i for _, i in telemetry.emitted]
            with contextlib.suppress(WaitTimeout):  # what is missing then is counted as lost
                wait_until(lambda: arrivals.stored(every) == len(every), 30, "all stored")
            time.sleep(SETTLE_S)
        finally:
            telemetry.stop()
            for c in clients:
                c.close()
        outage_times = [arrivals.first[i] for i in outage_ids if i in arrivals.first]
        outage_times += arrivals.panics[:1]  # the panic pressed during the outage
        all_ids = [i for _, i in telemetry.emitted]
        with watcher.lock:
            ids = Counter(watcher.ids)
        # ids that arrived again from the outage on, having arrived before or since
        again = [i for i, n in (ids - watcher_before).items() if ids[i] > 1]
        return {
            "outage_s": outage_s,
            "hub_delays_s": list(delays),
            "broker_start_s": round(back - spawned, 3),
            "hub_connected_s": since(hub_back, back),
            "bare_same_delays_s": since(bare_same.connected_after(back), back),
            "bare_paho_defaults_s": since(bare_default.connected_after(back), back),
            "receiver_subscribed_s": since(receiver_back, back),
            "first_outage_event_s": since(min(outage_times, default=None), back),
            "last_outage_event_s": since(max(outage_times, default=None), back),
            "panic_stored_s": since(next(iter(arrivals.panics), None), back),
            "outage_events": len(outage_ids) + 1,
            "outage_events_stored": arrivals.stored(outage_ids) + len(arrivals.panics[:1]),
            "events_emitted": len(all_ids),
            "events_lost": len(all_ids) - arrivals.stored(all_ids),
            "receiver_duplicates": receiver.stats.duplicates - duplicates_before,
            "subscriber_ids_twice": len(again),
            "hub_resent": hub.hub.dispatcher.stats.resent,
        }


FIGURES = (
    ("broker_start_s", "broker start (spawn to TCP accept)"),
    ("bare_same_delays_s", "bare paho, the hub's delays: connected"),
    ("bare_paho_defaults_s", "bare paho, defaults 1-120 s: connected"),
    ("hub_connected_s", "hub connected"),
    ("receiver_subscribed_s", "receiver subscribed"),
    ("panic_stored_s", "outage panic stored"),
    ("first_outage_event_s", "first outage event stored"),
    ("last_outage_event_s", "last outage event stored"),
)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": len(runs)}
    for key, _ in FIGURES:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = {
            "median": round(statistics.median(values), 2) if values else None,
            "max": max(values, default=None),
            "missing": len(runs) - len(values),
        }
    for key in ("outage_events", "events_lost", "receiver_duplicates", "subscriber_ids_twice"):
        out[key] = sum(r[key] for r in runs)
    hub, bare = out["hub_connected_s"]["median"], out["bare_same_delays_s"]["median"]
    out["hub_vs_bare_same_delays"] = common.ratio(hub, bare) if hub and bare else None
    return out


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--outage", type=float, action="append", metavar="S", help="outage length (repeatable)"
    )
    p.add_argument(
        "--persistence", action="store_true", help="the broker keeps sessions across its restart"
    )
    p.add_argument(
        "--explore-no-resend",
        action="store_true",
        help="the hub does not re-send on the receiver's online (with --persistence: the"
        " duplicates a receiver reporting its kept session would save)",
    )
    p.add_argument("--rounds", type=int, help=f"rounds per outage (default {ROUNDS}, quick 1)")
    args = p.parse_args(argv)
    outages = args.outage or (QUICK_OUTAGES if args.quick else FULL_OUTAGES)
    rounds = args.rounds or (1 if args.quick else ROUNDS)
    runs: dict[float, list[dict[str, Any]]] = {o: [] for o in outages}
    for r in range(rounds):
        for outage in outages:
            root = common.disk_dir(args.data_root, "bench-reconnect-")
            try:
                runs[outage].append(
                    one_outage(root, outage, args.persistence, not args.explore_no_resend)
                )
            finally:
                shutil.rmtree(root, ignore_errors=True)
            print(f"round {r + 1}, {outage:g} s outage: {runs[outage][-1]}", flush=True)
    summaries = {f"{o:g}": summary(rs) for o, rs in runs.items()}
    rows = []
    for key, label in FIGURES:
        row: list[Any] = [label]
        for s in summaries.values():
            row += [_cell(s[key]["median"]), _cell(s[key]["max"])]
        rows.append(row)
    for key, label in (
        ("outage_events", "events emitted during the outages"),
        ("events_lost", "events never stored"),
        ("receiver_duplicates", "duplicates at the receiver"),
        ("subscriber_ids_twice", "ids twice at a plain subscriber"),
    ):
        rows.append([label] + [x for s in summaries.values() for x in (s[key], "")])
    header = ["seconds after the broker is back"]
    for o in outages:
        header += [f"{o:g} s outage, median", "max"]
    common.table(
        f"Broker outage and return ({'persistence' if args.persistence else 'no persistence'}),"
        f" {rounds} round(s) each, telemetry {RATE}/s",
        header,
        rows,
    )
    print(
        "\nhub connected against bare paho with the same delays (median ratio): "
        + ", ".join(f"{o} s: {s['hub_vs_bare_same_delays']}" for o, s in summaries.items())
        + ". Counts are totals over the rounds."
    )
    common.report(
        "reconnect",
        args,
        {
            "rate_per_s": RATE,
            "persistence": args.persistence,
            "resend_on_receiver_online": not args.explore_no_resend,
            "summaries": summaries,
            "runs": {f"{o:g}": rs for o, rs in runs.items()},
        },
    )


def _cell(value: float | None) -> float | str:
    return "-" if value is None else value


if __name__ == "__main__":
    main()
