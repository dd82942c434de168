"""``tuquan receive``: the commune receiver (commune/), until SIGTERM or SIGINT.

Exit 0 after a signal, 1 if the event store cannot be opened, 2 for a config that cannot run.
"""

from __future__ import annotations

import argparse
import sys

from tuquan.cli.common import (
    RECEIVER_DATA_DIR,
    broker_arg,
    data_dir,
    receiver_config,
)


def add_receive(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rec = sub.add_parser("receive", help="run the commune receiver (stores, prints, receipts)")
    rec.add_argument("--config", help="receiver config: [receiver] commune, and [broker]")
    rec.add_argument("--broker", type=broker_arg, metavar="HOST:PORT")
    rec.add_argument(
        "--commune",
        help="the commune whose hubs to receive, '+' for every commune of the broker, or a "
        "list a,b (overrides the config)",
    )
    rec.add_argument(
        "--data-dir", help=f"where receiver.sqlite3 lives (default ./{RECEIVER_DATA_DIR})"
    )
    rec.add_argument(
        "--store",
        help="the event store: a SQLite file or a postgresql:// URL (overrides [receiver] store)",
    )
    rec.add_argument("--log-level", default="INFO")
    rec.set_defaults(func=cmd_receive)


def cmd_receive(args: argparse.Namespace) -> int:
    from commune.config import ReceiverConfig
    from commune.launch import receiver_broker_settings, run_configured_receiver
    from commune.locations import store_location
    from commune.receiver import ReceiverError
    from commune.scope import CommuneScope
    from gateway.logs import setup_logging

    setup_logging(args.log_level)
    found = receiver_config(args, "receive", several=True)
    if isinstance(found, int):
        return found
    cfg: ReceiverConfig | None = found[0]
    scope: CommuneScope = found[1]
    where = data_dir(args.data_dir, RECEIVER_DATA_DIR)
    store = store_location(cfg.receiver.store if cfg is not None else None, where, args.store)
    try:
        return run_configured_receiver(
            receiver_broker_settings(cfg, scope, args.broker),
            scope,
            where,
            share_group=cfg.receiver.share_group if cfg is not None else None,
            session_expiry_s=cfg.receiver.session_expiry_s if cfg is not None else None,
            store=store,
            dc09=cfg.forward.dc09 if cfg is not None else None,
        )
    except ReceiverError as exc:
        print(f"receiver: {exc}", file=sys.stderr)
        return 1
