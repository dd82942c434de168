"""``tuquan console``: the police console (receiver, desk and web pages in one process), and
its accounts.

- ``tuquan console [--config FILE] [--data-dir DIR] [--listen HOST:PORT] [--broker HOST:PORT]``
- ``tuquan console user add|passwd NAME [--role viewer|operator|admin]`` (the password is one
  line of standard input), ``user remove NAME``, ``user list``
- ``tuquan console token add NAME --role R`` (prints the token, once), ``token remove NAME``,
  ``token list``

Exit 0 on success, 1 when the accounts refuse (an existing name, an empty password...) or the
store cannot be opened, 2 for a config or arguments that cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tuquan.cli.common import RECEIVER_DATA_DIR, broker_arg, data_dir, receiver_config

ROLES = ("viewer", "operator", "admin")
CLI_ACTOR = "cli"


def add_console(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data_help = f"where receiver.sqlite3 lives (default ./{RECEIVER_DATA_DIR})"
    # Given before or after the subcommand; after it, it must not reset one given before.
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--data-dir", default=argparse.SUPPRESS, help=data_help)
    store_help = "the store: a SQLite file or a postgresql:// URL (overrides [receiver] store)"
    where.add_argument("--store", default=argparse.SUPPRESS, help=store_help)
    con = sub.add_parser(
        "console",
        help="run the police console (receiver, desk, web pages and /api/v1); manage its users",
    )
    con.add_argument("--data-dir", help=data_help)
    con.add_argument("--store", help=store_help)
    con.add_argument("--config", help="receiver config ([receiver], [broker], [console]...)")
    con.add_argument("--commune", help="the commune (overrides the config's)")
    con.add_argument(
        "--listen",
        type=broker_arg,
        metavar="HOST:PORT",
        help="where the web console listens (default [console] listen)",
    )
    con.add_argument("--broker", type=broker_arg, metavar="HOST:PORT")
    con.add_argument("--log-level", default="INFO")
    con.set_defaults(func=cmd_console)
    groups = con.add_subparsers(dest="console_command")

    user = groups.add_parser("user", help="console users (the password is read from stdin)")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    for name, text in (("add", "add a user"), ("passwd", "set a user's password (and role)")):
        p = user_sub.add_parser(name, parents=[where], help=text)
        p.add_argument("name")
        p.add_argument("--role", choices=ROLES, required=name == "add")
        p.set_defaults(func=cmd_user)
    p = user_sub.add_parser("remove", parents=[where], help="remove a user")
    p.add_argument("name")
    p.set_defaults(func=cmd_user)
    p = user_sub.add_parser("list", parents=[where], help="list the users")
    p.set_defaults(func=cmd_user)

    token = groups.add_parser("token", help="API tokens for /api/v1")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    p = token_sub.add_parser("add", parents=[where], help="make a token (printed once)")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, required=True)
    p.set_defaults(func=cmd_token)
    p = token_sub.add_parser("remove", parents=[where], help="remove a token")
    p.add_argument("name")
    p.set_defaults(func=cmd_token)
    p = token_sub.add_parser("list", parents=[where], help="list the tokens (not their values)")
    p.set_defaults(func=cmd_token)


def _open(args: argparse.Namespace) -> Any:
    """(Accounts, AuditLog, Db) over the data dir's store."""
    from commune.audit import AuditLog
    from commune.db import open_db
    from commune.locations import store_location
    from console.accounts import Accounts

    where = data_dir(args.data_dir, RECEIVER_DATA_DIR)
    location = store_location(None, where, args.store)
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
    db = open_db(location)
    return Accounts(db), AuditLog(db), db


def _password() -> str:
    """One line of standard input, without its line end."""
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def cmd_user(args: argparse.Namespace) -> int:
    from commune.db import OPEN_ERRORS
    from console.accounts import AccountError

    try:
        accounts, audit, db = _open(args)
    except OPEN_ERRORS as exc:
        print(f"console: cannot open the store: {exc}", file=sys.stderr)
        return 1
    try:
        if args.user_command == "list":
            for u in accounts.users():
                locked = f" locked until {u.locked_until}" if u.locked_until else ""
                print(f"{u.name}\t{u.role}\t{u.created_at}{locked}")
            return 0
        if args.user_command == "remove":
            accounts.remove_user(args.name)
            audit.append(CLI_ACTOR, "user_removed", detail={"user": args.name})
            print(f"removed user {args.name}")
            return 0
        password = _password()
        if args.user_command == "add":
            accounts.add_user(args.name, args.role, password)
            audit.append(CLI_ACTOR, "user_added", detail={"user": args.name, "role": args.role})
            print(f"added user {args.name} ({args.role})")
            return 0
        accounts.set_password(args.name, password)
        if args.role:
            accounts.set_role(args.name, args.role)
        audit.append(
            CLI_ACTOR, "password_changed", detail={"user": args.name, "role": args.role or ""}
        )
        print(f"set the password of {args.name}")
        return 0
    except AccountError as exc:
        print(f"console: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def cmd_token(args: argparse.Namespace) -> int:
    from commune.db import OPEN_ERRORS
    from console.accounts import AccountError

    try:
        accounts, audit, db = _open(args)
    except OPEN_ERRORS as exc:
        print(f"console: cannot open the store: {exc}", file=sys.stderr)
        return 1
    try:
        if args.token_command == "list":
            for t in accounts.tokens():
                print(f"{t.name}\t{t.role}\t{t.created_at}")
            return 0
        if args.token_command == "remove":
            accounts.remove_token(args.name)
            audit.append(CLI_ACTOR, "token_removed", detail={"token": args.name})
            print(f"removed token {args.name}", file=sys.stderr)
            return 0
        token = accounts.add_token(args.name, args.role)
        audit.append(CLI_ACTOR, "token_added", detail={"token": args.name, "role": args.role})
        print(token)
        print(f"made token {args.name} ({args.role}): it is shown only this once", file=sys.stderr)
        return 0
    except AccountError as exc:
        print(f"console: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def cmd_console(args: argparse.Namespace) -> int:
    from commune.config import ReceiverConfig, parse_receiver_config
    from commune.desk import DeskError
    from commune.desk_config import split_listen
    from commune.launch import receiver_broker_settings
    from commune.receiver import ReceiverError
    from console.run import run_console
    from gateway.logs import setup_logging

    setup_logging(args.log_level)
    found = receiver_config(args, "console")
    if isinstance(found, int):
        return found
    cfg: ReceiverConfig | None = found[0]
    commune: str = found[1]
    if cfg is None:  # no --config: the defaults, for the commune given
        cfg = parse_receiver_config({"receiver": {"commune": commune}}, base_dir=Path.cwd(), env={})
    elif cfg.receiver.commune != commune:
        section = cfg.receiver.model_copy(update={"commune": commune, "communes": None})
        cfg = cfg.model_copy(update={"receiver": section})
    if args.store is not None:
        section = cfg.receiver.model_copy(update={"store": args.store})
        cfg = cfg.model_copy(update={"receiver": section})
    listen = args.listen or split_listen(cfg.console.listen)
    try:
        return run_console(
            cfg,
            data_dir(args.data_dir, RECEIVER_DATA_DIR),
            listen,
            receiver_broker_settings(cfg, commune, args.broker),
        )
    except (ReceiverError, DeskError) as exc:
        print(f"console: {exc}", file=sys.stderr)
        return 1
