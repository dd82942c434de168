"""``tuquan bridge-config``: the commune broker's bridge to the province broker, with the queue
sized for an outage at the province's rates, and the province broker's ACL lines for the bridge
(commune/bridge_config.py).

Exit status: 0 written; 2 bad arguments (each error names its flag) or a config that cannot run.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from tuquan.cli.common import print_config_errors


def add_bridge_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bridge-config", help="print the commune broker's bridge to the province broker"
    )
    p.add_argument("--config", help="the commune's receiver config: its commune(s) and [[hubs]]")
    p.add_argument(
        "--commune", action="append", metavar="C", help="a commune of this broker (repeat, or a,b)"
    )
    p.add_argument(
        "--province", action="append", required=True, metavar="HOST:PORT",
        help="the province broker (repeat for the nodes of a cluster: tried in turn)",
    )  # fmt: skip
    p.add_argument("--cafile", help="the province broker's CA (PEM, absolute path): TLS")
    p.add_argument("--certfile", help="the bridge's client certificate, if the province wants one")
    p.add_argument("--keyfile", help="its key")
    p.add_argument("--tls-version", default="tlsv1.2", choices=("tlsv1.2", "tlsv1.3"))
    p.add_argument("--username", help="the bridge's user on the province broker")
    p.add_argument("--credentials-file", help='TOML file with password = "..." for --username')
    p.add_argument("--client-id", help="the bridge's client id there (tuquan-bridge-<communes>)")
    p.add_argument("--keepalive-s", type=int, default=30)
    rates = p.add_argument_group("the load behind this broker, for the queue's size")
    rates.add_argument("--hubs", type=int, help="hubs behind this broker (default: [[hubs]])")
    rates.add_argument("--events-per-hub-per-min", type=float, default=1.0)
    rates.add_argument("--health-interval-s", type=float, default=30.0)
    rates.add_argument("--snapshots-per-hub-per-hour", type=float, default=0.0)
    rates.add_argument("--snapshot-bytes", type=int, default=60_000)
    rates.add_argument("--event-bytes", type=int, default=700)
    rates.add_argument("--health-bytes", type=int, default=1_500)
    rates.add_argument(
        "--receipt-timeout-s", type=float, default=60.0, help="the hubs' [uplink] setting"
    )
    rates.add_argument("--outage-s", type=int, default=3600, help="the outage to hold")
    p.add_argument("--out", help="write the bridge to this file (0600) instead of stdout")
    p.add_argument("--province-acl", metavar="FILE", help="write the province broker's ACL lines")
    p.add_argument(
        "--province-receiver", action="append", default=[], metavar="USER",
        help="a province receiver's user, for --province-acl (repeat)",
    )  # fmt: skip
    p.add_argument(
        "--province-console", action="append", default=[], metavar="USER",
        help="a province console's user (commands), for --province-acl (repeat)",
    )  # fmt: skip
    p.set_defaults(func=cmd_bridge_config)


RATE_FLAGS = (
    "hubs",
    "events_per_hub_per_min",
    "health_interval_s",
    "snapshots_per_hub_per_hour",
    "snapshot_bytes",
    "event_bytes",
    "health_bytes",
    "receipt_timeout_s",
    "outage_s",
)


def flag(path: str) -> str:
    """``rates.hubs`` -> ``--hubs``, ``province[0]`` -> ``--province``."""
    name = re.sub(r"\[\d+\]", "", path.removeprefix("rates."))
    name = {"password": "credentials-file", "communes": "commune"}.get(name, name)
    return f"--{name.replace('_', '-')}" if name else ""


def cmd_bridge_config(args: argparse.Namespace) -> int:
    from commune.bridge_config import BridgeConfigError, bridge_conf, make_plan, province_acl
    from commune.config import load_receiver_config
    from settings.validators import read_password_file

    fields: dict[str, Any] = {}
    communes: list[str] = [c.strip() for given in args.commune or [] for c in given.split(",")]
    hubs = args.hubs
    if args.config:
        try:
            cfg = load_receiver_config(Path(args.config))
        except ConfigError as exc:
            print_config_errors(exc, args.config)
            return 2
        if not communes:
            scope = cfg.receiver.scope
            communes = ["+"] if scope.every else list(scope.communes)
        if hubs is None and cfg.hubs:
            hubs = len(cfg.hubs)
    if hubs is None:
        print("--hubs: say how many hubs are behind this broker (or list them as [[hubs]])",
              file=sys.stderr)  # fmt: skip
        return 2
    fields["communes"] = tuple(communes)
    fields["province"] = tuple(args.province)
    for name in ("client_id", "username", "cafile", "certfile", "keyfile"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    fields["tls_version"] = args.tls_version
    fields["keepalive_s"] = args.keepalive_s
    if args.credentials_file:
        try:
            fields["password"] = read_password_file(Path(args.credentials_file))
        except ValueError as exc:
            print(f"--credentials-file: {exc}", file=sys.stderr)
            return 2
    rates = {name: getattr(args, name) for name in RATE_FLAGS if name != "hubs"}
    fields["rates"] = {"hubs": hubs, **rates}
    try:
        plan = make_plan(fields)
    except BridgeConfigError as exc:
        for path, message in exc.errors:
            print(f"{flag(path)}: {message}" if path else message, file=sys.stderr)
        return 2
    text = bridge_conf(plan)
    if args.out:
        write_private(Path(args.out), text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    if args.province_acl:
        Path(args.province_acl).write_text(
            province_acl(plan, tuple(args.province_receiver), tuple(args.province_console))
        )
        print(f"wrote {args.province_acl}", file=sys.stderr if not args.out else sys.stdout)
    return 0


def write_private(path: Path, text: str) -> None:
    """Readable by its owner only: the file may hold the bridge's password."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
