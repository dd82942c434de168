"""``tuquan fleet``: a load of simulated hubs against commune brokers and their receivers
(hw_sim/fleet/, docs/fleet.md), and at the end what was sent, receipted and stored.

Exit 0 when nothing was lost, 1 on any loss (an event never receipted, or missing from the
stores given), 2 for options, key files or stores that cannot be used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tuquan.cli.common import broker_arg


def add_fleet(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fleet",
        help="run thousands of simulated hubs against commune brokers and check nothing is lost",
    )
    p.add_argument("--hubs", type=int, default=100, help="light simulated hubs (default 100)")
    p.add_argument("--full-hubs", type=int, default=0, help="full simulated hubs among them")
    p.add_argument("--broker", type=broker_arg, action="append", metavar="HOST:PORT",
                   help="a commune broker (repeat: hubs are spread round-robin)")  # fmt: skip
    p.add_argument("--commune", action="append", metavar="NAME",
                   help="the brokers' communes: one for all, or one per --broker"
                   " (default fleet-c1, fleet-c2...)")  # fmt: skip
    p.add_argument("--hub-prefix", default="fleet", help="hub ids are PREFIX-0001... ")
    p.add_argument("--health-s", type=float, default=30.0, help="health every (default 30 s)")
    p.add_argument("--telemetry-per-min", type=float, default=1.0,
                   help="telemetry events per hub per minute (default 1)")  # fmt: skip
    p.add_argument("--duration-s", type=float, default=60.0, help="the load lasts (default 60)")
    p.add_argument("--drill", type=int, default=0, metavar="N", help="N panics at the end")
    p.add_argument("--drill-within-s", type=float, default=10.0, metavar="S",
                   help="... spread over the run's last S seconds (default 10)")  # fmt: skip
    p.add_argument("--settle-s", type=float, default=60.0,
                   help="then wait up to this long for the last receipts (default 60)")  # fmt: skip
    p.add_argument("--receipt-timeout-s", type=float, default=60.0,
                   help="a hub re-sends an event with no receipt after (default 60)")  # fmt: skip
    p.add_argument("--keepalive-s", type=int, default=30, help="MQTT keepalive (default 30)")
    p.add_argument("--session-expiry-s", type=int, default=3600,
                   help="the hubs' MQTT session expiry (default 3600)")  # fmt: skip
    p.add_argument("--keep-sessions", action="store_true",
                   help="leave the hubs' sessions on the brokers at the end")  # fmt: skip
    p.add_argument("--ping-s", type=float, default=0.0,
                   help="each hub's own ping every (a real hub: 5 s; default 0, none)")  # fmt: skip
    p.add_argument("--sign", action="store_true", help="sign events and health, a key per hub")
    p.add_argument("--keys-out", metavar="FILE", help="write the hubs' 'HUB KEY' lines here")
    p.add_argument("--enrol", action="store_true",
                   help="enrol the hubs' keys in every --store before starting")  # fmt: skip
    p.add_argument("--commune-key", action="append", metavar="FILE",
                   help="the commune's public key: receipts are verified with it"
                   " (one for all communes, or one per --commune)")  # fmt: skip
    p.add_argument(
        "--store",
        action="append",
        metavar="PATH",
        help="a receiver's store: check every event is in it (repeat: their union)",
    )
    p.add_argument("--data-dir", help="for the full hubs and command counters (default: temp)")
    p.add_argument("--loops", type=int, default=1, help="network loop threads (default 1)")
    p.add_argument("--connectors", type=int, default=2, help="connect threads (default 2)")
    p.add_argument("--connect-rate", type=float, default=500.0,
                   help="connects per second at most (default 500)")  # fmt: skip
    p.add_argument("--connect-timeout-s", type=float, default=120.0)
    p.add_argument("--seed", type=int, help="for the random phases and drill")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=cmd_fleet)


def cmd_fleet(args: argparse.Namespace) -> int:
    from core.errors import TuquanError
    from gateway.logs import setup_logging
    from hw_sim.fleet import Fleet, FleetError

    setup_logging(args.log_level)
    try:
        profile = _profile(args)
        commune_keys = _commune_keys(args.commune_key, profile.communes)
    except (FleetError, OSError, TuquanError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    if args.enrol and not args.store:
        print("fleet: --enrol needs a --store to enrol the keys in", file=sys.stderr)
        return 2
    if not args.enrol and (absent := [s for s in args.store or [] if not store_exists(s)]):
        print(f"fleet: --store {absent[0]}: no such store", file=sys.stderr)
        return 2
    temp = None if args.data_dir else Path(tempfile.mkdtemp(prefix="tuquan-fleet-"))
    work = Path(args.data_dir) if args.data_dir else temp
    assert work is not None
    try:
        fleet = Fleet(profile, work, commune_keys=commune_keys, progress=_progress(args.quiet))
        try:
            _keys(args, fleet.public_keys())
        except (OSError, TuquanError) as exc:
            print(f"fleet: {exc}", file=sys.stderr)
            return 2
        stop = threading.Event()
        _on_signals(stop)
        reader = (lambda: read_store_ids(args.store)) if args.store else None
        summary = fleet.run(stop, reader)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        from hw_sim.fleet import render_text

        print(render_text(summary))
    return 0 if summary.ok else 1


def _profile(args: argparse.Namespace) -> Any:
    from hw_sim.fleet import FleetProfile, HubTiming, broker_targets

    brokers = broker_targets(args.broker or [("127.0.0.1", 1883)], args.commune or [],
                             args.hub_prefix)  # fmt: skip
    timing = HubTiming(
        keepalive_s=args.keepalive_s,
        session_expiry_s=args.session_expiry_s,
        receipt_timeout_s=args.receipt_timeout_s,
        health_s=args.health_s,
        ping_s=args.ping_s,
        keep_sessions=args.keep_sessions,
    )
    return FleetProfile(
        hubs=args.hubs,
        brokers=brokers,
        timing=timing,
        telemetry_per_min=args.telemetry_per_min,
        duration_s=args.duration_s,
        drill=args.drill,
        drill_within_s=args.drill_within_s,
        settle_s=args.settle_s,
        full_hubs=args.full_hubs,
        hub_prefix=args.hub_prefix,
        sign=args.sign,
        connect_timeout_s=args.connect_timeout_s,
        loops=args.loops,
        connectors=args.connectors,
        connect_rate=args.connect_rate,
        seed=args.seed,
    )


def _commune_keys(files: list[str] | None, communes: list[str]) -> dict[str, Any]:
    """Each commune's public key: one file for all, or one per commune in order."""
    from hw_sim.fleet import FleetError
    from hw_sim.fleet.keys import read_public_key

    if not files:
        return {}
    if len(files) not in (1, len(communes)):
        raise FleetError(
            f"--commune-key: give one for all communes or one per commune ({len(communes)}),"
            f" not {len(files)}"
        )
    keys = [read_public_key(Path(f)) for f in files]
    if len(keys) == 1:
        keys = keys * len(communes)
    return dict(zip(communes, keys, strict=True))


def _keys(args: argparse.Namespace, keys: list[tuple[str, Any]]) -> None:
    if args.keys_out:
        from hw_sim.fleet.keys import write_public_keys

        write_public_keys(Path(args.keys_out), keys)
    if args.enrol:
        enrol(args.store, keys)


# -- the receivers' stores: the one place they are opened -----------------------------------


def _open_store(spec: str) -> Any:
    """A receiver's store by its path (SQLite today; the same opener will take a PostgreSQL
    URL)."""
    from commune.store import EventStore

    return EventStore(spec)


def store_exists(spec: str) -> bool:
    return "://" in spec or Path(spec).is_file()


def read_store_ids(specs: Sequence[str]) -> list[list[str]]:
    """Every event id in each store."""
    out = []
    for spec in specs:
        with _open_store(spec) as store:
            out.append(store.ids())
    return out


def enrol(specs: Sequence[str], keys: list[tuple[str, Any]]) -> None:
    """Make each hub's key its active key in every store (as ``tuquan keys trust`` does)."""
    from core.events import utc_now_iso

    for spec in specs:
        with _open_store(spec) as store:
            for hub, key in keys:
                store.enrol_hub_key(hub, key.text, key.fingerprint, utc_now_iso())


def _progress(quiet: bool) -> Any:
    if quiet:
        return None
    return lambda line: print(f"fleet: {line}", file=sys.stderr, flush=True)


def _on_signals(stop: threading.Event) -> None:
    """SIGINT or SIGTERM ends the run early: it still stops cleanly and prints its summary."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
