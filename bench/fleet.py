"""How many simulated hubs one ``tuquan fleet`` process drives: CPU and memory per 1,000 hubs
at a hub's rates (health every 30 s, one telemetry event a minute), against bare paho clients
that only connect and publish the same messages, in the same run.

For each number of hubs: two Mosquitto brokers (the hubs spread over both, one commune each),
a ``tuquan receive`` per commune storing and receipting, then

- the fleet (``tuquan fleet``, a subprocess): connect, ``--warmup-s`` of load, then a window
  of ``--window-s`` measured with psutil (CPU time of the process over the window, as % of
  one core; RSS at its end), then a drill of 100 panics within 10 s and the settle; its
  summary must show no loss;
- the bare baselines (``bench/fleet_bare.py``), measured over the same window: one selector
  thread for all clients, an asyncio loop, and (up to ``--threads-max`` hubs, 300: paho's
  threaded loop uses select(), which stops at fd 1023) paho's thread per client.

A level "keeps up" when every hub connected, nothing was lost, and the fleet used under 80 %
of one core (the process runs Python code on one core at a time). The receivers' and
brokers' CPU over the window are shown too.

    python -m bench.fleet [--quick] [--levels 300,1000,2000,4131,8000] [--window-s 60]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench import common
from testkit.broker import Broker, Brokers
from testkit.waiting import WaitTimeout, wait_until

REPO = Path(__file__).resolve().parents[1]
FULL_LEVELS = (300, 1000, 2000, 4131, 8000)
QUICK_LEVELS = (200, 500)
KEEPS_UP_CPU = 80.0
DRILL = 100


class Watched:
    """A subprocess whose output lines are collected on a thread (so it never blocks)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.lines: list[str] = []
        self.stdout: list[str] = []
        self.log = log
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        with self.log.open("a") as log:
            for line in stream:
                into.append(line)
                log.write(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines + self.stdout)

    def finish(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def measure(pid: int, others: list[int], warmup_s: float, window_s: float) -> dict[str, float]:
    """CPU (% of one core) of ``pid`` and of ``others`` over the window, RSS at its end."""
    time.sleep(warmup_s)
    start, mine0, theirs0 = time.monotonic(), cpu_s([pid]), cpu_s(others)
    time.sleep(window_s)
    wall = time.monotonic() - start
    mine, theirs = cpu_s([pid]) - mine0, cpu_s(others) - theirs0
    rss = psutil.Process(pid).memory_info().rss / 2**20
    return {
        "cpu_pct": round(mine / wall * 100, 1),
        "rss_mb": round(rss, 1),
        "others_cpu_pct": round(theirs / wall * 100, 1),
    }


def receivers(brokers: list[Broker], work: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n, broker in enumerate(brokers, 1):
        log = (work / f"rx{n}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tuquan",
                    "receive",
                    "--broker",
                    broker.address,
                    "--commune",
                    f"c{n}",
                    "--data-dir",
                    str(work / f"rx{n}"),
                    "--log-level",
                    "WARNING",
                ],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        )
    for n in range(1, len(brokers) + 1):
        wait_until((work / f"rx{n}" / "receiver.sqlite3").exists, 30, f"receiver {n}'s store")
    return procs


def run_fleet(
    hubs: int, brokers: list[Broker], work: Path, args: Any, helpers: list[int]
) -> dict[str, Any]:
    duration = args.warmup_s + args.window_s + 15.0
    argv = [sys.executable, "-m", "tuquan", "fleet", "--hubs", str(hubs), "--health-s", "30",
            "--telemetry-per-min", "1", "--duration-s", str(duration), "--drill", str(DRILL),
            "--drill-within-s", "10", "--settle-s", "90", "--json", "--seed", "1"]  # fmt: skip
    for n, broker in enumerate(brokers, 1):
        argv += ["--broker", broker.address, "--commune", f"c{n}"]
        argv += ["--store", str(work / f"rx{n}" / "receiver.sqlite3")]
    started = time.monotonic()
    fleet = Watched(argv, work / f"fleet-{hubs}.log")
    wait_until(lambda: fleet.saw("fleet: connected") or fleet.proc.poll() is not None,
               300, "the fleet connected", step=0.1)  # fmt: skip
    connect_s = round(time.monotonic() - started, 1)
    figures = measure(fleet.proc.pid, helpers, args.warmup_s, args.window_s)
    rc = fleet.finish(duration + 300)
    summary = json.loads("".join(fleet.stdout))
    return {
        "hubs": hubs,
        "case": "fleet",
        **figures,
        "connect_s": connect_s,
        "exit": rc,
        "all_connected": summary["connect_s"] is not None,
        "lost": summary["loss"]["count"],
        "events": summary["events"]["made"],
        "alarm_ms": summary["latency_ms"].get("alarm", {}),
        "telemetry_ms": summary["latency_ms"].get("telemetry", {}),
    }


def run_bare(mode: str, hubs: int, brokers: list[Broker], work: Path, args: Any) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.fleet_bare", "--mode", mode, "--hubs", str(hubs),
            "--duration-s", str(args.warmup_s + args.window_s + 2)]  # fmt: skip
    for broker in brokers:
        argv += ["--broker", broker.address]
    bare = Watched(argv, work / f"bare-{mode}-{hubs}.log")
    try:
        wait_until(lambda: bare.saw("connected") or bare.proc.poll() is not None, 120,
                   f"bare {mode} connected", step=0.1)  # fmt: skip
    except WaitTimeout:
        bare.proc.kill()
        bare.finish(30)
        failed = "not all connected in 120 s"
        return {"hubs": hubs, "case": f"bare {mode}", "cpu_pct": 0.0, "rss_mb": 0.0,
                "others_cpu_pct": 0.0, "exit": None, "error": failed}  # fmt: skip
    figures = measure(bare.proc.pid, [], args.warmup_s, args.window_s)
    rc = bare.finish(120)
    return {"hubs": hubs, "case": f"bare {mode}", **figures, "exit": rc}


def level(hubs: int, work: Path, args: Any) -> list[dict[str, Any]]:
    root = work / f"level-{hubs}"
    root.mkdir()
    brokers_dir = Brokers(root)
    rx: list[subprocess.Popen[bytes]] = []
    try:
        brokers = [brokers_dir.start(name=f"b{n}", extra_config=common.BROKER_CONFIG)
                   for n in (1, 2)]  # fmt: skip
        rx = receivers(brokers, root)
        helpers = [p.pid for p in rx] + [b.pid for b in brokers if b.pid is not None]
        rows = [run_fleet(hubs, brokers, root, args, helpers)]
        for mode in args.modes.split(","):
            if mode == "threads" and hubs > args.threads_max:
                continue
            rows.append(run_bare(mode, hubs, brokers, root, args))
        return rows
    finally:
        for proc in rx:
            proc.terminate()
            proc.wait(30)
        brokers_dir.close()


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--levels", help="numbers of hubs, comma-separated")
    p.add_argument("--window-s", type=float, help="measured window (default 60, quick 15)")
    p.add_argument("--warmup-s", type=float, help="load before the window (default 30, quick 5)")
    p.add_argument("--modes", default="selectors,asyncio,threads", help="bare baselines")
    # paho's own loop waits with select(), which takes no fd above 1023 (FD_SETSIZE), and each
    # threaded client holds three (its socket and a wake-up pair): past ~340 clients in one
    # process the rest never connect.
    p.add_argument("--threads-max", type=int, default=300,
                   help="no thread-per-client baseline above this many hubs")  # fmt: skip
    args = p.parse_args(argv)
    levels = (
        [int(x) for x in args.levels.split(",")]
        if args.levels
        else list(QUICK_LEVELS if args.quick else FULL_LEVELS)
    )
    args.window_s = args.window_s or (15.0 if args.quick else 60.0)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (5.0 if args.quick else 30.0)
    work = common.disk_dir(args.data_root, "bench-fleet-")
    rows: list[dict[str, Any]] = []
    try:
        for hubs in levels:
            rows += level(hubs, work, args)
            print(f"  {hubs} hubs done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        row["cpu_pct_per_1000"] = round(row["cpu_pct"] / row["hubs"] * 1000, 2)
    fleet_rows = [r for r in rows if r["case"] == "fleet"]
    for row in rows:
        base = next((r for r in rows if r["hubs"] == row["hubs"] and r["case"] == "bare selectors"),
                    None)  # fmt: skip
        row["cpu_ratio"] = common.ratio(row["cpu_pct"], base["cpu_pct"]) if base else None
        row["rss_ratio"] = common.ratio(row["rss_mb"], base["rss_mb"]) if base else None
    for row in fleet_rows:
        row["keeps_up"] = (
            row["exit"] == 0 and row["all_connected"] and row["cpu_pct"] < KEEPS_UP_CPU
        )
    marginal = {case: _marginal_rss([r for r in rows if r["case"] == case and "error" not in r])
                for case in dict.fromkeys(r["case"] for r in rows)}  # fmt: skip
    common.table(
        f"Fleet CPU and memory, health 30 s + 1 telemetry/min, window {args.window_s:g} s",
        ["hubs", "case", "CPU %", "CPU %/1000", "RSS MB", "x bare CPU", "x bare RSS",
         "rx+brokers CPU %"],
        [[r["hubs"], r["case"], r["cpu_pct"], r["cpu_pct_per_1000"], r["rss_mb"],
          r["cpu_ratio"], r["rss_ratio"], r["others_cpu_pct"] if r["case"] == "fleet" else ""]
         for r in rows],
    )  # fmt: skip
    common.table(
        "RSS per 1,000 more hubs (MB, between the smallest and the largest level)",
        ["case", "MB / 1000 hubs"],
        [[case, "n/a" if mb is None else mb] for case, mb in marginal.items()],
    )
    common.table(
        "Fleet runs",
        ["hubs", "connect s", "events", "lost", "alarm p50 ms", "alarm p99 ms", "keeps up"],
        [[r["hubs"], r["connect_s"], r["events"], r["lost"], r["alarm_ms"].get("p50", "-"),
          r["alarm_ms"].get("p99", "-"), r["keeps_up"]] for r in fleet_rows],
    )  # fmt: skip
    kept = [r["hubs"] for r in fleet_rows if r["keeps_up"]]
    largest = max(kept) if kept else 0
    top = max(fleet_rows, key=lambda r: r["hubs"])
    estimate = int(top["hubs"] / top["cpu_pct"] * KEEPS_UP_CPU) if top["cpu_pct"] else None
    print(
        f"\nlargest level kept up: {largest} hubs; at {KEEPS_UP_CPU:g} % of a core, by the"
        f" largest level's CPU per hub: ~{estimate} hubs"
    )
    common.report(
        "fleet",
        args,
        {"rows": rows, "largest_kept_up": largest, "marginal_rss_mb_per_1000": marginal,
         "estimated_hubs_at_80pct": estimate},
    )  # fmt: skip


def _marginal_rss(rows: list[dict[str, Any]]) -> float | None:
    """MB per 1,000 more hubs, between the smallest and the largest level."""
    if len(rows) < 2:
        return None
    low, high = min(rows, key=lambda r: r["hubs"]), max(rows, key=lambda r: r["hubs"])
    return round((high["rss_mb"] - low["rss_mb"]) / (high["hubs"] - low["hubs"]) * 1000, 1)


if __name__ == "__main__":
    main()
