"""Faults, timed: how long the hub and the receiver take to make good after each.

``python -m bench.faults`` (``--quick``: fewer rounds). Every case runs the real simulated hub
(no camera, no sensor bus), a real Mosquitto and the real commune receiver in this process.

* broker restart: two panics pressed while the broker is down; the time from the moment the
  broker *and* the receiver are back to both panics stored at the receiver. With and without
  broker persistence, the hub or the receiver reconnecting first. The hub's receipt timeout is
  600 s, so only the early re-send can make it; the goal is 5 s.
* a disk that refuses writes: press-to-arrival of a panic at a subscriber while SQLite refuses
  every write (the alarm goes out from memory), against the same hub with a working disk, in
  turn in the same run.
* a damaged outbox: from ``Hub.start()`` to the first panic at a subscriber on a 10,000-row
  outbox whose middle pages were overwritten, against the same outbox undamaged.
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import common
from commune.receiver import Receiver
from commune.store import EventStore
from hw_sim.simulator import SimulatedHub
from settings import Config
from testkit.hubs import COMMUNE, press_and_release, sim_config, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

STEP_S = 0.005  # how often a timed wait looks


def hub_config(receipts: bool = True) -> Config:
    """No camera, no sensor bus; a receipt timeout far beyond any wait here."""
    return sim_config(
        camera=False, sensor_bus=False, uplink={"receipts": receipts, "receipt_timeout_s": 600}
    )


def panics_stored(db: Path) -> int:
    with EventStore(db) as store:
        return sum(e["kind"] == "panic" for e in store.recent(10_000))


@contextmanager
def temp_dir(root: str, prefix: str) -> Iterator[Path]:
    path = common.disk_dir(root, prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- broker restart -----------------------------------------------------------------------


def broker_restart(root: Path, persistence: bool, hub_first: bool) -> float:
    """Seconds from broker-and-receiver back to the outage's panics stored."""
    db = root / "receiver.sqlite3"
    with common.mosquitto(persistent=persistence) as broker:
        receiver = Receiver(broker.host, broker.port, COMMUNE, db, keepalive=5)
        receiver.start()
        try:
            assert receiver.wait_subscribed(10)
            with sim_hub(broker, root / "hub", hub_config()) as hub:
                wait_until(lambda: hub.hub.uplink.connected, 10, "hub online")
                press_and_release(hub)
                wait_until(lambda: panics_stored(db) == 1, 20, "first panic")
                broker.stop()
                if hub_first:
                    receiver.stop()
                press_and_release(hub)
                press_and_release(hub)
                if hub_first:
                    broker.start()
                    wait_until(lambda: hub.hub.uplink.connected, 60, "hub back")
                    time.sleep(0.5)  # it has re-published to nobody
                    receiver = Receiver(broker.host, broker.port, COMMUNE, db, keepalive=5)
                    receiver.start()
                    assert receiver.wait_subscribed(60)
                    back = time.monotonic()
                    wait_until(lambda: panics_stored(db) == 3, 60, "outage panics", step=STEP_S)
                    return time.monotonic() - back
            broker.start()
            assert receiver.wait_subscribed(60)
            back = time.monotonic()
            with sim_hub(broker, root / "hub", hub_config()):
                wait_until(lambda: panics_stored(db) == 3, 60, "outage panics", step=STEP_S)
                return time.monotonic() - back
        finally:
            receiver.stop()


# -- storage ------------------------------------------------------------------------------


def refused_disk(root: Path, n: int) -> dict[str, Any]:
    with (
        common.mosquitto() as broker,
        sim_hub(broker, root / "hub", hub_config(receipts=False)) as hub,
        Subscriber(broker, hub.hub.topics.event("panic"), timeout=30) as arrivals,
    ):
        wait_until(lambda: hub.hub.uplink.connected, 10, "hub online")
        lat: dict[bool, list[float]] = {False: [], True: []}
        for i in range(2 * n):
            refuse = i % 2 == 1
            hub.hub.dispatcher.call(
                lambda o, r=refuse: o.conn.execute(f"PRAGMA query_only={int(r)}")
            ).result(10)
            if not refuse:  # let the held rows go to disk before the healthy press
                wait_until(lambda: hub.hub.outbox.health()["state"] == "ok", 10, "ok")
            seen = arrivals.count
            t0 = time.perf_counter_ns()
            press_and_release(hub)
            lat[refuse].append((arrivals.message_at(seen).received_ns - t0) / 1e6)
    healthy, refused = lat[False], lat[True]
    return {
        "healthy_p50_ms": round(statistics.median(healthy), 2),
        "refused_p50_ms": round(statistics.median(refused), 2),
        "healthy_p99_ms": round(common.percentile(healthy, 99), 2),
        "refused_p99_ms": round(common.percentile(refused, 99), 2),
        "p50_ratio": common.ratio(statistics.median(refused), statistics.median(healthy)),
    }


def damaged_start(root: Path, damage: bool, rows: int) -> float:
    """Seconds from Hub.start() to the first panic at a subscriber."""
    hub_dir = root / ("damaged" if damage else "sound")
    cfg = hub_config(receipts=True)
    with common.mosquitto() as broker:
        with sim_hub(broker, hub_dir, cfg) as hub:
            hub.handle({"cmd": "emit", "kind": "telemetry", "count": min(rows, 10_000)})
        if damage:
            path = hub_dir / "outbox.sqlite3"
            size = path.stat().st_size
            with path.open("r+b") as f:
                f.seek(size // 2)
                f.write(random.Random(1).randbytes(16384))
        hub = SimulatedHub(cfg, hub_dir, broker=(broker.host, broker.port))
        arrivals = Subscriber(broker, hub.hub.topics.event("panic"))
        t0 = time.monotonic()
        hub.start()
        try:
            press_and_release(hub)
            arrivals.message_at(0, 60)
            return time.monotonic() - t0
        finally:
            hub.stop(drain_timeout_s=1.0)
            arrivals.close()


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--case",
        action="append",
        choices=CASES,
        help="run only these cases (default all): " + ", ".join(CASES),
    )
    args = p.parse_args()
    cases = args.case or CASES
    rounds = 2 if args.quick else 5
    results: dict[str, Any] = {}
    if "restart" in cases:
        results.update(restart_cases(args, rounds))
    if "refused-disk" in cases:
        results.update(refused_disk_case(args))
    if "damaged-start" in cases:
        results.update(damaged_start_case(args, rounds))
    common.report("faults", args, results)


CASES = ("restart", "refused-disk", "damaged-start")


def restart_cases(args: Any, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    rows = []
    for persistence in (False, True):
        for hub_first in (True, False):
            times = []
            for _ in range(rounds):
                with temp_dir(args.data_root, "bench-faults-") as root:
                    times.append(broker_restart(root, persistence, hub_first))
            name = (
                f"broker restart, {'persistence' if persistence else 'no persistence'}, "
                f"{'hub' if hub_first else 'receiver'} back first"
            )
            results[name] = {
                "median_s": round(statistics.median(times), 2),
                "max_s": round(max(times), 2),
            }
            rows.append([name, results[name]["median_s"], results[name]["max_s"], "<= 5 s"])
    common.table("Outage panics stored after the broker and the receiver are back (s)",
                 ["case", "median", "max", "goal"], rows)  # fmt: skip
    return results


def refused_disk_case(args: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with temp_dir(args.data_root, "bench-faults-") as root:
        results["refused disk"] = refused_disk(root, 20 if args.quick else 100)
    r = results["refused disk"]
    common.table(
        "Panic press to arrival, disk refusing writes vs working (ms)",
        ["case", "p50", "p99"],
        [["working disk", r["healthy_p50_ms"], r["healthy_p99_ms"]],
         ["disk refusing writes", r["refused_p50_ms"], r["refused_p99_ms"]]],
    )  # fmt: skip
    return results


def damaged_start_case(args: Any, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    starts: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for damage in (False, True):
            with temp_dir(args.data_root, "bench-faults-") as root:
                starts[damage].append(damaged_start(root, damage, 10_000))
    results["start to first panic"] = {
        "sound_s": round(statistics.median(starts[False]), 2),
        "damaged_s": round(statistics.median(starts[True]), 2),
        "ratio": common.ratio(statistics.median(starts[True]), statistics.median(starts[False])),
    }
    s = results["start to first panic"]
    common.table(
        "Start to first panic published, 10,000-row outbox (s)",
        ["outbox", "median", "ratio"],
        [["sound", s["sound_s"], 1.0], ["middle pages overwritten", s["damaged_s"], s["ratio"]]],
    )
    return results


if __name__ == "__main__":
    main()
