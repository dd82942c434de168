"""Memory of the running simulated hub against a bare paho client process, same run.

Hub: ``tuquan run --sim --broker ... --data-dir ...`` (the default simulated guard post, no
cameras) as a subprocess, measured with psutil: RSS and USS (``memory_full_info``), plus the peak
RSS (VmHWM, which psutil does not expose, from /proc/PID/status), once it is connected, and again
after 1,000 events injected through the simulator's control socket (``emit``, as a sensor would)
have been published. Baseline: a bare python process that imports paho-mqtt and connects to the
same broker. Target: hub RSS <= 60 MB, peak included.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench import common
from hw_sim.control import request
from hw_sim.simulator import default_config_path, load_sim_config
from testkit.waiting import wait_until

TARGET_MB = 60.0
EVENTS = 1_000
SETTLE_S = 1.0  # let start-up threads finish before reading

BARE = """
import sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rss-bare", protocol=mqtt.MQTTv5)
up = threading.Event()
c.on_connect = lambda *a: up.set()
c.connect(sys.argv[1], int(sys.argv[2]))
c.loop_start()
up.wait(10)
print("connected", flush=True)
sys.stdin.read()
"""


def memory_mb(pid: int) -> dict[str, float]:
    """RSS and USS from psutil, and the peak RSS (VmHWM) from /proc, in MB."""
    info = psutil.Process(pid).memory_full_info()
    out = {"rss": round(info.rss / 2**20, 1), "uss": round(info.uss / 2**20, 1)}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmHWM":
            out["peak_rss"] = round(int(value.split()[0]) / 1024, 1)  # kB
    return out


def camera_free_config(workdir: Path) -> Path | None:
    """None while the default simulated hub has no cameras; else a copy without them."""
    if not load_sim_config().cameras:
        return None
    kept, skipping = [], False
    for line in default_config_path().read_text().splitlines():
        header = re.match(r"\s*\[\[?\s*([\w.-]+)", line)
        if header:
            skipping = header[1].split(".")[0] == "cameras"
        if not skipping:
            kept.append(line)
    path = workdir / "hub-no-cameras.toml"
    path.write_text("\n".join(kept) + "\n")
    if load_sim_config(path).cameras:
        raise SystemExit("could not take the cameras out of the default simulated hub")
    return path


def tuquan() -> str:
    exe = Path(sys.executable).parent / "tuquan"
    found = str(exe) if exe.exists() else shutil.which("tuquan")
    if not found:
        raise SystemExit("tuquan is not installed in this environment (pip install -e .)")
    return found


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    events = 200 if args.quick else EVENTS
    data_dir = common.disk_dir(args.data_root, "bench-rss-")
    try:
        with common.mosquitto() as broker:
            bare = subprocess.Popen(
                [sys.executable, "-c", BARE, broker.host, str(broker.port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            try:
                assert bare.stdout is not None and bare.stdout.readline() == b"connected\n"
                time.sleep(SETTLE_S)
                bare_mem = memory_mb(bare.pid)
            finally:
                stop(bare)

            config = camera_free_config(data_dir)
            command = [tuquan(), "run", "--sim", "--broker", broker.address]
            command += ["--data-dir", str(data_dir)]
            if config is not None:
                command += ["--config", str(config)]
            with (data_dir / "hub.log").open("wb") as log:
                hub = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            try:

                def status() -> dict:
                    try:
                        return request(data_dir, {"cmd": "status"}, timeout=5)
                    except OSError:
                        return {}

                wait_until(lambda: status().get("online"), 30, "hub online")
                time.sleep(SETTLE_S)
                started = memory_mb(hub.pid)
                for _ in range(events // 100):
                    answer = request(
                        data_dir, {"cmd": "emit", "kind": "telemetry", "count": 100}, timeout=60
                    )
                    assert answer.get("ok"), answer
                wait_until(lambda: status()["outbox"]["pending"] == 0, 60, "all published")
                time.sleep(SETTLE_S)
                after = memory_mb(hub.pid)
            finally:
                stop(hub)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    rows = [
        ["bare python + paho, connected", *_cells(bare_mem), 1.0],
        [
            "hub (tuquan run --sim), connected",
            *_cells(started),
            common.ratio(started["rss"], bare_mem["rss"]),
        ],
        [
            f"hub after {events:,} events",
            *_cells(after),
            common.ratio(after["rss"], bare_mem["rss"]),
        ],
    ]
    common.table(
        "Memory (MB; RSS and USS from psutil, peak RSS = VmHWM)",
        ["process", "RSS", "USS", "peak RSS", "RSS / bare"],
        rows,
    )
    peak = max(started["peak_rss"], after["peak_rss"])
    met = peak <= TARGET_MB
    verdict = "met" if met else "NOT met"
    print(f"\ntarget: hub RSS <= {TARGET_MB:.0f} MB (peak {peak} MB): {verdict}")
    common.report(
        "rss",
        args,
        {
            "events": events,
            "command": "tuquan run --sim" + (" (default hub, cameras taken out)" if config else ""),
            "bare_mb": bare_mem,
            "hub_started_mb": started,
            "hub_after_mb": after,
            "peak_mb": peak,
            "ratio_after": common.ratio(after["rss"], bare_mem["rss"]),
            "target_mb": TARGET_MB,
            "met": met,
        },
    )


def _cells(mem: dict[str, float]) -> list[float]:
    return [mem["rss"], mem["uss"], mem["peak_rss"]]


if __name__ == "__main__":
    main()
