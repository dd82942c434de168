"""``tuquan command HUB NAME``: a command signed by the commune for the operator who gives it,
published to the hub with an expiry (commune/commands.py, docs/topics.md#signed-commands).

With ``--wait`` the hub's cmd_result is printed as JSON; with ``--hub-key`` too, its signature
is checked against the hub's public key. Exit 0 when the hub ran the command (or, without
``--wait``, once the broker has it), 1 when it refused, no result came, or the result's
signature is wrong, 2 for arguments or files that cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import TuquanError
from tuquan.cli.common import (
    RECEIVER_DATA_DIR,
    broker_arg,
    data_dir,
    receiver_config,
)


def arg_pair(value: str) -> tuple[str, Any]:
    """``--arg k=v``: v as JSON if it parses (numbers, true, ...), else as a string."""
    key, sep, text = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    try:
        return key, json.loads(text)
    except ValueError:
        return key, text


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("command", help="send a hub a command signed by the commune")
    cmd.add_argument("hub", help="the hub's id")
    cmd.add_argument("name", help="the command: silence, ping, snapshot")
    cmd.add_argument(
        "--arg", action="append", type=arg_pair, default=[], metavar="KEY=VALUE", dest="args"
    )
    cmd.add_argument("--operator", required=True, help="the person who gives the command")
    cmd.add_argument("--commune", help="the hub's commune (overrides the config)")
    cmd.add_argument("--config", help="receiver config: [receiver] commune, and [broker]")
    cmd.add_argument("--broker", type=broker_arg, metavar="HOST:PORT")
    cmd.add_argument(
        "--data-dir",
        help=f"holds commune.key and command-counter (default ./{RECEIVER_DATA_DIR})",
    )
    cmd.add_argument("--ttl", type=int, default=120, help="seconds the command stays valid")
    cmd.add_argument("--wait", action="store_true", help="print the hub's result")
    cmd.add_argument("--hub-key", help="the hub's public key (ed25519:...), or a file holding it")
    cmd.set_defaults(func=cmd_command)


def cmd_command(args: argparse.Namespace) -> int:
    from commune.commands import (
        CommandSendError,
        CounterStore,
        send_command,
        sign_command,
    )
    from commune.config import ReceiverConfig
    from commune.launch import receiver_broker_settings
    from commune.trust import COMMUNE_KEY_FILE, load_commune_key
    from core.signing import PublicKey, verify

    found = receiver_config(args, "command")
    if isinstance(found, int):
        return found
    cfg: ReceiverConfig | None = found[0]
    commune: str = found[1]
    if args.ttl < 1:
        print("--ttl must be at least 1 s", file=sys.stderr)
        return 2
    directory = data_dir(args.data_dir, RECEIVER_DATA_DIR)
    try:
        hub_key = _hub_key(args.hub_key, PublicKey) if args.hub_key else None
        made = not (directory / COMMUNE_KEY_FILE).exists()
        key = load_commune_key(directory)
        if made:
            print(
                f"made the commune key {directory / 'commune.key'} (fingerprint"
                f" {key.public.fingerprint}); enrol it on each hub: {key.public.text}",
                file=sys.stderr,
            )
        command = sign_command(
            key,
            commune,
            args.hub,
            args.name,
            dict(args.args),
            args.operator,
            args.ttl,
            counter_store=CounterStore(directory / "command-counter"),
        )
        settings = receiver_broker_settings(cfg, commune, args.broker)
        result = send_command(settings, command, wait_s=float(args.ttl) if args.wait else None)
    except (TuquanError, ValueError, OSError) as exc:
        print(f"command: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CommandSendError) else 2
    if not args.wait:
        print(json.dumps({"sent": command["id"], "counter": command["counter"]}))
        return 0
    if result is None:
        print(f"command: no result from {args.hub} within {args.ttl} s", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    if hub_key is not None and not verify("cmd_result", result, hub_key):
        print("command: the result is not signed by the given hub key", file=sys.stderr)
        return 1
    return 0 if result.get("ok") is True else 1


def _hub_key(given: str, public_key: Any) -> Any:
    """``--hub-key``: the key's text, or a file holding it."""
    path = Path(given)
    text = path.read_text(encoding="ascii") if path.is_file() else given
    return public_key.from_text(text)
