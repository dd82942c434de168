"""What every benchmark shares: arguments, the machine, tables, JSON lines, the broker.

MQTT clients, waiting and the simulated hub come from the test kit (``testkit/``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.logs import LogfmtFormatter
from testkit.broker import MISSING, Broker, find_mosquitto, running_broker


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a smaller run")
    p.add_argument("--json", metavar="FILE", help="also append the JSON result line to FILE")
    p.add_argument(
        "--data-root",
        default="/var/tmp",
        help="where temporary outboxes go; must be a real disk, not tmpfs (default /var/tmp)",
    )
    return p


# -- the machine ------------------------------------------------------------------------------


def filesystem_of(path: Path) -> dict[str, str]:
    """The mount (device, type, mount point) holding ``path``, from /proc/mounts."""
    path = Path(path).resolve()
    best = {"device": "?", "fstype": "?", "mount": "/"}
    best_len = -1
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, fstype = line.split()[:3]
        inside = path == Path(mount) or Path(mount) in path.parents
        if inside and len(mount) > best_len:
            best, best_len = {"device": device, "fstype": fstype, "mount": mount}, len(mount)
    return best


def disk_dir(root: str, prefix: str) -> Path:
    """A fresh temporary directory under ``root``, refusing memory-backed filesystems."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    fs = filesystem_of(path)
    if fs["fstype"] in ("tmpfs", "ramfs"):
        shutil.rmtree(path)
        raise SystemExit(f"{root} is on {fs['fstype']}; pass --data-root on a real disk")
    return path


def machine() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        mosq = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
    except (OSError, IndexError):
        mosq = "?"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mosquitto": mosq,
    }


# -- figures ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def report(name: str, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Print the JSON result line (last line of output) and append it to --json if given."""
    line = json.dumps({"bench": name, "quick": args.quick, "machine": machine(), **results})
    print(line)
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")


def log_to_file(path: Path, level: int = logging.INFO) -> None:
    """Log as `tuquan run` does (logfmt), into a file instead of the terminal."""
    handler = logging.FileHandler(path)
    handler.setFormatter(LogfmtFormatter())
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(level)


def proc_io() -> dict[str, int]:
    """This process's I/O counters (all threads): wchar, write_bytes, syscw..."""
    out = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        key, value = line.split(":")
        out[key] = int(value)
    return out


# -- the broker -------------------------------------------------------------------------------

# Unlimited queue per client: the default (1000) silently drops QoS 1 messages when a
# subscriber falls behind a fast publisher, which would end a run early.
BROKER_CONFIG = "max_queued_messages 0"


@contextmanager
def mosquitto(extra_config: str = "", *, persistent: bool = False) -> Iterator[Broker]:
    """A throwaway Mosquitto on a free loopback port for one run (the test kit's)."""
    if find_mosquitto() is None:
        raise SystemExit(MISSING)
    extra = "\n".join(line for line in (BROKER_CONFIG, extra_config) if line)
    with running_broker(extra_config=extra, persistent=persistent) as broker:
        yield broker
