"""Memory and CPU of the simulated hub with its camera against the same hub without, same run.

With camera: ``tuquan run --sim``, the default simulated guard post, whose cam-1 is a 320x240
virtual camera at 5 fps watched by the real pipeline with the ``pose-detection`` model loaded
(LiteRT, 2 threads). Baseline: the same hub with its camera tables taken out
(``tuquan run --sim --config FILE``). Both are subprocesses connected to the same Mosquitto,
run one after the other, twice (once with ``--quick``), interleaved.

Measured with psutil: RSS, USS and peak RSS (VmHWM, from /proc) once running and at the end;
process CPU time (user + system, every thread: detector, pipeline, virtual camera) over a
window with the street still, and over one with people walking through one after the other.
CPU per camera = (hub with camera - baseline) / window, as a share of one core; cameras one
core can carry at 5 fps = 1 / that share. The virtual camera draws each frame (street, person,
sensor noise), which stands in for decoding a real camera's stream: its cost per frame is
measured in this process on the same pictures and shown apart ("pipeline only").

Where the memory goes: a child process loads the camera path's parts one by one (the hub's
own modules, numpy, OpenCV, the camera modules, LiteRT, the model allocated, the virtual
camera drawn, a frame through the detector, a snapshot encoded), RSS after each.

Target: RSS of the hub with its camera and the model loaded <= 120 MB, peak included.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench import common
from bench.rss import camera_free_config, memory_mb, stop, tuquan
from hw_sim.camera import VirtualCamera
from hw_sim.control import request
from testkit.waiting import wait_until

TARGET_MB = 120.0
FPS = 5.0
WALK_S = 6.0
SETTLE_S = 3.0  # the camera learns its view (tamper) and the first frames go through


BREAKDOWN = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
steps = [("python", rss())]
def step(name):
    steps.append((name, rss()))
import gateway.service, tuquan.cli
step("the hub's modules")
import numpy
step("numpy")
import cv2
step("OpenCV")
import sensors.camera.cameras, hw_sim.camera
step("camera modules, simulator")
from sensors.detection.runtime import _interpreter_class
_interpreter_class()
step("LiteRT runtime")
from sensors.detection import load_detector
detector = load_detector()
step("pose-detection loaded, tensors allocated")
camera = hw_sim.camera.VirtualCamera("cam-1")
camera.open()
step("virtual camera drawn")
frame = camera.read()
detector.detect(frame.image)
step("a frame, one detection")
from sensors.camera.snapshots import crop_jpeg
crop_jpeg(frame.image, (0.0, 0.0, 120.0, 200.0))
step("a snapshot encoded")
print(json.dumps(steps))
"""


def breakdown() -> list[tuple[str, float]]:
    """RSS (MB) after each part of the camera path, loaded one by one in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", BREAKDOWN], capture_output=True, text=True, check=True
    ).stdout
    return [(name, round(mb, 1)) for name, mb in json.loads(out.splitlines()[-1])]


def render_ms(frames: int) -> dict[str, float]:
    """CPU ms per frame the virtual camera takes to draw a still street and one with a person."""
    clock = [0.0]
    cam = VirtualCamera("bench", clock=lambda: clock[0])
    cam.open()
    cam.read()  # the first read makes the noise patterns
    out = {}
    for case in ("still", "walking"):
        if case == "walking":
            cam.act("walk", seconds=frames / FPS)
        started = time.process_time()
        for i in range(frames):
            clock[0] = i / FPS
            cam.read()
        out[case] = round((time.process_time() - started) * 1000 / frames, 2)
    return out


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class Hub:
    """One ``tuquan run --sim`` process."""

    def __init__(self, broker: Any, data_dir: Path, config: Path | None) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [tuquan(), "run", "--sim", "--broker", broker.address]
        command += ["--data-dir", str(data_dir)]
        if config is not None:
            command += ["--config", str(config)]
        with (data_dir / "hub.log").open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(lambda: self.status().get("online"), 60, "hub online")

    def status(self) -> dict[str, Any]:
        try:
            return request(self.data_dir, {"cmd": "status"}, timeout=5)
        except (OSError, ValueError):
            return {}

    def camera(self) -> dict[str, Any]:
        cam: dict[str, Any] = self.status().get("cameras", {}).get("cam-1", {})
        return cam

    def cpu_over(self, seconds: float, walks: bool = False) -> float:
        """CPU seconds used per second over ``seconds``, with back-to-back walks or without."""
        start_cpu, start = cpu_s(self.proc.pid), time.monotonic()
        end = start + seconds
        while (now := time.monotonic()) < end:
            if walks:
                answer = request(
                    self.data_dir,
                    {"cmd": "camera", "name": "cam-1", "action": "walk", "seconds": WALK_S},
                )
                assert answer.get("ok"), answer
            time.sleep(min(WALK_S, end - now))
        return (cpu_s(self.proc.pid) - start_cpu) / (time.monotonic() - start)

    def stop(self) -> None:
        stop(self.proc)


def measure(broker: Any, root: Path, config: Path | None, window_s: float) -> dict[str, Any]:
    hub = Hub(broker, root / ("camera" if config is None else "baseline"), config)
    try:
        if config is None:
            wait_until(lambda: hub.camera().get("frames", 0) > 0, 60, "cam-1 running")
        time.sleep(SETTLE_S)
        result: dict[str, Any] = {"started_mb": memory_mb(hub.proc.pid)}
        result["still_cpu"] = hub.cpu_over(window_s)
        if config is None:
            before = hub.camera()
            result["walking_cpu"] = hub.cpu_over(window_s, walks=True)
            time.sleep(4.0)  # the last incident ends
            after = hub.camera()
            result["incidents"] = after["incidents"] - before["incidents"]
            result["frames"] = after["frames"]
            result["detector_frames"] = after["detector_frames"]
        result["end_mb"] = memory_mb(hub.proc.pid)
        return result
    finally:
        hub.stop()


def main(argv: list[str] | None = None) -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds = 1 if args.quick else 2
    window_s = 12.0 if args.quick else 30.0
    render = render_ms(25 if args.quick else 100)
    root = common.disk_dir(args.data_root, "bench-camera-rss-")
    base: list[dict[str, Any]] = []
    cam: list[dict[str, Any]] = []
    try:
        config = camera_free_config(root)
        if config is None:
            raise SystemExit("the default simulated hub has no camera")
        with common.mosquitto() as broker:
            for n in range(rounds):
                print(f"round {n + 1} of {rounds}", flush=True)
                base.append(measure(broker, root / f"r{n}", config, window_s))
                cam.append(measure(broker, root / f"r{n}", None, window_s))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def median(rows: list[dict[str, Any]], *keys: str) -> float:
        values = []
        for row in rows:
            value: Any = row
            for key in keys:
                value = value[key]
            values.append(float(value))
        return round(statistics.median(values), 4)

    mem_rows = []
    for label, rows in (("hub without cameras", base), ("hub with cam-1, model loaded", cam)):
        mem_rows.append(
            [
                label,
                median(rows, "started_mb", "rss"),
                median(rows, "started_mb", "uss"),
                max(r["end_mb"]["peak_rss"] for r in rows),
                median(rows, "end_mb", "rss"),
            ]
        )
    base_rss = mem_rows[0][1]
    for row in mem_rows:
        row.append(common.ratio(row[1], base_rss))
    common.table(
        "Memory (MB; RSS and USS once running, peak RSS = VmHWM over the whole run)",
        ["process", "RSS", "USS", "peak RSS", "RSS at end", "RSS / without"],
        mem_rows,
    )

    base_cpu = median(base, "still_cpu")
    still = median(cam, "still_cpu") - base_cpu
    walking = median(cam, "walking_cpu") - base_cpu
    per_core = {
        "still": round(1 / still, 1) if still > 0 else float("inf"),
        "walking": round(1 / walking, 1) if walking > 0 else float("inf"),
    }
    render_share = {k: v * FPS / 1000 for k, v in render.items()}
    pipeline = {
        "still": still - render_share["still"],
        "walking": walking - render_share["walking"],
    }
    cpu_rows = [
        ["hub without cameras", "", f"{100 * base_cpu:.1f} %", "", "", ""],
        [
            "cam-1, street still",
            f"{100 * still:.1f} %",
            f"{100 * median(cam, 'still_cpu'):.1f} %",
            f"{1000 * still / FPS:.1f} ms",
            f"{100 * pipeline['still']:.1f} %",
            per_core["still"],
        ],
        [
            "cam-1, people walking through all the time",
            f"{100 * walking:.1f} %",
            f"{100 * median(cam, 'walking_cpu'):.1f} %",
            f"{1000 * walking / FPS:.1f} ms",
            f"{100 * pipeline['walking']:.1f} %",
            per_core["walking"],
        ],
    ]
    common.table(
        f"CPU (share of one core over {window_s:.0f} s windows; camera at {FPS:.0f} fps, "
        f"{render['still']} / {render['walking']} ms a frame to draw still / walking)",
        ["case", "per camera", "whole hub", "per frame", "pipeline only", "cameras per core"],
        cpu_rows,
    )
    parts = breakdown()
    common.table(
        "Where the memory goes (one process, the camera path's parts loaded one by one)",
        ["part", "RSS after", "added"],
        [[name, mb, round(mb - parts[max(0, i - 1)][1], 1)] for i, (name, mb) in enumerate(parts)],
    )
    incidents = [r["incidents"] for r in cam]
    print(
        f"\nincidents while people walked through ({WALK_S:.0f} s each, back to back, so the "
        f"zone is never empty for long and one incident lasts the window): {incidents}"
    )
    peak = mem_rows[1][3]
    met = peak <= TARGET_MB
    print(
        f"target: hub with camera RSS <= {TARGET_MB:.0f} MB (peak {peak} MB): "
        + ("met" if met else "NOT met")
    )
    common.report(
        "camera_rss",
        args,
        {
            "rounds": rounds,
            "window_s": window_s,
            "fps": FPS,
            "without_cameras": base,
            "with_camera": cam,
            "render_ms": render,
            "breakdown_mb": dict(parts),
            "cpu_per_camera": {"still": round(still, 4), "walking": round(walking, 4)},
            "cameras_per_core": per_core,
            "peak_mb": peak,
            "target_mb": TARGET_MB,
            "met": met,
        },
    )


if __name__ == "__main__":
    main()
