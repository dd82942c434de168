"""What several commands share: the ``HOST:PORT`` argument, data directories, config errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from core.errors import ConfigError

DATA_DIR_ENV = "TUQUAN_DATA_DIR"
DEFAULT_DATA_DIR = Path("/var/lib/tuquan")
SIM_DATA_DIR = Path("data/sim")
RECEIVER_DATA_DIR = Path("data/receiver")


def broker_arg(value: str) -> tuple[str, int]:
    """``--broker HOST:PORT`` (an IPv6 host in brackets) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def data_dir(given: str | None, default: Path) -> Path:
    """``--data-dir``, else ``$TUQUAN_DATA_DIR``, else ``default``."""
    if given:
        return Path(given)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else default


def print_config_errors(exc: ConfigError, source: str) -> None:
    """Each error on its own line (``path: message``), then how many, on stderr."""
    for path, msg in exc.errors:
        print(f"{path}: {msg}" if path else msg, file=sys.stderr)
    print(f"{source}: {len(exc.errors)} error(s)", file=sys.stderr)


def receiver_config(
    args: argparse.Namespace, command: str, *, several: bool = False
) -> tuple[Any, Any] | int:
    """``--config`` (a receiver config, or None) and the commune (``--commune``, else the
    config's); an exit status (2, errors printed) when either cannot be had. With ``several``
    the second is a ``CommuneScope`` (``--commune +`` or ``a,b`` allowed), else one commune."""
    from commune.config import load_receiver_config
    from commune.scope import CommuneScope, ScopeError

    cfg = None
    if args.config:
        try:
            cfg = load_receiver_config(Path(args.config))
        except ConfigError as exc:
            print_config_errors(exc, args.config)
            return 2
    try:
        scope = CommuneScope.of(args.commune) if args.commune else None
    except ScopeError as exc:
        print(f"--commune: {exc}", file=sys.stderr)
        return 2
    if scope is None and cfg is not None:
        scope = cfg.receiver.scope
    if scope is None:
        print(f"tuquan {command} needs --commune or a --config with [receiver] commune",
              file=sys.stderr)  # fmt: skip
        return 2
    if several:
        return cfg, scope
    if scope.single is None:
        print(f"tuquan {command} serves one commune, not {scope.label!r}: several communes "
              "(a list, or '+') are for tuquan receive", file=sys.stderr)  # fmt: skip
        return 2
    return cfg, scope.single
