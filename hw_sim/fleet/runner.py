"""A fleet run from start to summary: connect every hub, run the load for ``duration_s`` with the
drill in its last seconds, wait up to ``settle_s`` for the last receipts, stop, account.

Threads: ``loops`` net loops (each drives its share of the light hubs), ``connectors``
connector threads, one thread for the full hubs' load (``fleet-full``: requests on their
control sockets), and the caller's, which only waits, counts and finally builds the summary.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import random
import resource
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.signing import PublicKey
from hw_sim.fleet.connector import Connector
from hw_sim.fleet.full_hubs import FullHub
from hw_sim.fleet.keys import make_keys
from hw_sim.fleet.ledger import LatencyBook
from hw_sim.fleet.light_hub import LightHub
from hw_sim.fleet.load import drill_plan, every, phase
from hw_sim.fleet.net_loop import NetLoop
from hw_sim.fleet.profile import FleetProfile
from hw_sim.fleet.summary import FullHubResult, LightHubResult, Summary, summarize

log = logging.getLogger(__name__)

POLL_S = 0.25
STOP_FLUSH_S = 5.0  # at the end, how long the hubs have to say offline and disconnect
Progress = Callable[[str], None]


class Fleet:
    def __init__(
        self,
        profile: FleetProfile,
        work_dir: Path,
        *,
        commune_keys: Mapping[str, PublicKey] | None = None,
        progress: Progress | None = None,
        progress_every_s: float = 10.0,
    ) -> None:
        self.profile = profile
        self.work_dir = work_dir
        self.commune_keys = dict(commune_keys or {})
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.rng = random.Random(profile.seed)
        self.loops = [NetLoop(f"fleet-loop-{n}") for n in range(profile.loops)]
        self.books = [LatencyBook() for _ in self.loops]
        self.connector = Connector(profile.connectors, profile.connect_rate)
        ids = profile.hub_ids()
        self.keys = make_keys(ids) if profile.sign else {}
        self.hubs: list[LightHub] = []
        for n, hub in enumerate(ids):
            target = profile.broker_of(n)
            self.hubs.append(
                LightHub(
                    hub,
                    target,
                    profile.timing,
                    self.loops[n % len(self.loops)],
                    self.connector,
                    self.books[n % len(self.loops)],
                    signer=self.keys.get(hub),
                    commune_key=self.commune_keys.get(target.commune),
                    replay_dir=work_dir / "commands",
                )
            )
        self.full: list[FullHub] = []
        for n, hub in enumerate(profile.full_hub_ids()):
            target = profile.broker_of(n)
            self.full.append(
                FullHub(
                    hub,
                    target,
                    profile.timing,
                    work_dir / "full" / hub,
                    self.commune_keys.get(target.commune),
                )
            )
        self._full_jobs: list[tuple[float, int, Callable[[], None]]] = []
        self._full_order = itertools.count()
        self._full_lock = threading.Condition()
        self._full_thread = threading.Thread(target=self._run_full, name="fleet-full", daemon=True)
        self._stopping = threading.Event()
        self._started = False

    def public_keys(self) -> list[tuple[str, PublicKey]]:
        """Every hub's public key, light (with ``sign``) and full, to enrol at the receivers."""
        keys = [(hub, key.public) for hub, key in self.keys.items()]
        return keys + [(f.hub, f.key.public) for f in self.full]

    # -- the run --------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event | None = None,
        read_stores: Callable[[], list[list[str]]] | None = None,
    ) -> Summary:
        """The whole run; ``stop`` set ends the waiting early (the summary says interrupted)."""
        stop = stop or threading.Event()
        cpu0, wall0 = _cpu_s(), time.monotonic()
        self.start()
        try:
            connect_s = self.wait_connected(self.profile.connect_timeout_s, stop)
            self._say(
                f"connected {self.connected_count()}/{len(self.hubs) + len(self.full)} hubs"
                + (f" in {connect_s:.1f} s" if connect_s is not None else " (not all)")
            )
            self.load(stop)
            self.settle(self.profile.settle_s, stop)
            full_results = self._full_results()
        finally:
            self.stop()
        stores = read_stores() if read_stores is not None else None
        summary = summarize(
            self.describe(),
            self._light_results(),
            full_results,
            self.books,
            stores,
            connect_s=connect_s,
            interrupted=stop.is_set(),
        )
        summary.profile["process"] = {
            "cpu_s": round(_cpu_s() - cpu0, 2),
            "wall_s": round(time.monotonic() - wall0, 2),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        return summary

    def start(self) -> None:
        self._started = True
        for loop in self.loops:
            loop.start()
        self.connector.start()
        for hub in self.hubs:
            hub.loop.call_soon(hub.start)
        for full in self.full:
            full.start()
        self._full_thread.start()

    def connected_count(self) -> int:
        return sum(h.connected for h in self.hubs) + sum(f.online() for f in self.full)

    def wait_connected(self, timeout_s: float, stop: threading.Event) -> float | None:
        """Seconds until every hub was connected (each at least once), or None."""
        started = time.monotonic()
        deadline = started + timeout_s
        while not stop.is_set() and time.monotonic() < deadline:
            if all(h.ever_connected for h in self.hubs) and all(f.online() for f in self.full):
                return time.monotonic() - started
            stop.wait(POLL_S / 5)
        return None

    def load(self, stop: threading.Event) -> None:
        """Health, telemetry (and pings) at their rates for ``duration_s``; the drill within
        its last ``drill_within_s``."""
        p = self.profile
        t = p.timing
        now = time.monotonic()
        until = now + p.duration_s
        period = 60.0 / p.telemetry_per_min if p.telemetry_per_min else 0.0
        by_loop: dict[int, list[LightHub]] = {}
        for hub in self.hubs:
            by_loop.setdefault(id(hub.loop), []).append(hub)
            self._begin(hub, now, until, period)
        for loop in self.loops:
            mine = by_loop.get(id(loop), [])
            step = max(0.05, t.receipt_timeout_s / 4)

            def sweep(mine: list[LightHub] = mine) -> None:
                now = time.monotonic()
                for hub in mine:
                    hub.resend_overdue(now)

            loop.call_soon(functools.partial(_every_from_now, loop, step, sweep, self._alive))
        for full in self.full:
            if period:
                first = phase(self.rng, now, period)
                k = 0
                while first + k * period < until:
                    self._at(first + k * period, full.telemetry)
                    k += 1
        targets = len(self.hubs) + len(self.full)
        for due, which in drill_plan(self.rng, p.drill, until - p.drill_within_s,
                                     p.drill_within_s, targets):  # fmt: skip
            if which < len(self.hubs):
                hub = self.hubs[which]
                hub.loop.call_soon(functools.partial(hub.loop.call_at, due, hub.panic))
            else:
                self._at(due, self.full[which - len(self.hubs)].panic)
        next_report = now + self.progress_every_s
        while not stop.is_set() and time.monotonic() < until:
            stop.wait(min(POLL_S, max(0.0, until - time.monotonic())))
            if time.monotonic() >= next_report:
                next_report += self.progress_every_s
                self._say(self._progress_line())

    def _begin(self, hub: LightHub, now: float, until: float, period: float) -> None:
        t = self.profile.timing
        health_first = phase(self.rng, now, t.health_s)
        telemetry_first = phase(self.rng, now, period) if period else 0.0
        ping_first = phase(self.rng, now, t.ping_s) if t.ping_s else 0.0

        def begin() -> None:
            alive = lambda: not hub.stopping  # noqa: E731
            every(hub.loop, health_first, t.health_s, hub.publish_health, alive=alive)
            if period:
                every(hub.loop, telemetry_first, period, hub.telemetry, alive=alive, until=until)
            if t.ping_s:
                every(hub.loop, ping_first, t.ping_s, hub.ping, alive=alive)

        hub.loop.call_soon(begin)

    def outstanding(self) -> int:
        """Events not receipted yet, light and full hubs."""
        count = 0
        for loop in self.loops:
            mine = [h for h in self.hubs if h.loop is loop]
            count += loop.call(functools.partial(_pending_of, mine)).result(timeout=30)
        return count + sum(f.undelivered() for f in self.full)

    def settle(self, settle_s: float, stop: threading.Event) -> None:
        """Wait for the last receipts: until nothing is outstanding, or ``settle_s``."""
        deadline = time.monotonic() + settle_s
        next_report = time.monotonic() + self.progress_every_s
        while not stop.is_set():
            left = self.outstanding()
            if left == 0 or time.monotonic() >= deadline:
                self._say(f"settled: {left} event(s) outstanding")
                return
            if time.monotonic() >= next_report:
                next_report += self.progress_every_s
                self._say(f"settling: {left} event(s) outstanding")
            stop.wait(POLL_S)

    def stop(self) -> None:
        """Every hub says offline and disconnects; then the threads end."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        with self._full_lock:
            self._full_lock.notify_all()
        for hub in self.hubs:
            hub.loop.call_soon(hub.stop)
        deadline = time.monotonic() + STOP_FLUSH_S
        while time.monotonic() < deadline and any(
            h.connected or h.client.want_write() for h in self.hubs
        ):
            time.sleep(0.05)
        for loop in self.loops:
            loop.stop()
        self.connector.stop()
        self._full_thread.join(5.0)
        for full in self.full:
            try:
                full.stop()
            except Exception:
                log.exception("full hub %s did not stop cleanly", full.hub)
        for loop in self.loops:
            loop.close()

    # -- the full hubs' load (thread fleet-full) ----------------------------------------------

    def _at(self, due: float, job: Callable[[], None]) -> None:
        with self._full_lock:
            heapq.heappush(self._full_jobs, (due, next(self._full_order), job))
            self._full_lock.notify_all()

    def _run_full(self) -> None:
        while not self._stopping.is_set():
            with self._full_lock:
                now = time.monotonic()
                if not self._full_jobs or self._full_jobs[0][0] > now:
                    wait = self._full_jobs[0][0] - now if self._full_jobs else 1.0
                    self._full_lock.wait(min(1.0, wait))
                    continue
                _, _, job = heapq.heappop(self._full_jobs)
            try:
                job()
            except Exception:
                log.exception("full hub job failed")

    # -- accounting -----------------------------------------------------------------------

    def _alive(self) -> bool:
        return not self._stopping.is_set()

    def _full_results(self) -> list[FullHubResult]:
        results = []
        for full in self.full:
            try:
                rows = full.rows()
            except Exception as exc:  # counted as lost: nothing shows they were delivered
                log.error("full hub %s: its outbox could not be read: %s", full.hub, exc)
                rows = []
            results.append(
                FullHubResult(
                    full.hub, full.target.commune, rows, full.telemetry_sent, full.panics,
                    full.failures,
                )
            )  # fmt: skip
        return results

    def _light_results(self) -> list[LightHubResult]:
        return [
            LightHubResult(
                h.hub, h.target.commune, h.ledger, h.counters.as_dict(), h.ever_connected
            )
            for h in self.hubs
        ]

    def describe(self) -> dict[str, Any]:
        p = self.profile
        t = p.timing
        return {
            "hubs": p.hubs,
            "full_hubs": p.full_hubs,
            "brokers": [{"address": b.address, "commune": b.commune} for b in p.brokers],
            "health_s": t.health_s,
            "telemetry_per_min": p.telemetry_per_min,
            "duration_s": p.duration_s,
            "drill": p.drill,
            "drill_within_s": p.drill_within_s,
            "settle_s": p.settle_s,
            "receipt_timeout_s": t.receipt_timeout_s,
            "ping_s": t.ping_s,
            "sign": p.sign,
            "verify_receipts": sorted(self.commune_keys),
            "loops": p.loops,
        }

    def _progress_line(self) -> str:
        made = sum(h.ledger.last_seq for h in self.hubs)
        open_ = sum(len(h.ledger.pending) for h in self.hubs)
        return f"{self.connected_count()} connected, {made} events made, {open_} unreceipted"

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _every_from_now(
    loop: NetLoop, step: float, sweep: Callable[[], None], alive: Callable[[], bool]
) -> None:
    """``sweep`` every ``step`` seconds on ``loop``, the first in ``step`` from now."""
    every(loop, time.monotonic() + step, step, sweep, alive=alive)


def _pending_of(hubs: list[LightHub]) -> int:
    return sum(len(h.ledger.pending) for h in hubs)
