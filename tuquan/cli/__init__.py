"""The ``tuquan`` command line: the parser, assembled from one module per command group.

- ``hub``: ``run`` (the hub, or ``--sim``) and ``check-config``;
- ``sim``: ``sim``, requests to a running simulated hub;
- ``receive``: ``receive``, the commune receiver;
- ``command``: ``command``, a signed command to a hub;
- ``detect``: ``detect``, people in picture files;
- ``model``: ``model list`` and ``model fetch``;
- ``keys``: ``keys init|show|trust|revoke``, signing keys and enrolment;
- ``broker``: ``broker-config`` (the commune broker's ACL and users) and ``doctor``;
- ``bridge``: ``bridge-config`` (the commune broker's bridge to the province broker);
- ``console``: ``console``, the police console, and its ``user`` and ``token`` accounts.
- ``watch``: ``watch``, the police console in a terminal, on the receiver's store.
- ``fleet``: ``fleet``, thousands of simulated hubs as a load, checked for loss.

Each command is a function of the parsed arguments returning the exit status. Building the
parser imports none of the hub, the simulator, the receiver or the detector: each command
imports what it runs.
"""

from __future__ import annotations

import argparse

from tuquan.cli.bridge import add_bridge_config
from tuquan.cli.broker import add_broker_config, add_doctor
from tuquan.cli.command import add_command
from tuquan.cli.console import add_console
from tuquan.cli.detect import add_detect
from tuquan.cli.fleet import add_fleet
from tuquan.cli.hub import add_check_config, add_run
from tuquan.cli.keys import add_keys
from tuquan.cli.model import add_model
from tuquan.cli.receive import add_receive
from tuquan.cli.sim import add_sim
from tuquan.cli.watch import add_watch


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("tuquan")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuquan",
        description="tuquan, the neighborhood security hub: run the hub or its simulator, "
        "drive a simulated hub, run the commune receiver, check a config, detect people, "
        "manage signing keys.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        add_run,
        add_sim,
        add_receive,
        add_console,
        add_watch,
        add_command,
        add_check_config,
        add_detect,
        add_model,
        add_keys,
        add_broker_config,
        add_bridge_config,
        add_doctor,
        add_fleet,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
