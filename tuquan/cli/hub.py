"""``tuquan run`` (the hub, on its hardware or simulated) and ``tuquan check-config``.

The hub and the simulator are imported by the command that runs them: ``check-config`` and
building the parser load neither.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Protocol

from core.errors import ConfigError, HardwareError
from tuquan.cli.common import (
    DEFAULT_DATA_DIR,
    SIM_DATA_DIR,
    broker_arg,
    data_dir,
    print_config_errors,
)

DEFAULT_CONFIG = Path("/etc/tuquan/hub.toml")


class Service(Protocol):
    """A hub, real or simulated, as ``run`` drives it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the hub (real hardware, or --sim)")
    run.add_argument(
        "--config",
        help=f"hub config (default {DEFAULT_CONFIG}; with --sim the built-in simulated guard post)",
    )
    run.add_argument(
        "--sim",
        nargs="?",
        const="",
        metavar="SCENARIO",
        help="simulated hardware; optionally play a scenario file",
    )
    run.add_argument(
        "--broker", type=broker_arg, metavar="HOST:PORT", help="override the config's broker"
    )
    run.add_argument(
        "--data-dir",
        help=f"where the outbox lives (default {DEFAULT_DATA_DIR}, "
        f"with --sim ./{SIM_DATA_DIR}; or $TUQUAN_DATA_DIR)",
    )
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)


def add_check_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser("check-config", help="validate a hub config file (exit 2 if invalid)")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)


def cmd_check_config(args: argparse.Namespace) -> int:
    from settings import load_config

    try:
        cfg = load_config(Path(args.file))
    except ConfigError as exc:
        print_config_errors(exc, args.file)
        return 2
    print(f"{args.file}: valid (hub {cfg.hub.id}, commune {cfg.hub.commune})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.logs import setup_logging

    setup_logging(args.log_level)
    sim = args.sim is not None
    directory = data_dir(args.data_dir, SIM_DATA_DIR if sim else DEFAULT_DATA_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    config = Path(args.config) if args.config else None
    try:
        if sim:
            scenario = Path(args.sim) if args.sim else None
            service = simulated_hub(config, scenario, directory, args.broker)
        else:
            service = real_hub(config or DEFAULT_CONFIG, directory, args.broker)
    except ScenarioInvalid as invalid:
        print_config_errors(invalid.error, str(invalid.path))
        return 2
    except ConfigError as exc:
        print_config_errors(exc, args.config or "configuration")
        return 2
    except HardwareError as exc:  # a pin or the GPIO library: the message says what to do
        from sensors.gpio import close_all

        close_all()  # the pins claimed before the one that failed
        print(exc, file=sys.stderr)
        return 2
    service.start()
    try:
        wait_for_signal()
    finally:
        service.stop()
    return 0


class ScenarioInvalid(Exception):
    """The scenario file (not the hub's config) is what ``error`` is about."""

    def __init__(self, path: Path, error: ConfigError) -> None:
        super().__init__(str(error))
        self.path = path
        self.error = error


def real_hub(config: Path, directory: Path, broker: tuple[str, int] | None) -> Service:
    from gateway.service import Hub
    from settings import load_config

    return Hub(load_config(config), directory, broker=broker)


def simulated_hub(
    config: Path | None, scenario: Path | None, directory: Path, broker: tuple[str, int] | None
) -> Service:
    """The simulated hub (``config`` or the built-in guard post) playing ``scenario``."""
    from hw_sim.scenario import load_scenario
    from hw_sim.simulator import SimulatedHub, load_sim_config

    cfg = load_sim_config(config)
    if scenario is not None:
        try:
            load_scenario(scenario)  # its errors name the scenario file, not the config
        except ConfigError as exc:
            raise ScenarioInvalid(scenario, exc) from None
    return SimulatedHub(cfg, directory, broker=broker, scenario=scenario)


def wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
