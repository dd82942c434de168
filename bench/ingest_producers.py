"""Durable ingest from several producers: events/s into the outbox, and the CPU it takes.

``python -m bench.ingest_producers`` (``--quick``: fewer events). 1, 4 and 16 producer threads
each submit one event at a time and wait until it is committed, as the hub's sensor threads do
(a serial node's frame is ACKed only then). Measured: ``Dispatcher.submit`` into the outbox the
hub builds (``GuardedOutbox``, WAL, ``synchronous=FULL``), no uplink attached. Baseline, same
run, same disk, same producers: plain ``sqlite3`` with the same pragmas and the outbox's own
schema, one shared connection behind a lock, one transaction per event, the rows (payload JSON
included) built before the clock starts. Cases alternate, ``ROUNDS`` times, each on a fresh
file; medians.

CPU: the process's CPU seconds over the wall-clock seconds of the case (cores busy), and the
busiest thread's share of one core, from ``/proc/self/task/*/stat`` (is one core saturated?).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common
from core.events import Event
from core.topics import HubTopics
from gateway.dispatcher import Dispatcher
from gateway.guarded_outbox import GuardedOutbox
from gateway.outbox import Outbox

HUB = "bench-hub"
PRODUCERS = (1, 4, 16)
FULL_EVENTS, QUICK_EVENTS = 6_000, 800
ROUNDS = 3
INSERT = (
    "INSERT INTO outbox (seq, id, kind, priority, state, created_at, payload)"
    " VALUES (?, ?, ?, ?, 0, ?, ?)"
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Case = tuple[Callable[[Event], None], Callable[[], None]]  # (submit one event, teardown)


def make_events(n: int) -> list[Event]:
    return [
        Event(kind="telemetry", zone="bench", source=f"node-{i % 16}", data={"n": i, "t": 31.5})
        for i in range(n)
    ]


def outbox_schema(workdir: Path) -> list[str]:
    """The outbox's CREATE statements, read from a file the outbox made."""
    probe_path = workdir / "schema.sqlite3"
    probe = Outbox(probe_path, HUB)
    ddl = [r[0] for r in probe.conn.execute("SELECT sql FROM sqlite_master WHERE sql NOT NULL")]
    probe.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{probe_path}{suffix}").unlink(missing_ok=True)
    return ddl


def raw_case(path: Path, events: list[Event], ddl: list[str]) -> Case:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for sql in ddl:
        conn.execute(sql)
    now = time.time()
    rows = {
        e.id: (i + 1, e.id, e.kind, int(e.priority), now, e.to_json(HUB))
        for i, e in enumerate(events)
    }
    lock = threading.Lock()

    def submit(event: Event) -> None:
        with lock:  # one writer at a time, as SQLite allows
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, rows[event.id])
            conn.execute("COMMIT")

    return submit, conn.close


def dispatcher_case(path: Path, events: list[Event], ddl: list[str]) -> Case:
    outbox = GuardedOutbox(path, HUB)
    dispatcher = Dispatcher(outbox, HubTopics("bench", HUB), receipts=False)
    dispatcher.start()  # no uplink attached: it only commits
    dispatcher.call(lambda o: None).result(timeout=60)  # the outbox is open

    def submit(event: Event) -> None:
        dispatcher.submit([event]).result(timeout=60)

    def teardown() -> None:
        dispatcher.stop(1.0)
        outbox.close()

    return submit, teardown


CASES: dict[str, Callable[[Path, list[Event], list[str]], Case]] = {
    "plain sqlite3, commit per event": raw_case,
    "Dispatcher.submit (group commit)": dispatcher_case,
}


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by thread id."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def measure(
    submit: Callable[[Event], None], events: list[Event], producers: int
) -> dict[str, float]:
    spent: list[float] = []  # each producer's own CPU seconds (it has ended by the end)

    def produce(mine: list[Event]) -> None:
        start = time.thread_time()
        for event in mine:
            submit(event)
        spent.append(time.thread_time() - start)

    threads = [
        threading.Thread(target=produce, args=(events[i::producers],)) for i in range(producers)
    ]
    cpu0, tasks0, t0 = time.process_time(), thread_cpu(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu, tasks1 = time.process_time() - cpu0, thread_cpu()
    # The store thread outlives the case (read from /proc); the producers do not.
    busiest = max([tasks1[tid] - tasks0.get(tid, 0.0) for tid in tasks1] + spent)
    return {
        "events_s": len(events) / wall,
        "cores_busy": cpu / wall,
        "busiest_thread_pct": 100 * busiest / wall,
    }


def run(workdir: Path, n: int, rounds: int) -> list[dict[str, Any]]:
    ddl = outbox_schema(workdir)
    samples: dict[tuple[int, str], list[dict[str, float]]] = {}
    for r in range(rounds):
        for producers in PRODUCERS:
            for name, factory in CASES.items():
                events = make_events(n)
                path = workdir / f"r{r}-p{producers}-{len(samples)}.sqlite3"
                submit, teardown = factory(path, events, ddl)
                try:
                    sample = measure(submit, events, producers)
                finally:
                    teardown()
                samples.setdefault((producers, name), []).append(sample)
    results = []
    for (producers, name), runs in samples.items():
        row: dict[str, Any] = {"producers": producers, "case": name, "events": n, "rounds": rounds}
        row["events_s_all"] = [round(s["events_s"]) for s in runs]
        for key in runs[0]:
            row[key] = round(statistics.median(s[key] for s in runs), 2)
        results.append(row)
    baseline = next(iter(CASES))
    by_key = {(r["producers"], r["case"]): r for r in results}
    for r in results:
        base = by_key[(r["producers"], baseline)]
        r["ratio"] = common.ratio(r["events_s"], base["events_s"])
    return results


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    n = QUICK_EVENTS if args.quick else FULL_EVENTS
    workdir = common.disk_dir(args.data_root, "bench-ingest-producers-")
    fs = common.filesystem_of(workdir)
    try:
        results = run(workdir, n, 1 if args.quick else ROUNDS)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    common.table(
        f"Durable ingest, producers waiting for their commit, on {fs['device']} {fs['fstype']}",
        ["producers", "case", "events/s (median)", "ratio", "cores busy", "busiest thread %"],
        [
            [
                r["producers"],
                r["case"],
                r["events_s"],
                r["ratio"],
                r["cores_busy"],
                r["busiest_thread_pct"],
            ]
            for r in results
        ],
    )
    print(
        "\nratio: against plain sqlite3 with the same producers. cores busy: process CPU s per"
        " wall s; busiest thread %: of one core (100 = saturated)."
    )
    common.report("ingest_producers", args, {"outbox_fs": fs, "results": results})


if __name__ == "__main__":
    main()
