"""``tuquan broker-config`` (the commune Mosquitto's config, users and ACL, generated) and
``tuquan doctor`` (connect as a hub and report what the broker lets it do that it must not).

Exit status: 0 done / every probe as it should be; 1 the broker allows what it must not (or
refuses what a hub needs); 2 bad arguments, a config that cannot run, no broker to reach.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import ConfigError
from tuquan.cli.common import broker_arg, print_config_errors


def add_broker_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("broker-config", help="write the commune broker's config, users and ACL")
    p.add_argument("--commune", required=True)
    p.add_argument("--hub", action="append", default=[], metavar="HUB", help="repeat per hub")
    p.add_argument("--receiver", action="append", metavar="USER", help="default commune-receiver")
    p.add_argument("--console", action="append", metavar="USER", help="default console")
    p.add_argument("--watcher", action="append", default=[], metavar="USER")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--cafile")
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    p.add_argument(
        "--client-certificates",
        action="store_true",
        help="clients prove who they are by certificate (CN = user) instead of a password",
    )
    p.add_argument("--persistence-dir", default="/var/lib/mosquitto/")
    p.add_argument("--out", required=True, help="folder to write mosquitto.conf and the rest to")
    p.set_defaults(func=cmd_broker_config)


def add_doctor(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check that the broker refuses what a hub must not do")
    p.add_argument("--config", required=True, help="the hub's config (its [broker] and id)")
    p.add_argument("--broker", type=broker_arg, metavar="HOST:PORT", help="instead of [broker]")
    p.set_defaults(func=cmd_doctor)


def cmd_broker_config(args: argparse.Namespace) -> int:
    from commune.broker_config import BrokerConfigError, BrokerPlan, write_broker_config

    if not args.hub:
        print("broker-config: name at least one --hub", file=sys.stderr)
        return 2
    plan = BrokerPlan(
        commune=args.commune,
        hubs=tuple(args.hub),
        receivers=tuple(args.receiver or ["commune-receiver"]),
        consoles=tuple(args.console or ["console"]),
        watchers=tuple(args.watcher),
        port=args.port,
        cafile=args.cafile,
        certfile=args.certfile,
        keyfile=args.keyfile,
        client_certificates=args.client_certificates,
        persistence_dir=args.persistence_dir,
    )
    try:
        written = write_broker_config(plan, Path(args.out))
    except BrokerConfigError as exc:
        print(f"broker-config: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written.conf}, {written.acl}")
    if written.password_file is not None:
        where = Path(args.out) / "credentials"
        print(f"wrote {written.password_file}; each user's password is in {where}/")
    if not plan.cafile:
        print(
            "warning: no TLS (--cafile/--certfile/--keyfile): passwords cross the network in clear"
        )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.broker import settings_from_table
    from gateway.doctor import examine, report
    from settings import load_config

    try:
        cfg = load_config(Path(args.config))
    except ConfigError as exc:
        print_config_errors(exc, args.config)
        return 2
    settings = settings_from_table(cfg.broker, cfg.client_id, args.broker)
    try:
        findings = examine(settings, cfg.hub.commune, cfg.hub.id)
    except ConnectionError as exc:
        print(f"doctor: {exc}", file=sys.stderr)
        return 2
    print(f"broker {settings.host}:{settings.port}, as hub {cfg.hub.id} of {cfg.hub.commune}:")
    print(report(findings))
    bad = [f for f in findings if not f.ok]
    print("the broker refuses what a hub must not do" if not bad else f"{len(bad)} problem(s)")
    return 0 if not bad else 1
