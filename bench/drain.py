"""Drain throughput: a 100,000-event backlog at QoS 1, hub against a bare paho publish loop.

The outbox is filled while offline; then the dispatcher and uplink (receipts off) start against
the broker. Bare baseline: one paho client (defaults) publishing as many messages of the same
size as fast as it can. Both end when a QoS 1 subscriber (``mosquitto_sub -C``, a C client in
its own process, so it is never the bottleneck) has every message. Target: hub >= 0.8x bare.
With ``--explore``, other dispatcher windows and paho in-flight limits too.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path

from bench import common
from core.events import Event
from core.signing import SigningKey
from core.topics import HubTopics
from gateway.dispatcher import Dispatcher
from gateway.guarded_outbox import GuardedOutbox
from gateway.outbox import Outbox
from testkit.broker import Broker
from testkit.link import uplink_for
from testkit.mqtt import close_client, connected_client, publish_once
from testkit.waiting import wait_until

TARGET_RATIO = 0.8
FILL_BATCH = 1000
DEFAULT = (64, 0)  # Dispatcher(window=64), Uplink(max_inflight=0, no limit): what Hub builds
ROUNDS = 5
BARE_QUEUE = 50_000  # unacknowledged messages the bare loop leaves in paho at most
EXPLORE = [(16, 16), (64, 64), (64, 128), (256, 256), (1024, 1024)]


class Subscriber:
    """``mosquitto_sub`` at QoS 1 that exits after ``count`` messages on ``topic``."""

    def __init__(self, broker: Broker, topic: str, count: int, workdir: Path) -> None:
        exe = shutil.which("mosquitto_sub")
        if exe is None:
            raise SystemExit("mosquitto_sub is missing (apt-get install mosquitto-clients)")
        # A retained message on a second topic arrives first: once it is printed, the broker
        # has processed the whole SUBSCRIBE, so nothing published after can be missed.
        ready = f"bench/ready/{uuid.uuid4().hex}"
        publish_once(broker, ready, b"1", retain=True)
        self.out = workdir / f"sub-{uuid.uuid4().hex[:6]}.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    exe,
                    "-h",
                    broker.host,
                    "-p",
                    str(broker.port),
                    "-q",
                    "1",
                    "-t",
                    ready,
                    "-t",
                    topic,
                    "-C",
                    str(count + 1),
                    "-F",
                    "%t",
                ],
                stdout=out,
            )
        wait_until(lambda: self.out.stat().st_size > 0, 10, "subscriber ready")
        self.done_ns = 0
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        self.proc.wait()  # blocks in waitpid without holding the GIL
        self.done_ns = time.perf_counter_ns()

    def join(self, timeout: float) -> int:
        self._waiter.join(timeout)
        if self._waiter.is_alive():
            self.proc.kill()
            raise TimeoutError("not every message reached the subscriber")
        self.out.unlink()
        return self.done_ns


def fill(path: Path, n: int, signer: SigningKey | None = None) -> tuple[float, int]:
    """An offline outbox with ``n`` telemetry events, signed with ``signer`` if given (as the
    hub's are); (seconds, mean payload size)."""
    outbox = Outbox(path, "bench-hub", max_events=max(n, 100_000), signer=signer)
    t0 = time.perf_counter()
    for start in range(0, n, FILL_BATCH):
        events = [
            Event(kind="telemetry", zone="bench", source="bench", data={"n": i, "temp_c": 31.5})
            for i in range(start, min(n, start + FILL_BATCH))
        ]
        outbox.insert(events)
    elapsed = time.perf_counter() - t0
    size = outbox.conn.execute("SELECT avg(length(payload)) FROM outbox").fetchone()[0]
    outbox.close()
    return elapsed, round(size)


def run_bare(broker: Broker, n: int, size: int, workdir: Path) -> float:
    topic = f"bench/bare/{uuid.uuid4().hex[:6]}/event/telemetry"
    sub = Subscriber(broker, topic, n, workdir)
    pub = connected_client(broker, "bench-bare")
    payload = b"x" * size
    # paho's message ids are 16-bit: with more than 65,535 messages queued at once publish()
    # refuses the colliding ones. So past BARE_QUEUE unacknowledged the loop lets paho catch up.
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1

    pub.on_publish = on_publish
    t0 = time.perf_counter_ns()
    for i in range(n):
        if i - acked >= BARE_QUEUE:
            while i - acked > BARE_QUEUE // 5:
                time.sleep(0.001)
        if pub.publish(topic, payload, qos=1).rc != 0:
            raise RuntimeError("paho refused a publish")
    done = sub.join(600)
    close_client(pub)
    return n / ((done - t0) / 1e9)


def run_hub(
    broker: Broker, filled: Path, n: int, window: int, inflight: int, workdir: Path
) -> float:
    path = workdir / f"outbox-{window}-{inflight}.sqlite3"
    shutil.copy(filled, path)
    # The outbox the hub runs: the file behind its guard (opened by the store thread).
    outbox = GuardedOutbox(path, "bench-hub", max_events=max(n, 100_000))
    hub_id = f"hub-{uuid.uuid4().hex[:6]}"
    topics = HubTopics("bench", hub_id)
    sub = Subscriber(broker, topics.event("telemetry"), n, workdir)
    dispatcher = Dispatcher(outbox, topics, receipts=False, window=window)
    uplink = uplink_for(dispatcher, broker, topics, max_inflight=inflight)
    uplink.start()
    wait_until(lambda: uplink.connected, 10, "uplink connection")
    t0 = time.perf_counter_ns()
    dispatcher.start()  # takes the queued "online" first, then drains
    done = sub.join(600)
    wait_until(
        lambda: dispatcher.call(lambda o: o.undelivered).result(10) == 0, 60, "all delivered"
    )
    dispatcher.stop(1.0)
    uplink.stop()
    outbox.close()
    path.unlink()
    return n / ((done - t0) / 1e9)


def _all(rates: list[float]) -> str:
    return " ".join(f"{r:,.0f}" for r in rates)


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--explore", action="store_true", help="also try other windows and paho in-flight limits"
    )
    args = p.parse_args(argv)
    n = 10_000 if args.quick else 100_000
    workdir = common.disk_dir(args.data_root, "bench-drain-")
    fs = common.filesystem_of(workdir)
    filled = workdir / "filled.sqlite3"
    common.log_to_file(workdir / "hub.log")
    try:
        fill_s, size = fill(filled, n)
        with common.mosquitto() as broker:
            bares, hubs = [], []
            for _ in range(ROUNDS):  # interleaved, medians: the machine is shared and noisy
                bares.append(run_bare(broker, n, size, workdir))
                hubs.append(run_hub(broker, filled, n, *DEFAULT, workdir))
            explore = []
            if args.explore:
                for window, inflight in EXPLORE:
                    rate = run_hub(broker, filled, n, window, inflight, workdir)
                    bare_again = run_bare(broker, n, size, workdir)
                    explore.append(
                        {
                            "window": window,
                            "max_inflight": inflight,
                            "msgs_s": round(rate),
                            "bare_msgs_s": round(bare_again),
                            "ratio": common.ratio(rate, bare_again),
                        }
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bare, hub = statistics.median(bares), statistics.median(hubs)
    ratio = common.ratio(hub, bare)
    common.table(
        f"Drain of {n:,} events at QoS 1, {size} B payloads"
        f" (outbox on {fs['device']} {fs['fstype']})",
        ["case", f"msgs/s (median of {ROUNDS})", "rounds", "ratio"],
        [
            ["bare paho async publish loop (in-flight 20)", round(bare), _all(bares), 1.0],
            [
                f"hub dispatcher+uplink (window {DEFAULT[0]}, in-flight {DEFAULT[1]})",
                round(hub),
                _all(hubs),
                ratio,
            ],
        ],
    )
    print(f"\ntarget: hub >= {TARGET_RATIO}x bare: {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    print(
        f"offline fill: {n:,} events in {fill_s:.1f} s"
        f" ({n / fill_s:,.0f} events/s, batches of {FILL_BATCH})"
    )
    if explore:
        common.table(
            "Exploration: dispatcher window x paho max_inflight (each with its own bare run)",
            ["window", "max_inflight", "hub msgs/s", "bare msgs/s", "ratio"],
            [
                [e["window"], e["max_inflight"], e["msgs_s"], e["bare_msgs_s"], e["ratio"]]
                for e in explore
            ],
        )
    common.report(
        "drain",
        args,
        {
            "events": n,
            "payload_bytes": size,
            "outbox_fs": fs,
            "rounds": ROUNDS,
            "bare_msgs_s_all": [round(x) for x in bares],
            "hub_msgs_s_all": [round(x) for x in hubs],
            "bare_msgs_s": round(bare),
            "hub_msgs_s": round(hub),
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "met": ratio >= TARGET_RATIO,
            "fill_events_s": round(n / fill_s),
            "explore": explore,
        },
    )


if __name__ == "__main__":
    main()
