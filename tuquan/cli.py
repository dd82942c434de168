"""The ``tuquan`` command line: run, sim, receive, check-config, detect, model."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/tuquan/hub.toml")
DEFAULT_DATA_DIR = Path("/var/lib/tuquan")
SIM_DATA_DIR = Path("data/sim")
# `tuquan sim` actions on the simulator's sensor nodes (hw_sim/nodes.py)
NODE_ACTIONS = ("smoke", "silence", "resume", "noise", "node-panic")
# `tuquan sim camera NAME ACTION`: what happens to a simulated camera (hw_sim/camera.py)
CAMERA_ACTIONS = (
    "walk", "cover", "uncover", "defocus", "focus", "turn", "straighten", "drop", "restore"
)  # fmt: skip


def _broker_arg(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _data_dir(args: argparse.Namespace, sim: bool) -> Path:
    if args.data_dir:
        return Path(args.data_dir)
    env = os.environ.get("TUQUAN_DATA_DIR")
    if env:
        return Path(env)
    return SIM_DATA_DIR if sim else DEFAULT_DATA_DIR


def _wait_for_signal(extra_stop: threading.Event | None = None) -> None:
    """Block until SIGTERM or SIGINT (or ``extra_stop`` is set)."""
    stop = extra_stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _print_config_errors(exc: Any, source: str) -> None:
    for path, msg in exc.errors:
        print(f"{path}: {msg}" if path else msg, file=sys.stderr)
    print(f"{source}: {len(exc.errors)} error(s)", file=sys.stderr)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from core.errors import ConfigError
    from settings import load_config

    try:
        cfg = load_config(Path(args.file))
    except ConfigError as exc:
        _print_config_errors(exc, args.file)
        return 2
    print(f"{args.file}: valid (hub {cfg.hub.id}, commune {cfg.hub.commune})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from core.errors import ConfigError, HardwareError
    from gateway.logs import setup_logging

    setup_logging(args.log_level)
    sim = args.sim is not None
    data_dir = _data_dir(args, sim)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if sim:
            from hw_sim.simulator import SimulatedHub, load_sim_config

            cfg = load_sim_config(Path(args.config) if args.config else None)
            scenario = Path(args.sim) if args.sim else None
            if scenario is not None:
                from hw_sim.scenario import load_scenario

                try:
                    load_scenario(scenario)
                except ConfigError as exc:
                    _print_config_errors(exc, str(scenario))
                    return 2
            service: Any = SimulatedHub(cfg, data_dir, broker=args.broker, scenario=scenario)
        else:
            from gateway.service import Hub
            from settings import load_config

            cfg = load_config(Path(args.config) if args.config else DEFAULT_CONFIG)
            service = Hub(cfg, data_dir, broker=args.broker)
    except ConfigError as exc:
        _print_config_errors(exc, args.config or "configuration")
        return 2
    except HardwareError as exc:  # a pin or the GPIO library: the message says what to do
        from sensors.gpio import close_all

        close_all()  # the pins claimed before the one that failed
        print(exc, file=sys.stderr)
        return 2
    service.start()
    try:
        _wait_for_signal()
    finally:
        service.stop()
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from hw_sim.control import request

    message: dict[str, Any] = {"cmd": args.action}
    if args.action in ("press", "release", "hold", *NODE_ACTIONS):
        if not args.name:
            what = "a node name" if args.action in NODE_ACTIONS else "an input name"
            print(f"tuquan sim {args.action} needs {what}", file=sys.stderr)
            return 2
        message["name"] = args.name
    if args.action == "hold":
        message["seconds"] = 3.0 if args.seconds is None else args.seconds
    if args.action == "node-panic" and args.seconds is not None:
        message["seconds"] = args.seconds
    for action, option in (("smoke", "level"), ("noise", "ber")):
        if args.action == action:
            if getattr(args, option) is None:
                print(f"tuquan sim {action} needs --{option}", file=sys.stderr)
                return 2
            message[option] = getattr(args, option)
    if args.action == "emit":
        message.update(kind=args.name or "telemetry", count=args.count)
    if args.action == "camera":
        if not args.name or args.what not in CAMERA_ACTIONS:
            print(
                f"usage: tuquan sim camera NAME {{{','.join(CAMERA_ACTIONS)}}} [--seconds S]",
                file=sys.stderr,
            )
            return 2
        message.update(name=args.name, action=args.what)
        if args.seconds is not None:
            message["seconds"] = args.seconds
    try:
        answer = request(_data_dir(args, sim=True), message)
    except (OSError, ValueError) as exc:
        print(f"no simulated hub answers in {_data_dir(args, sim=True)}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2 if args.action == "status" else None))
    return 0 if answer.get("ok") else 1


def _cmd_receive(args: argparse.Namespace) -> int:
    from commune.receiver import ReceiverError, run_receiver, tls_context
    from core.errors import ConfigError
    from gateway.logs import setup_logging

    setup_logging(args.log_level)
    host, port, commune = "127.0.0.1", 1883, args.commune
    username = password = client_id = share_group = None
    tls = None
    if args.config:
        from commune.config import load_receiver_config

        try:
            cfg = load_receiver_config(Path(args.config))
        except ConfigError as exc:
            _print_config_errors(exc, args.config)
            return 2
        b = cfg.broker
        host, port, username = b.host, b.port, b.username
        password = b.password.get_secret_value() if b.password else None
        if b.tls is not None:
            tls = tls_context(b.tls.ca_file, b.tls.cert_file, b.tls.key_file)
            if b.tls.insecure:
                tls.check_hostname = False
        commune = commune or cfg.receiver.commune
        client_id, share_group = cfg.receiver.client_id, cfg.receiver.share_group
    if args.broker:
        host, port = args.broker
    if not commune:
        print(
            "tuquan receive needs --commune or a --config with [receiver] commune", file=sys.stderr
        )
        return 2
    data_dir = Path(args.data_dir or os.environ.get("TUQUAN_DATA_DIR") or "data/receiver")
    try:
        return run_receiver(
            host,
            port,
            commune,
            data_dir,
            client_id=client_id,
            username=username,
            password=password,
            tls=tls,
            share_group=share_group,
        )
    except ReceiverError as exc:
        print(f"receiver: {exc}", file=sys.stderr)
        return 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tuquan")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuquan",
        description="tuquan, the neighborhood security hub: run the hub or its simulator, "
        "drive a simulated hub, run the commune receiver, check a config, detect people.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

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
        "--broker", type=_broker_arg, metavar="HOST:PORT", help="override the config's broker"
    )
    run.add_argument(
        "--data-dir",
        help=f"where the outbox lives (default {DEFAULT_DATA_DIR}, "
        f"with --sim ./{SIM_DATA_DIR}; or $TUQUAN_DATA_DIR)",
    )
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=_cmd_run)

    sim = sub.add_parser("sim", help="drive a running simulated hub")
    sim.add_argument(
        "action", choices=["press", "release", "hold", "status", "emit", *NODE_ACTIONS, "camera"]
    )
    sim.add_argument(
        "name",
        nargs="?",
        help="input name; sensor node name for node actions; camera name; emit: event kind",
    )
    sim.add_argument(
        "what", nargs="?", metavar="ACTION", help=f"for camera: {', '.join(CAMERA_ACTIONS)}"
    )
    sim.add_argument(
        "--seconds",
        type=float,
        help="for hold (default 3), node-panic (default 0.5) and camera walk (default 6)",
    )
    sim.add_argument("--level", type=int, help="for smoke: the detector's level, 0..65535")
    sim.add_argument("--ber", type=float, help="for noise: bit error rate on the node's link")
    sim.add_argument("--count", type=int, default=1, help="for emit")
    sim.add_argument("--data-dir", help=f"the simulated hub's data dir (default ./{SIM_DATA_DIR})")
    sim.set_defaults(func=_cmd_sim)

    rec = sub.add_parser("receive", help="run the commune receiver (stores, prints, receipts)")
    rec.add_argument("--config", help="receiver config: [receiver] commune, and [broker]")
    rec.add_argument("--broker", type=_broker_arg, metavar="HOST:PORT")
    rec.add_argument("--commune", help="the commune whose hubs to receive (overrides the config)")
    rec.add_argument("--data-dir", help="where receiver.sqlite3 lives (default ./data/receiver)")
    rec.add_argument("--log-level", default="INFO")
    rec.set_defaults(func=_cmd_receive)

    check = sub.add_parser("check-config", help="validate a hub config file (exit 2 if invalid)")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check_config)

    from sensors.detection.cli import add_subcommands as add_detection_subcommands

    add_detection_subcommands(sub)  # detect, model
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
