"""``tuquan sim ACTION [NAME]``: one request to a running simulated hub over its control socket
(hw_sim/control.py), its answer printed as JSON; exit 0 if the hub says ok, 1 if not or if no
hub answers, 2 for an action missing what it needs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tuquan.cli.common import SIM_DATA_DIR, data_dir

# Actions on the simulator's sensor nodes (hw_sim/nodes.py)
NODE_ACTIONS = ("smoke", "silence", "resume", "noise", "node-panic")
# `tuquan sim camera NAME ACTION`: what happens to a simulated camera (hw_sim/camera.py ACTIONS;
# listed here too so that building the parser does not load OpenCV)
CAMERA_ACTIONS = (
    "walk", "cover", "uncover", "defocus", "focus", "turn", "straighten", "drop", "restore"
)  # fmt: skip


class UsageError(Exception):
    """An action given without what it needs; the message says what."""


def add_sim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    sim.set_defaults(func=cmd_sim)


def cmd_sim(args: argparse.Namespace) -> int:
    from hw_sim.control import request

    try:
        message = control_request(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    directory = data_dir(args.data_dir, SIM_DATA_DIR)
    try:
        answer = request(directory, message)
    except (OSError, ValueError) as exc:
        print(f"no simulated hub answers in {directory}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2 if args.action == "status" else None))
    return 0 if answer.get("ok") else 1


def control_request(args: argparse.Namespace) -> dict[str, Any]:
    """The control-channel request the command line asks for (raises UsageError)."""
    message: dict[str, Any] = {"cmd": args.action}
    if args.action in ("press", "release", "hold", *NODE_ACTIONS):
        if not args.name:
            what = "a node name" if args.action in NODE_ACTIONS else "an input name"
            raise UsageError(f"tuquan sim {args.action} needs {what}")
        message["name"] = args.name
    if args.action == "hold":
        message["seconds"] = 3.0 if args.seconds is None else args.seconds
    if args.action == "node-panic" and args.seconds is not None:
        message["seconds"] = args.seconds
    for action, option in (("smoke", "level"), ("noise", "ber")):
        if args.action == action:
            if getattr(args, option) is None:
                raise UsageError(f"tuquan sim {action} needs --{option}")
            message[option] = getattr(args, option)
    if args.action == "emit":
        message.update(kind=args.name or "telemetry", count=args.count)
    if args.action == "camera":
        if not args.name or args.what not in CAMERA_ACTIONS:
            raise UsageError(
                f"usage: tuquan sim camera NAME {{{','.join(CAMERA_ACTIONS)}}} [--seconds S]"
            )
        message.update(name=args.name, action=args.what)
        if args.seconds is not None:
            message["seconds"] = args.seconds
    return message
