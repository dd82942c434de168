"""``tuquan keys``: the hub's and the commune's keys, and who trusts whom.

- ``keys init [--data-dir HUB_DIR] [--force]``: the hub's signing key (``hub.key``); kept if
  there is one, replaced with ``--force`` (then re-enrol the hub at the receiver).
  ``--receiver --data-dir RECEIVER_DIR``: the commune's key (``commune.key``) instead.
- ``keys show [--data-dir D] [--receiver]``: the public key (first line, to copy) and its
  fingerprint (to read out), of the hub or, with ``--receiver``, of the commune.
- ``keys trust HUB KEY --data-dir RECEIVER_DIR``: enrol a hub at the receiver, or enrol its new
  key (the new one is active; its previous keys stay acceptable until revoked).
- ``keys revoke HUB [--key FINGERPRINT] --data-dir RECEIVER_DIR``: revoke all the hub's keys,
  or one of them.
- ``keys trust --commune KEY --data-dir HUB_DIR`` / ``keys revoke --commune --data-dir HUB_DIR``:
  the commune key the hub trusts (with one, the hub accepts only signed receipts and commands).

Exit 0 on success, 1 if there is no such key or hub, 2 for a bad key, hub id or usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tuquan.cli.common import DEFAULT_DATA_DIR, RECEIVER_DATA_DIR, data_dir

if TYPE_CHECKING:
    from commune.store import EventStore


def add_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="signing keys and enrolment (hub, commune receiver)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    dir_help = f"data dir (hub default {DEFAULT_DATA_DIR}, receiver ./{RECEIVER_DATA_DIR})"

    init = actions.add_parser("init", help="make the hub's signing key (or the commune's)")
    init.add_argument("--data-dir", help=dir_help)
    init.add_argument("--force", action="store_true", help="replace an existing key (rotation)")
    init.add_argument("--receiver", action="store_true", help="the commune key of a receiver")
    init.set_defaults(func=cmd_init)

    show = actions.add_parser("show", help="print a public key and its fingerprint")
    show.add_argument("--data-dir", help=dir_help)
    show.add_argument("--receiver", action="store_true", help="the commune key of a receiver")
    show.set_defaults(func=cmd_show)

    trust = actions.add_parser(
        "trust", help="enrol HUB's KEY at a receiver, or --commune KEY at a hub"
    )
    trust.add_argument("hub_and_key", nargs="*", metavar="HUB KEY")
    trust.add_argument("--commune", metavar="KEY", help="the commune key this hub trusts")
    trust.add_argument("--data-dir", help=dir_help)
    store_help = "the receiver's store: a SQLite file or a postgresql:// URL"
    trust.add_argument("--store", help=store_help)
    trust.set_defaults(func=cmd_trust)

    revoke = actions.add_parser("revoke", help="revoke HUB at a receiver, or --commune at a hub")
    revoke.add_argument("hub", nargs="?", metavar="HUB")
    revoke.add_argument("--key", metavar="FINGERPRINT", help="revoke only this key of HUB")
    revoke.add_argument("--commune", action="store_true", help="forget the hub's commune key")
    revoke.add_argument("--data-dir", help=dir_help)
    revoke.add_argument("--store", help=store_help)
    revoke.set_defaults(func=cmd_revoke)


def _fail(message: str, status: int) -> int:
    print(f"tuquan keys: {message}", file=sys.stderr)
    return status


def _key_path(args: argparse.Namespace) -> Path:
    from commune.trust import COMMUNE_KEY_FILE
    from gateway.trust import HUB_KEY_FILE

    if args.receiver:
        return data_dir(args.data_dir, RECEIVER_DATA_DIR) / COMMUNE_KEY_FILE
    return data_dir(args.data_dir, DEFAULT_DATA_DIR) / HUB_KEY_FILE


def _print_public(label: str, text: str, fingerprint: str) -> None:
    print(text)
    print(f"fingerprint {fingerprint} ({label})")


def cmd_init(args: argparse.Namespace) -> int:
    from core.signing import KeyFileError, SigningKey

    path = _key_path(args)
    label = "commune" if args.receiver else "hub"
    try:
        if path.exists() and not args.force:
            key = SigningKey.load(path)
            print(f"kept the {label} key already in {path}", file=sys.stderr)
        else:
            replaced = path.exists()
            key = SigningKey.generate()
            key.save(path, replace=True)
            print(f"{'replaced' if replaced else 'made'} the {label} key {path}", file=sys.stderr)
            if replaced:
                where = "every hub (keys trust --commune)" if args.receiver else "the receiver"
                print(f"enrol the new key at {where}", file=sys.stderr)
    except KeyFileError as exc:
        return _fail(str(exc), 2)
    _print_public(label, key.public.text, key.public.fingerprint)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from core.signing import KeyFileError, SigningKey

    path = _key_path(args)
    if not path.exists():
        receiver = " --receiver" if args.receiver else ""
        return _fail(f"no key at {path}; `tuquan keys init{receiver}` makes one", 1)
    try:
        key = SigningKey.load(path)
    except KeyFileError as exc:
        return _fail(str(exc), 2)
    _print_public("commune" if args.receiver else "hub", key.public.text, key.public.fingerprint)
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    from core.signing import KeyFileError, PublicKey

    if args.commune is not None:
        if args.hub_and_key:
            return _fail("give either HUB KEY (at a receiver) or --commune KEY (at a hub)", 2)
        try:
            key = PublicKey.from_text(args.commune)
        except KeyFileError as exc:
            return _fail(f"bad commune key: {exc}", 2)
        from gateway.trust import trust_commune

        directory = data_dir(args.data_dir, DEFAULT_DATA_DIR)
        trust_commune(directory, key)
        print(f"hub in {directory} trusts the commune key {key.fingerprint}")
        return 0
    if len(args.hub_and_key) != 2:
        return _fail("usage: tuquan keys trust HUB KEY --data-dir RECEIVER_DIR", 2)
    hub, text = args.hub_and_key
    if (problem := _hub_problem(hub)) is not None:
        return _fail(problem, 2)
    try:
        key = PublicKey.from_text(text)
    except KeyFileError as exc:
        return _fail(f"bad key for hub {hub}: {exc}", 2)
    from core.events import utc_now_iso

    with _receiver_store(args) as store:
        added = store.enrol_hub_key(hub, key.text, key.fingerprint, utc_now_iso())
    if added:
        print(f"enrolled hub {hub}: key {key.fingerprint} is its active key")
    else:
        print(f"hub {hub}: key {key.fingerprint} already is its active key")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    if args.commune:
        if args.hub or args.key:
            return _fail("--commune takes no HUB or --key", 2)
        from gateway.trust import forget_commune

        directory = data_dir(args.data_dir, DEFAULT_DATA_DIR)
        if not forget_commune(directory):
            return _fail(f"the hub in {directory} trusts no commune key", 1)
        print(f"hub in {directory} trusts no commune key: unsigned receipts accepted again")
        return 0
    if not args.hub:
        return _fail("usage: tuquan keys revoke HUB [--key FINGERPRINT] --data-dir RECEIVER_DIR", 2)
    if (problem := _hub_problem(args.hub)) is not None:
        return _fail(problem, 2)
    from core.events import utc_now_iso

    with _receiver_store(args) as store:
        revoked = store.revoke_hub_keys(args.hub, utc_now_iso(), args.key)
    if not revoked:
        which = f"key {args.key}" if args.key else "key"
        return _fail(f"hub {args.hub} has no acceptable {which} to revoke", 1)
    print(
        f"revoked {revoked} key(s) of hub {args.hub}: its events signed with them are quarantined"
    )
    return 0


def _hub_problem(hub: str) -> str | None:
    from commune.validate import HUB_PATTERN

    if HUB_PATTERN.fullmatch(hub):
        return None
    return f"{hub!r} is not a hub id (lower-case letters, digits, '-' and '_')"


def _receiver_store(args: argparse.Namespace) -> EventStore:
    from commune.locations import store_location
    from commune.store import EventStore

    directory = data_dir(args.data_dir, RECEIVER_DATA_DIR)
    location = store_location(None, directory, args.store)
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
    return EventStore(location)
