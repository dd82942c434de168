"""Durable ingest: events/s committed to the outbox against raw sqlite3, same pragmas, same disk.

Baseline: ``sqlite3`` ``executemany`` into a table built from the outbox's own schema (read from
its sqlite_master), WAL with synchronous=FULL, one transaction per batch. Measured:
``Outbox.insert`` in batches of 1, 10 and 100 events, and ``Dispatcher.submit`` from 4 producer
threads each waiting for its event to be on disk (group commit).

fsyncs are counted for real: the same cases run again in a child process under
``strace -f --seccomp-bpf -e trace=fsync,fdatasync,openat``, each measured section bracketed by
the open of a marker path, and the fsync/fdatasync calls between the markers are counted. Bytes
written come from /proc/self/io of the timed run (``write_bytes``: bytes sent to the storage
layer; ``wchar``: bytes handed to write()).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common
from core.events import Event
from core.topics import HubTopics
from gateway.dispatcher import Dispatcher
from gateway.outbox import Outbox

HUB = "bench-hub"
PRODUCERS = 4
FULL = {"batch": {1: 2_000, 10: 10_000, 100: 50_000}, "dispatcher": 4_000}
QUICK = {"batch": {1: 500, 10: 2_000, 100: 10_000}, "dispatcher": 1_000}
ROUNDS = 3  # the disk is shared and noisy: medians of interleaved rounds
MARK = "/nonexistent-bench-mark/"
INSERT = (
    "INSERT INTO outbox (seq, id, kind, priority, state, created_at, payload)"
    " VALUES (?, ?, ?, ?, 0, ?, ?)"
)

Case = tuple[Callable[[], None], Callable[[], None]]  # (measured section, teardown)


def make_events(n: int) -> list[Event]:
    return [
        Event(kind="telemetry", zone="bench", source="bench", data={"n": i, "temp_c": 31.5})
        for i in range(n)
    ]


def raw_case(path: Path, events: list[Event], batch: int) -> Case:
    schema_db = path.with_suffix(".schema")
    probe = Outbox(schema_db, HUB)
    ddl = [r[0] for r in probe.conn.execute("SELECT sql FROM sqlite_master WHERE sql NOT NULL")]
    probe.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{schema_db}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for sql in ddl:
        conn.execute(sql)
    now = time.time()
    rows = [
        (i + 1, e.id, e.kind, int(e.priority), now, e.to_json(HUB)) for i, e in enumerate(events)
    ]

    def measured() -> None:
        for start in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, rows[start : start + batch])
            conn.execute("COMMIT")

    return measured, conn.close


def outbox_case(path: Path, events: list[Event], batch: int) -> Case:
    outbox = Outbox(path, HUB)

    def measured() -> None:
        for start in range(0, len(events), batch):
            outbox.insert(events[start : start + batch])

    return measured, outbox.close


def dispatcher_case(path: Path, events: list[Event], batch: int) -> Case:
    outbox = Outbox(path, HUB)
    dispatcher = Dispatcher(outbox, HubTopics("bench", HUB), receipts=False)
    dispatcher.start()  # no uplink attached: it only commits

    def produce(mine: list[Event]) -> None:
        for event in mine:  # a sensor thread: one event, wait until it is on disk
            dispatcher.submit([event]).result(timeout=60)

    def measured() -> None:
        threads = [
            threading.Thread(target=produce, args=(events[i::PRODUCERS],)) for i in range(PRODUCERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def teardown() -> None:
        dispatcher.stop(1.0)
        outbox.close()

    return measured, teardown


def cases(sizes: dict[str, Any]) -> list[tuple[str, str, int, int, Any]]:
    """(name, baseline name, batch, events, factory); raw and outbox interleaved."""
    out = []
    for batch, n in sizes["batch"].items():
        out.append((f"raw executemany, batch {batch}", "", batch, n, raw_case))
        out.append(
            (
                f"Outbox.insert, batch {batch}",
                f"raw executemany, batch {batch}",
                batch,
                n,
                outbox_case,
            )
        )
    out.append(
        (
            f"Dispatcher.submit, {PRODUCERS} threads x 1 event",
            "raw executemany, batch 1",
            1,
            sizes["dispatcher"],
            dispatcher_case,
        )
    )
    return out


def run(workdir: Path, sizes: dict[str, Any], rounds: int, mark: bool) -> list[dict[str, Any]]:
    """Every case ``rounds`` times, interleaved, each on a fresh file; medians per case."""
    samples: dict[int, list[dict[str, float]]] = {}
    for r in range(rounds):
        for i, (_, _, batch, n, factory) in enumerate(cases(sizes)):
            measured, teardown = factory(workdir / f"r{r}-case{i}.sqlite3", make_events(n), batch)
            if mark:
                _mark(f"start/{i}")
            io0, t0 = common.proc_io(), time.perf_counter()
            measured()
            elapsed, io1 = time.perf_counter() - t0, common.proc_io()
            if mark:
                _mark(f"end/{i}")
            teardown()
            samples.setdefault(i, []).append(
                {
                    "events_s": n / elapsed,
                    "write_bytes_per_event": (io1["write_bytes"] - io0["write_bytes"]) / n,
                    "wchar_per_event": (io1["wchar"] - io0["wchar"]) / n,
                }
            )
    results = []
    for i, (name, baseline, _, n, _) in enumerate(cases(sizes)):
        runs = samples[i]
        results.append(
            {
                "case": name,
                "baseline": baseline,
                "events": n,
                "rounds": rounds,
                "events_s_all": [round(s["events_s"]) for s in runs],
            }
        )
        for key in runs[0]:
            results[-1][key] = round(statistics.median(s[key] for s in runs))
    return results


def _mark(label: str) -> None:
    with contextlib.suppress(OSError):
        os.close(os.open(MARK + label, os.O_RDONLY))


def count_fsyncs(args: Any, workdir: Path) -> dict[int, int] | None:
    """Run the cases again under strace; fsync+fdatasync calls per case, or None."""
    strace = shutil.which("strace")
    if strace is None:
        print("strace not found (apt-get install strace): fsyncs not counted", file=sys.stderr)
        return None
    trace = workdir / "strace.txt"
    child = [sys.executable, "-m", "bench.ingest", "--child", "--data-root", str(workdir)]
    if args.quick:
        child.append("--quick")
    subprocess.run(
        [
            strace,
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=fsync,fdatasync,openat",
            "-o",
            str(trace),
            *child,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    counts: dict[int, int] = {}
    case = None
    for line in trace.read_text().splitlines():
        m = re.search(re.escape(MARK) + r"(start|end)/(\d+)", line)
        if m:
            case = int(m[2]) if m[1] == "start" else None
            counts.setdefault(int(m[2]), 0)
        elif case is not None and re.search(r"\bf(data)?sync\(", line):
            counts[case] += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true", help="(internal) the traced run")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    workdir = common.disk_dir(args.data_root, "bench-ingest-")
    fs = common.filesystem_of(workdir)
    try:
        if args.child:
            run(workdir, sizes, rounds=1, mark=True)
            return
        results = run(workdir, sizes, rounds=ROUNDS, mark=False)
        fsyncs = count_fsyncs(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    by_name = {r["case"]: r for r in results}
    for i, r in enumerate(results):
        base = by_name.get(r["baseline"])
        r["ratio"] = common.ratio(r["events_s"], base["events_s"]) if base else 1.0
        r["fsyncs_per_1000"] = round(fsyncs[i] * 1000 / r["events"], 1) if fsyncs else None
    common.table(
        f"Durable ingest, WAL + synchronous=FULL, on {fs['device']} {fs['fstype']}",
        [
            "case",
            "events",
            "events/s (median)",
            "ratio",
            "fsyncs/1000 ev",
            "write B/ev",
            "wchar B/ev",
        ],
        [
            [
                r["case"],
                r["events"],
                r["events_s"],
                r["ratio"],
                "n/a" if r["fsyncs_per_1000"] is None else r["fsyncs_per_1000"],
                r["write_bytes_per_event"],
                r["wchar_per_event"],
            ]
            for r in results
        ],
    )
    print(
        "\nratio: against the raw row named in the JSON's 'baseline' (same batch size; the"
        " dispatcher against raw batch 1). No target: this one reports."
    )
    common.report(
        "ingest",
        args,
        {"outbox_fs": fs, "fsync_counter": "strace -f --seccomp-bpf", "results": results},
    )


if __name__ == "__main__":
    main()
