"""The ``tuquan`` command line: run, sim, check-config, receive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.errors import ConfigError

    try:
        cfg = load_config(Path(args.file))
    except ConfigError as exc:
        for path, msg in exc.errors:
            print(f"{path}: {msg}" if path else msg, file=sys.stderr)
        print(f"{args.file}: {len(exc.errors)} error(s)", file=sys.stderr)
        return 2
    print(f"{args.file}: valid (hub {cfg.hub.id}, commune {cfg.hub.commune})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuquan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check-config", help="validate a hub config file (exit 2 if invalid)")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
