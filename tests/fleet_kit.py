"""A fleet run in the background for the fleet's tests: started, waited on, its summary kept."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from commune.store import EventStore
from core.signing import PublicKey
from hw_sim.fleet import Fleet, FleetProfile, HubTiming, Summary, broker_targets
from testkit.broker import Broker
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]


def profile(
    brokers: Sequence[Broker],
    communes: Sequence[str] = ("c1",),
    *,
    timing: dict[str, Any] | None = None,
    **fields: Any,
) -> FleetProfile:
    """A small, quick fleet: short keepalive and receipt timeout so faults heal within a test."""
    fields.setdefault("hubs", 50)
    fields.setdefault("duration_s", 6.0)
    fields.setdefault("telemetry_per_min", 30.0)
    fields.setdefault("settle_s", 30.0)
    fields.setdefault("seed", 7)
    times = {"health_s": 2.0, "keepalive_s": 5, "receipt_timeout_s": 10.0} | (timing or {})
    return FleetProfile(
        brokers=broker_targets([(b.host, b.port) for b in brokers], list(communes)),
        timing=HubTiming(**times),
        **fields,
    )


def store_reader(*paths: Path) -> Callable[[], list[list[str]]]:
    def read() -> list[list[str]]:
        out = []
        for path in paths:
            with EventStore(path) as store:
                out.append(store.ids())
        return out

    return read


class Running:
    """``Fleet.run`` on a thread of its own; ``summary()`` waits for it to end."""

    def __init__(
        self,
        fleet_profile: FleetProfile,
        work_dir: Path,
        *,
        stores: Sequence[Path] = (),
        commune_keys: dict[str, PublicKey] | None = None,
    ) -> None:
        self.fleet = Fleet(fleet_profile, work_dir, commune_keys=commune_keys)
        self.stop = threading.Event()
        self._result: Summary | None = None
        self._error: BaseException | None = None
        reader = store_reader(*stores) if stores else None
        self._thread = threading.Thread(target=self._main, args=(reader,), daemon=True)

    def _main(self, reader: Callable[[], list[list[str]]] | None) -> None:
        try:
            self._result = self.fleet.run(self.stop, reader)
        except BaseException as exc:
            self._error = exc

    def start(self) -> Running:
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 30.0) -> None:
        hubs = self.fleet.hubs
        wait_until(lambda: all(h.ever_connected for h in hubs), timeout, "every hub connected")

    def events_made(self) -> int:
        return sum(h.ledger.last_seq for h in self.fleet.hubs)

    def summary(self, timeout: float = 120.0) -> Summary:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop.set()
            self._thread.join(30.0)
            raise AssertionError(f"the fleet did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def tuquan(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``tuquan ARGS`` from this tree, its output kept."""
    return subprocess.run(
        [sys.executable, "-m", "tuquan", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_tuquan(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tuquan", *args],
            cwd=REPO,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _env() -> dict[str, str]:
    import os

    return os.environ | {"PYTHONPATH": str(REPO)}


def summary_json(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout)
    assert isinstance(data, dict)
    return data


def fleet_ids_in(store_path: Path) -> list[str]:
    with EventStore(store_path) as store:
        return store.ids()
