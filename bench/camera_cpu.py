"""CPU time per camera at 5 fps on a mostly static clip: motion-gated against ungated, same run.

Clip: a generated street at 640x480 with sensor noise, in which a real photographed person
(scikit-image's astronaut.png) walks through for a few seconds of the clip; the rest is still.
The same frames, already in memory (decoding a camera's stream costs the same either way and
is not counted), run through the real pipeline (``sensors.camera.pipeline``) with the real
detector (``sensors.detection.load_detector()``, 2 threads), twice: with motion gating (the
default) and with ``motion.enabled = false`` (the detector on every whole frame; the baseline).
Measured: process CPU time (``time.process_time``: every thread, the detector's too) per second
of video, i.e. the share of one core a camera costs at 5 fps. Target: gated <= 0.5 x ungated.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from core.events import Event
from sensors.camera.pipeline import CameraPipeline
from sensors.camera.sources import EndOfStream, Frame
from settings.cameras import CameraConfig, MotionConfig, ZoneConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from camera_scenes import FakeClock, noisy, paste, person, street  # noqa: E402

TARGET = 0.5
FPS = 5.0
WIDTH, HEIGHT = 640, 480


class Frames:
    """An on-demand source over frames in memory (as the simulator's virtual camera is)."""

    live = False
    description = "bench clip"

    def __init__(self, frames: list[np.ndarray], clock: FakeClock) -> None:
        self.frames, self.clock, self.i = frames, clock, 0

    def open(self) -> None:
        self.i = 0

    def read(self) -> Frame | None:
        if self.i >= len(self.frames):
            raise EndOfStream("end of the clip")
        self.i += 1
        return Frame(image=self.frames[self.i - 1], ts=self.clock())

    def close(self) -> None:
        pass


def clip(seconds: float, walk_s: float) -> list[np.ndarray]:
    """``seconds`` of 5 fps video; the person walks across during ``walk_s`` in the middle."""
    rng = np.random.default_rng(4)
    bg = street(WIDTH, HEIGHT)
    sprite = person(HEIGHT // 2)
    n, steps = round(seconds * FPS), round(walk_s * FPS)
    start = (n - steps) // 2
    frames = []
    for i in range(n):
        f = bg.copy()
        if start <= i < start + steps:
            x = round(-sprite.shape[1] / 2 + WIDTH * (i - start) / max(1, steps - 1))
            paste(f, sprite, x, HEIGHT - sprite.shape[0] - HEIGHT // 20)
        frames.append(noisy(f, rng))
    return frames


def run(frames: list[np.ndarray], detector: Any, gated: bool) -> dict[str, Any]:
    clock = FakeClock()
    events: list[Event] = []
    settings = CameraConfig(
        name="bench",
        source="virtual",
        detect_fps=FPS,
        zones=(ZoneConfig(name="yard"),),
        motion=MotionConfig(enabled=gated),
    )
    pipe = CameraPipeline(
        settings,
        emit=events.append,
        detector=detector,
        source=Frames(frames, clock),
        clock=clock,
        sleep=clock.sleep,
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    pipe.run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    video_s = len(frames) / FPS
    return {
        "frames": pipe.stats.frames,
        "detector_frames": pipe.stats.detector_frames,
        "detector_calls": pipe.stats.detector_calls,
        "incidents": sum(1 for e in events if e.kind == "person" and e.qualifier == "E"),
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_per_video_s": round(cpu / video_s, 4),
        "ms_per_frame": round(1000 * cpu / max(1, pipe.stats.frames), 2),
    }


def main(argv: list[str] | None = None) -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    from sensors.detection import load_detector

    seconds, walk_s, rounds = (20.0, 3.0, 1) if args.quick else (60.0, 4.0, 3)
    frames = clip(seconds, walk_s)
    detector = load_detector(threads=2)
    for f in frames[:5]:  # warm the interpreter up (first calls allocate)
        detector.detect(f)

    results: dict[str, list[dict[str, Any]]] = {"gated": [], "ungated": []}
    for _ in range(rounds):  # interleaved, so drifts of the machine hit both alike
        results["ungated"].append(run(frames, detector, gated=False))
        results["gated"].append(run(frames, detector, gated=True))

    def median(mode: str, key: str) -> float:
        return float(statistics.median(r[key] for r in results[mode]))

    gated, ungated = results["gated"][-1], results["ungated"][-1]
    g_cpu, u_cpu = median("gated", "cpu_per_video_s"), median("ungated", "cpu_per_video_s")
    ratio = common.ratio(g_cpu, u_cpu)
    rows = [
        [
            "ungated (detector on every frame)",
            ungated["frames"],
            ungated["detector_frames"],
            round(100 * u_cpu, 1),
            median("ungated", "ms_per_frame"),
            ungated["incidents"],
            1.0,
        ],
        [
            "motion-gated (default)",
            gated["frames"],
            gated["detector_frames"],
            round(100 * g_cpu, 1),
            median("gated", "ms_per_frame"),
            gated["incidents"],
            ratio,
        ],
    ]
    common.table(
        f"One camera, {WIDTH}x{HEIGHT} at {FPS:g} fps, {seconds:g} s clip, a person in view "
        f"{walk_s:g} s (median of {rounds})",
        [
            "pipeline",
            "frames",
            "detector frames",
            "CPU % of a core",
            "CPU ms/frame",
            "incidents",
            "CPU / ungated",
        ],
        rows,
    )
    met = ratio <= TARGET
    print(f"\ntarget: gated CPU <= {TARGET} x ungated ({ratio}): {'met' if met else 'NOT met'}")
    common.report(
        "camera_cpu",
        args,
        {
            "width": WIDTH,
            "height": HEIGHT,
            "fps": FPS,
            "clip_s": seconds,
            "person_s": walk_s,
            "rounds": rounds,
            "detector": detector.name,
            "gated": results["gated"],
            "ungated": results["ungated"],
            "gated_cpu_per_video_s": g_cpu,
            "ungated_cpu_per_video_s": u_cpu,
            "ratio": ratio,
            "target": TARGET,
            "met": met,
        },
    )


if __name__ == "__main__":
    main()
