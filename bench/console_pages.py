"""Console pages on a province's year of events: each page's time against the bare SQL it runs.

The store: 1,000,000 events from 4,000 hubs with their alerts (``bench.console_store``;
``--quick``: 100,000). The console app (``console.app.create_app``) on uvicorn on loopback,
served as ``tuquan console`` serves it; a logged-in client (httpx, one kept-alive connection)
GETs each page. The desk under the app is the real one's reading side (its ``AlertBook``,
``HubBook`` and ``AuditLog`` on the store), not started: no follower, supervision or
escalation runs beside the pages, so they are measured alone.

Bare: the SELECTs the page ran, recorded from one request (the session lookup included),
replayed straight on ``sqlite3`` (a connection of its own, plain tuples), on the same file in
the same run. Rounds alternate page and bare; the figures are medians and p95 over every
request. The SELECTs, their EXPLAIN QUERY PLAN and their own times are printed, so the indexes
each page uses are in the output. ``--profile NAME`` profiles one page (every server thread,
cProfile) instead.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import shutil
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import common, console_store
from bench.console_web import Served, login
from commune.alerts import AlertBook
from commune.audit import AuditLog
from commune.config import parse_receiver_config
from commune.db import Db, Params
from commune.desk import Desk, Listener
from commune.hubs import HubBook
from commune.locations import DB_FILENAME
from console.app import create_app

HUBS = 4000
# (name, path, requests a round: full run; half of it with --quick)
PAGES: tuple[tuple[str, str, int], ...] = (
    # The least a request costs here: the middleware (the session looked up) and a small file.
    ("floor: a static file", "/static/icon.svg", 10),
    ("queue", "/", 10),
    ("history", "/history", 10),
    ("history, by hub", "/history?hub=to-00042", 10),
    ("history, kind + dates", "/history?kind=panic&since=2026-06-01&until=2026-06-30", 10),
    ("history, by outcome", "/history?outcome=false_alarm", 10),
    ("history, page 100", "/history?page=100", 10),
    ("CSV, by outcome", "/history.csv?outcome=false_alarm", 2),
    ("alert", "/alerts/{alert}", 10),
    ("hubs board", "/hubs", 10),
)


class RecordingDb(Db):
    """The console's ``Db``, which can write down every query it reads (SQL and parameters)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.recorded: list[tuple[str, Params]] | None = None

    def read(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        if self.recorded is not None:
            self.recorded.append((sql, params))
        return super().read(sql, params)

    def read_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        if self.recorded is not None:
            self.recorded.append((sql, params))
        return super().read_one(sql, params)


class ReadingDesk(Desk):
    """The desk's reading side over one store (what the pages use), not started."""

    def __init__(self, db: RecordingDb) -> None:
        self.db = db
        self.audit = AuditLog(db)
        self.alerts = AlertBook(db, self.audit)
        self.hubs = HubBook(db)

    def listen(self, listener: Listener) -> Callable[[], None]:
        return lambda: None  # nothing changes while the pages are read


def bare(conn: sqlite3.Connection, queries: list[tuple[str, Params]]) -> list[float]:
    """Run the page's SELECTs; each one's time (s), from execute to the last row."""
    times = []
    for sql, params in queries:
        t0 = time.perf_counter()
        conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - t0)
    return times


def plan(conn: sqlite3.Connection, sql: str, params: Params) -> list[str]:
    return [str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


class Pages:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_FILENAME
        self.db = RecordingDb(self.path)
        config = parse_receiver_config(
            {"receiver": {"commune": console_store.COMMUNE}}, base_dir=data_dir, env={}
        )
        self.app = create_app(ReadingDesk(self.db), config, data_dir)
        self.served = Served(self.app, "console-uvicorn")
        self.bare = sqlite3.connect(self.path, isolation_level=None)
        self.bare.execute("PRAGMA journal_mode=WAL")
        self.http: httpx.Client | None = None

    def start(self) -> None:
        self.served.start()
        cookie = login(self.served.url, self.app.state.console.accounts)
        self.http = httpx.Client(base_url=self.served.url, timeout=600, headers={"cookie": cookie})

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        self.served.stop()
        self.bare.close()
        self.db.close()

    def get(self, path: str) -> tuple[float, httpx.Response]:
        assert self.http is not None
        t0 = time.perf_counter()
        response = self.http.get(path)
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: {response.status_code} {response.text[:300]}")
        return elapsed, response

    def record(self, path: str) -> tuple[list[tuple[str, Params]], httpx.Response]:
        self.db.recorded = []
        try:
            _, response = self.get(path)
            return self.db.recorded, response
        finally:
            self.db.recorded = None


def alert_to_show(path: Path) -> int:
    """The newest open alarm: what an officer opens first."""
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT id FROM alerts WHERE state != 'closed' ORDER BY priority, id DESC LIMIT 1"
        ).fetchone()
    return int(row[0])


def measure(pages: Pages, rounds: int, quick: bool) -> list[dict[str, Any]]:
    alert = alert_to_show(pages.path)
    found: list[dict[str, Any]] = []
    for name, template, per_round in PAGES:
        path = template.format(alert=alert)
        pages.get(path)  # warm: templates compiled, pages of the file in the cache
        queries, response = pages.record(path)
        bare(pages.bare, queries)
        found.append(
            {
                "page": name,
                "path": path,
                "per_round": max(1, per_round // 2) if quick else per_round,
                "bytes": len(response.content),
                "queries": queries,
                "page_s": [],
                "bare_s": [],
                "query_s": [[] for _ in queries],
                "round_ratio": [],
            }
        )
    for _ in range(rounds):
        for page in found:
            page_s = [pages.get(page["path"])[0] for _ in range(page["per_round"])]
            bare_s = []
            for _ in range(page["per_round"]):
                times = bare(pages.bare, page["queries"])
                bare_s.append(sum(times))
                for i, t in enumerate(times):
                    page["query_s"][i].append(t)
            page["page_s"].extend(page_s)
            page["bare_s"].extend(bare_s)
            page["round_ratio"].append(
                common.ratio(statistics.median(page_s), statistics.median(bare_s))
            )
    return found


def summary(pages: Pages, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for page in found:
        page_ms = [t * 1000 for t in page["page_s"]]
        bare_ms = [t * 1000 for t in page["bare_s"]]
        queries = []
        for (sql, params), times in zip(page["queries"], page["query_s"], strict=True):
            queries.append(
                {
                    "sql": " ".join(sql.split()),
                    "params": [p if isinstance(p, int | float) else str(p) for p in params],
                    "median_ms": round(statistics.median(times) * 1000, 3),
                    "plan": plan(pages.bare, sql, params),
                }
            )
        out.append(
            {
                "page": page["page"],
                "path": page["path"],
                "requests": len(page_ms),
                "bytes": page["bytes"],
                "page_median_ms": round(statistics.median(page_ms), 2),
                "page_p95_ms": round(common.percentile(page_ms, 95), 2),
                "bare_median_ms": round(statistics.median(bare_ms), 3),
                "bare_p95_ms": round(common.percentile(bare_ms, 95), 3),
                "ratio": common.ratio(statistics.median(page_ms), statistics.median(bare_ms)),
                "round_ratios": page["round_ratio"],
                "queries": queries,
            }
        )
    return out


def print_queries(results: list[dict[str, Any]]) -> None:
    print("\nThe SELECTs each page runs (median ms in the bare replay) and their query plans:")
    for page in results:
        print(f"\n{page['page']}  {page['path']}")
        for q in page["queries"]:
            sql = q["sql"] if len(q["sql"]) <= 150 else q["sql"][:147] + "..."
            print(f"  {q['median_ms']:8.3f} ms  {sql}")
            for line in q["plan"]:
                print(f"               plan: {line}")


def profile(pages: Pages, name: str, requests: int) -> None:
    """Profile ``requests`` GETs of one page across the server's threads (each thread gets
    its own cProfile from its first call on, so the server must start after this is set)."""
    profiles: list[cProfile.Profile] = []

    def start_profiling(*_: Any) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()  # replaces this hook for the thread

    threading.setprofile(start_profiling)
    pages.start()
    threading.setprofile(None)  # type: ignore[arg-type]
    alert = alert_to_show(pages.path)
    path = next(t for n, t, _ in PAGES if n == name).format(alert=alert)
    pages.get(path)
    for prof in profiles:
        prof.clear()  # only the measured requests
    t0 = time.perf_counter()
    for _ in range(requests):
        pages.get(path)
    print(f"{name}: {requests} requests in {time.perf_counter() - t0:.2f} s")
    pages.stop()
    text = io.StringIO()
    stats = pstats.Stats(*[p for p in profiles if p.getstats()], stream=text)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)
    print(text.getvalue())


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, help="stored events (default 1,000,000; quick 100,000)")
    p.add_argument("--rounds", type=int, help="rounds of page and bare (default 5; quick 2)")
    p.add_argument("--store", help="a directory to build the store in, or reuse it from")
    p.add_argument("--profile", metavar="PAGE", help="profile one page (a name of the table)")
    args = p.parse_args(argv)
    events = args.events or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (2 if args.quick else 5)
    workdir = common.disk_dir(args.data_root, "bench-console-pages-")
    data_dir = Path(args.store) if args.store else workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, float] = {}
    if not (data_dir / DB_FILENAME).exists():
        print(f"building a store of {events:,} events from {HUBS:,} hubs ...", flush=True)
        built = console_store.build(data_dir / DB_FILENAME, events, HUBS)
        print({k: round(v, 1) for k, v in built.items()})
        os.sync()  # the build wrote without syncing: its write-back must not land in the figures
    common.log_to_file(workdir / "console.log")
    pages = Pages(data_dir)
    try:
        if args.profile:
            profile(pages, args.profile, 20)
            return
        pages.start()
        try:
            found = measure(pages, rounds, args.quick)
            results = summary(pages, found)
            facts = store_facts(pages.bare)
        finally:
            pages.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    common.table(
        f"Pages on {facts['events']:,} events, {facts['alerts']:,} alerts ({facts['open']} open), "
        f"{facts['hubs']:,} hubs; {rounds} rounds, page and bare alternating",
        ["page", "requests", "KB", "page median ms", "page p95 ms", "bare SQL median ms",
         "bare p95 ms", "page / bare", "per-round ratios"],
        [[r["page"], r["requests"], round(r["bytes"] / 1024, 1), r["page_median_ms"],
          r["page_p95_ms"], r["bare_median_ms"], r["bare_p95_ms"], r["ratio"],
          " ".join(f"{x:g}" for x in r["round_ratios"])] for r in results],
    )  # fmt: skip
    print_queries(results)
    print(f"\nindexes: {', '.join(facts['indexes'])}")
    common.report(
        "console_pages",
        args,
        {"store": facts, "built_s": built, "rounds": rounds, "pages": results},
    )


def store_facts(conn: sqlite3.Connection) -> dict[str, Any]:
    def one(sql: str) -> Any:
        return conn.execute(sql).fetchone()[0]

    return {
        "events": one("SELECT count(*) FROM events"),
        "alerts": one("SELECT count(*) FROM alerts"),
        "open": one("SELECT count(*) FROM alerts WHERE state != 'closed'"),
        "hubs": one("SELECT count(*) FROM hubs"),
        "bytes": one("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"),
        "indexes": [
            f"{r[0]} ({r[1]})"
            for r in conn.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' "
                "AND sql IS NOT NULL ORDER BY tbl_name, name"
            )
        ],
    }


if __name__ == "__main__":
    main()
