"""Push latency of the police console: an event committed at the receiver to its ``notice`` at
a connected browser's live stream, against a bare SSE endpoint of the same framework.

One process: a real Mosquitto; the receiver and the real duty desk on one store (as
``commune.station.Station`` wires them, with our own on-new-event callback, which stamps the
commit with ``time.perf_counter()`` and then wakes the desk as the station's does); the console
app on uvicorn on loopback (``console.run.make_server``); a logged-in client (httpx, streaming)
on ``/stream``. Each panic is published as a hub publishes it (``event/panic``, seq 1, from a
hub of its own, so each opens its own alert); the client stamps the ``notice`` that says the
alert was opened, and the alert's first event (``alerts.first_event_id``) ties it to the
commit.

Bare, in the same process and run, served the same way: FastAPI + sse-starlette's
``EventSourceResponse`` pushing the same message, from the moment a thread hands it to the
loop (``call_soon_threadsafe``, as the console's ``Notices`` does) to its arrival at the same
kind of client. Rounds of console panics and bare pushes alternate; each push waits for its
arrival, then ``SPACING_S``, so this measures latency, not queueing. A floor is measured the
same way: one row committed (WAL, synchronous=FULL, same disk) before the bare hand-off, the
least a desk that makes the alert durable before telling anyone can cost.

The store is empty by default; ``--events N`` starts the station on a province's store
(``bench.console_store``: N events from 4,000 hubs, their alerts), where the desk's own rounds
(supervision of every hub each second) run beside the panics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sse_starlette import EventSourceResponse

from bench import common, console_store
from bench.console_web import Served, SseClient, SseEvent, login
from commune.config import ReceiverConfig, parse_receiver_config
from commune.desk import Desk
from commune.launch import receiver_broker_settings
from commune.locations import DB_FILENAME
from commune.receiver import Receiver
from console.app import create_app
from console.run import stop_server
from console.streams import PING_S
from core.events import Event
from core.topics import HubTopics
from gateway.broker import settings_tls_context
from testkit.broker import Broker
from testkit.mqtt import Subscriber

COMMUNE = "bench-push"
SPACING_S = 0.02
WARMUP = 5
WAIT_S = 30.0


# -- the bare endpoint ----------------------------------------------------------------------


class BarePush:
    """The least a FastAPI + sse-starlette app can do: ``push`` (any thread) hands a message
    to the loop, which puts it in every client's queue; each ``/stream`` yields it."""

    END: dict[str, Any] = {"type": "end"}

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: set[asyncio.Queue[dict[str, Any]]] = set()

    def push(self, payload: dict[str, Any]) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._publish, payload)

    def _publish(self, payload: dict[str, Any]) -> None:
        for client in self.clients:
            client.put_nowait(payload)

    def end(self) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._publish, self.END)

    async def events(self) -> AsyncIterator[dict[str, str]]:
        client: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.clients.add(client)
        try:
            yield {"event": "hello", "data": json.dumps({"alarms": 0})}
            while True:
                payload = await client.get()
                if payload is self.END:
                    return
                yield {"event": "notice", "data": json.dumps(payload)}
        finally:
            self.clients.discard(client)

    def app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            self.loop = asyncio.get_running_loop()
            yield

        app = FastAPI(lifespan=lifespan)

        @app.get("/stream")
        async def stream() -> EventSourceResponse:
            return EventSourceResponse(
                self.events(), ping=PING_S, headers={"cache-control": "no-store"}
            )

        return app


# -- the console side -----------------------------------------------------------------------


def console_config(workdir: Path) -> ReceiverConfig:
    # Each bench hub sends one panic and is silent after: with the default window (75 s) the
    # desk would raise communication troubles for them in the middle of the run.
    data = {"receiver": {"commune": COMMUNE}, "supervision": {"window_s": 7 * 24 * 3600}}
    return parse_receiver_config(data, base_dir=workdir, env={})


class Station:
    """Receiver + desk as ``commune.station.Station`` builds them, except the receiver's
    on-new-event callback, which stamps each commit first."""

    def __init__(self, data_dir: Path, config: ReceiverConfig, broker: Broker) -> None:
        settings = receiver_broker_settings(config, COMMUNE, (broker.host, broker.port))
        self.committed: dict[str, float] = {}
        self.desk = Desk(data_dir, config, settings)
        self.receiver = Receiver(
            settings.host,
            settings.port,
            COMMUNE,
            data_dir / DB_FILENAME,
            client_id=settings.client_id,
            tls=settings_tls_context(settings),
            on_new_event=self._stored,
            keepalive=settings.keepalive_s,
        )

    def _stored(self, event: dict[str, Any]) -> None:
        self.committed[str(event["id"])] = time.perf_counter()  # called right after the commit
        self.desk.wake()

    def start(self) -> None:
        self.desk.start()
        self.receiver.start()
        if not self.receiver.wait_subscribed(WAIT_S):
            raise SystemExit("the receiver did not subscribe")

    def stop(self) -> None:
        self.receiver.stop()
        self.desk.stop()


class Run:
    """Everything of one run, and the samples it takes."""

    def __init__(self, workdir: Path, broker: Broker) -> None:
        config = console_config(workdir)
        self.station = Station(workdir / "data", config, broker)
        self.station.start()
        self.settle()
        self.app = create_app(self.station.desk, config, workdir / "data")
        self.console = Served(self.app, "console-uvicorn").start()
        cookie = login(self.console.url, self.app.state.console.accounts)
        self.client = SseClient(f"{self.console.url}/stream", cookie).start()
        # Told after the console's own listener (attached when the app started), which has
        # by then counted the alarms and handed the notice to the loop.
        self.handed: dict[int, float] = {}
        self.station.desk.listen(self._told)
        self.bare_push = BarePush()
        self.bare = Served(self.bare_push.app(), "bare-uvicorn").start()
        self.bare_client = SseClient(f"{self.bare.url}/stream").start()
        self.floor_db = sqlite3.connect(workdir / "floor.sqlite3", isolation_level=None)
        self.floor_db.execute("PRAGMA journal_mode=WAL")
        self.floor_db.execute("PRAGMA synchronous=FULL")
        self.floor_db.execute("CREATE TABLE alerts (id INTEGER PRIMARY KEY, body TEXT)")
        self.hub = Subscriber(broker)  # the hubs' publisher
        self.published: list[tuple[str, float]] = []  # (event id, perf_counter before publish)
        self.bare_times: list[float] = []
        self.panics = 0

    def settle(self) -> None:
        """Wait for the desk's first look at the hubs to be over: on a province's store it
        starts by raising the troubles of the hubs that are offline."""
        last, since = -1, time.monotonic()
        deadline = since + 120
        while time.monotonic() < deadline:
            raised = len(self.station.desk.troubles())
            if raised != last:
                last, since = raised, time.monotonic()
            elif time.monotonic() - since >= 3:
                return
            time.sleep(0.2)

    def _told(self, notice: dict[str, Any]) -> None:
        if _is_opened(notice):
            self.handed.setdefault(int(notice["id"]), time.perf_counter())

    def panic(self) -> str:
        """Publish one panic from a new hub and wait until its alert's notice is in."""
        self.panics += 1
        hub = f"hub-{self.panics:05d}"
        event = replace(
            Event(kind="panic", zone="panic-1", source="panic-1", clock_synced=True), seq=1
        )
        topic = HubTopics(COMMUNE, hub).event("panic")
        seen = len(self._opened())
        self.published.append((event.id, time.perf_counter()))
        self.hub.publish(topic, event.to_json(hub))
        self.client.events.wait_until(lambda _: len(self._opened()) > seen, WAIT_S)
        return event.id

    def _opened(self) -> list[SseEvent]:
        """The client's notices that say an alert was opened."""
        return [n for n in self.client.notices() if _is_opened(n.data)]

    def push(self, n: int, *, commit_first: bool = False) -> float:
        """One bare push; its latency (s). With ``commit_first``, one row is committed (WAL,
        synchronous=FULL, on the store's disk) before the hand-off: the floor of a desk that
        makes the alert durable before it tells anyone."""
        index = len(self.bare_client.events)
        t0 = time.perf_counter()
        if commit_first:
            self.floor_db.execute("BEGIN IMMEDIATE")
            self.floor_db.execute("INSERT INTO alerts (body) VALUES (?)", (f"alert {n}",))
            self.floor_db.execute("COMMIT")
        self.bare_push.push({"type": "alert", "id": n, "action": "opened", "alarms": n})
        arrived = self.bare_client.events.at(index, WAIT_S)
        return arrived.at - t0

    def stop(self) -> None:
        self.hub.close()
        self.floor_db.close()
        self.bare.stop(self.bare_push.end)
        self.console.stop(lambda: stop_server(self.console.server, self.app))
        self.station.stop()

    def console_samples(self, skip: int) -> dict[str, list[float]]:
        """Per panic (after the first ``skip``): publish→commit, commit→SSE, publish→SSE (s)."""
        arrivals: dict[str, tuple[float, float]] = {}  # event id: (handed to the loop, at SSE)
        alerts = self.station.desk.alerts
        for notice in self._opened():
            alert_id = int(notice.data["id"])
            alert = alerts.get(alert_id)
            if alert is not None and alert_id in self.handed:
                arrivals.setdefault(alert.first_event_id, (self.handed[alert_id], notice.at))
        keys = ("publish_commit", "commit_handed", "handed_sse", "commit_sse", "publish_sse")
        out: dict[str, list[float]] = {k: [] for k in keys}
        missing = 0
        for event_id, t_pub in self.published[skip:]:
            t_commit = self.station.committed.get(event_id)
            if t_commit is None or event_id not in arrivals:
                missing += 1
                continue
            t_handed, t_sse = arrivals[event_id]
            out["publish_commit"].append(t_commit - t_pub)
            out["commit_handed"].append(t_handed - t_commit)
            out["handed_sse"].append(t_sse - t_handed)
            out["commit_sse"].append(t_sse - t_commit)
            out["publish_sse"].append(t_sse - t_pub)
        if missing:
            raise SystemExit(f"{missing} panics have no commit or no notice")
        return out


def _is_opened(data: Any) -> bool:
    return isinstance(data, dict) and data.get("type") == "alert" and data.get("action") == "opened"


# -- figures --------------------------------------------------------------------------------


def figures(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(common.percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


def measure(run: Run, total: int, rounds: int) -> dict[str, Any]:
    for _ in range(WARMUP):
        run.panic()
        time.sleep(SPACING_S)
        run.push(0)
        time.sleep(SPACING_S)
        run.push(0, commit_first=True)
        time.sleep(SPACING_S)
    bare: list[float] = []
    floor: list[float] = []
    round_p50: dict[str, list[float]] = {"console": [], "bare": [], "floor": []}
    per_round = total // rounds
    for _ in range(rounds):
        first = len(run.published)
        for _ in range(per_round):
            run.panic()
            time.sleep(SPACING_S)
        done = run.console_samples(first)["commit_sse"]
        round_p50["console"].append(round(statistics.median(done) * 1000, 3))
        pushed = []
        for n in range(per_round):
            pushed.append(run.push(n + 1))
            time.sleep(SPACING_S)
        bare.extend(pushed)
        round_p50["bare"].append(round(statistics.median(pushed) * 1000, 3))
        committed = []
        for n in range(per_round):
            committed.append(run.push(n + 1, commit_first=True))
            time.sleep(SPACING_S)
        floor.extend(committed)
        round_p50["floor"].append(round(statistics.median(committed) * 1000, 3))
    console = run.console_samples(WARMUP)
    return {
        "console_commit_sse": figures(console["commit_sse"]),
        "console_commit_handed": figures(console["commit_handed"]),
        "console_handed_sse": figures(console["handed_sse"]),
        "console_publish_sse": figures(console["publish_sse"]),
        "console_publish_commit": figures(console["publish_commit"]),
        "bare_handoff_sse": figures(bare),
        "floor_commit_handoff_sse": figures(floor),
        "round_p50_ms": round_p50,
    }


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--panics", type=int, help="panics (and bare pushes); default 200, quick 50")
    p.add_argument(
        "--events",
        type=int,
        default=0,
        help="start on a store of this many events from 4,000 hubs (bench.console_store)",
    )
    args = p.parse_args(argv)
    total = args.panics or (50 if args.quick else 200)
    rounds = 2 if args.quick else 4
    workdir = common.disk_dir(args.data_root, "bench-console-push-")
    try:
        results = run_in(workdir, args.events, total, rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console, bare = results["console_commit_sse"], results["bare_handoff_sse"]
    floor = results["floor_commit_handoff_sse"]
    results["ratio_p50"] = common.ratio(console["p50_ms"], bare["p50_ms"])
    results["ratio_p99"] = common.ratio(console["p99_ms"], bare["p99_ms"])
    results["ratio_p50_floor"] = common.ratio(console["p50_ms"], floor["p50_ms"])
    results["ratio_p99_floor"] = common.ratio(console["p99_ms"], floor["p99_ms"])

    def row(label: str, key: str, against_bare: bool = True) -> list[Any]:
        f = results[key]
        ratios = (
            [common.ratio(f["p50_ms"], bare["p50_ms"]), common.ratio(f["p99_ms"], bare["p99_ms"])]
            if against_bare
            else ["", ""]
        )
        return [label, f["p50_ms"], f["p99_ms"], f["max_ms"], *ratios]

    rows = [
        row("bare: call_soon_threadsafe → SSE client", "bare_handoff_sse"),
        row("floor: one WAL FULL commit, then as bare", "floor_commit_handoff_sse"),
        row("console: commit at the receiver → notice at the client", "console_commit_sse"),
        row("  of which commit → desk's notice handed to the loop", "console_commit_handed", False),
        row("  of which handed to the loop → client", "console_handed_sse"),
        row("console: publish (hub) → notice at the client", "console_publish_sse", False),
        row("console: publish (hub) → commit at the receiver", "console_publish_commit", False),
    ]
    common.table(
        f"Live push, {total} panics and {total} bare pushes in {rounds} alternating rounds "
        f"({SPACING_S * 1000:.0f} ms apart), on a store of {args.events:,} events",
        ["case", "p50 ms", "p99 ms", "max ms", "p50 / bare", "p99 / bare"],
        rows,
    )
    print(f"\nper-round p50 (ms): {results['round_p50_ms']}")
    common.report("console_push", args, {"events": args.events, **results})


def run_in(workdir: Path, events: int, total: int, rounds: int) -> dict[str, Any]:
    if events:
        (workdir / "data").mkdir()
        print(f"building a store of {events:,} events from 4,000 hubs ...", flush=True)
        console_store.build(workdir / "data" / DB_FILENAME, events, 4000)
        os.sync()  # the build wrote without syncing: its write-back must not land in the figures
    common.log_to_file(workdir / "console.log")
    with common.mosquitto() as broker:
        run = Run(workdir, broker)
        try:
            return measure(run, total, rounds)
        finally:
            run.stop()


if __name__ == "__main__":
    main()
