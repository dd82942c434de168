"""``tuquan watch``: the police console in a terminal, on the receiver's store
(docs/console.md, "The terminal console").

Exit 0 when the operator leaves (or after ``--once``), 1 if the store could not be read for
``--once``, 2 for a store that is missing or damaged, a config that cannot run, or no operator
name.
"""

from __future__ import annotations

import argparse
import getpass
import math
import os
import sys
from pathlib import Path

from tuquan.cli.common import RECEIVER_DATA_DIR, data_dir, print_config_errors

MAX_OPERATOR_CHARS = 64


def add_watch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = sub.add_parser(
        "watch", help="the alert queue and hubs in a terminal; acknowledge and close alerts"
    )
    watch.add_argument("--config", help="receiver config: the expected hubs, supervision")
    watch.add_argument(
        "--data-dir", help=f"where receiver.sqlite3 lives (default ./{RECEIVER_DATA_DIR})"
    )
    watch.add_argument(
        "--operator", help="the name actions are audited under (default: the login name)"
    )
    watch.add_argument(
        "--store", help="the store: a SQLite file or a postgresql:// URL (overrides the config)"
    )
    watch.add_argument("--once", action="store_true", help="print the queue and hubs, then exit")
    watch.add_argument(
        "--refresh",
        type=refresh_arg,
        default=1.0,
        metavar="S",
        help="how often to look for changes in the store, in seconds (default 1)",
    )
    watch.set_defaults(func=cmd_watch)


def refresh_arg(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0.05 <= seconds <= 60):
        raise argparse.ArgumentTypeError(f"expected seconds from 0.05 to 60, got {value!r}")
    return seconds


def operator_name(given: str | None) -> str | None:
    """``--operator``, else the login name; None (the reason printed) if neither will do."""
    if given is None:
        try:
            given = getpass.getuser()
        except (OSError, KeyError):
            print("tuquan watch: no login name to act under: pass --operator NAME",
                  file=sys.stderr)  # fmt: skip
            return None
    name = given.strip()
    if not name or len(name) > MAX_OPERATOR_CHARS or not name.isprintable():
        print(f"tuquan watch: the operator name must be 1 to {MAX_OPERATOR_CHARS} printable "
              "characters", file=sys.stderr)  # fmt: skip
        return None
    return name


def cmd_watch(args: argparse.Namespace) -> int:
    from commune.config import load_receiver_config
    from commune.desk_config import SupervisionConfig
    from commune.hubs import ExpectedHub
    from commune.locations import store_location
    from console.terminal_store import StoreError, WatchStore
    from console.terminal_watch import Watch, WatchOptions, run_lines, run_live, run_once
    from core.errors import ConfigError

    operator = operator_name(args.operator)
    if operator is None:
        return 2
    supervision = SupervisionConfig()
    expected: tuple[ExpectedHub, ...] = ()
    configured: str | None = None
    if args.config:
        try:
            cfg = load_receiver_config(Path(args.config))
        except ConfigError as exc:
            print_config_errors(exc, args.config)
            return 2
        supervision = cfg.supervision
        configured = cfg.receiver.store
        expected = tuple(
            ExpectedHub(h.id, h.name, h.place, h.latitude, h.longitude, h.contact, h.supervision_s)
            for h in cfg.hubs
        )
    path = store_location(configured, data_dir(args.data_dir, RECEIVER_DATA_DIR), args.store)
    try:
        store = WatchStore(path, expected)
    except StoreError as exc:
        print(f"tuquan watch: {exc}", file=sys.stderr)
        return 2
    watch = Watch(store, WatchOptions(operator, args.refresh, supervision.default_window_s))
    try:
        if args.once or sys.stdin is None:
            return run_once(watch, sys.stdout)
        if sys.stdin.isatty() and sys.stdout.isatty():
            from rich.console import Console

            return run_live(watch, sys.stdin.fileno(), Console(highlight=False))
        return run_lines(watch, sys.stdin.fileno(), sys.stdout)
    except BrokenPipeError:  # `tuquan watch --once | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:  # Ctrl-C while commands come from a pipe
        return 130
    finally:
        store.close()
