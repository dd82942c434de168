"""Which detector sees a person far from the lens and never calls a cat one: both models on the
same set, stills and clips.

Stills (``tests/detection_scenes.py``): package photographs of people and person-free ones, at
full size, gray and dark (night), and pasted at 15 % and 8 % of a 640x480 gravel yard's
height. Each is scored whole-frame (the model on the 640x480 frame) and through the pipeline's
motion region (the square ``detection_regions`` cuts around the pasted photograph, as the
camera pipeline crops it). The figure is the top ``person`` score; for the SSD the top other
label too. Clips: each photograph at 15 % (and 8 %) of the frame height crossing the yard,
written as MJPG and played through the file source into a real ``CameraPipeline`` per camera
role; the figure is the number of ``person`` incidents. Goal: one per person clip, none for an
animal or an object. The baseline is each model's own figures in the same run: no time is
measured here except the median ``detect()`` per model, against BlazePose's in the same run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from sensors.camera.geometry import detection_regions
from sensors.detection import load_detector
from settings.cameras import CameraConfig, MotionConfig, TamperConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import detection_scenes as scenes  # noqa: E402

MODELS = ("pose-detection", "ssd-mobilenet-v2")
ROLES = ("doorway", "gate")


def top(found: Any, person: bool) -> tuple[str, float]:
    picked = [d for d in found if (d.label == "person") == person]
    if not picked:
        return ("-", 0.0)
    best = max(picked, key=lambda d: d.score)
    return (best.label, round(float(best.score), 2))


def region_of(box: tuple[float, ...]) -> tuple[int, int, int, int]:
    motion = MotionConfig()
    (x0, y0, x1, y1) = detection_regions(
        [tuple(box)],  # type: ignore[list-item]
        width=scenes.WIDTH,
        height=scenes.HEIGHT,
        margin=motion.margin,
        min_region=motion.min_region,
        max_regions=motion.max_regions,
    )[0]
    return int(x0), int(y0), int(x1), int(y1)


def stills(detectors: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for subject in (*scenes.PEOPLE, *scenes.PERSON_FREE):
        image = scenes.photo(subject)
        for variant in scenes.VARIANTS:
            if variant in ("15 %", "8 %"):
                share = 0.15 if variant == "15 %" else 0.08
                frame, box = scenes.pasted(image, share)
                x0, y0, x1, y1 = region_of(box)
                crop = frame[y0:y1, x0:x1].copy()
            else:
                frame = scenes.VARIANTS[variant](image)
                crop = frame
            row: dict[str, Any] = {"subject": subject, "variant": variant}
            for name, det in detectors.items():
                whole = det.detect(frame)
                region = det.detect(crop)
                row[name] = {
                    "whole": top(whole, True)[1],
                    "region": top(region, True)[1],
                    "other": top(region, False),
                }
            rows.append(row)
    return rows


def camera(path: Path, role: str) -> CameraConfig:
    return CameraConfig(
        name="gate-1",
        source=str(path),
        kind="file",
        role=role,
        detect_fps=5.0,
        tamper=TamperConfig(enabled=False),
    )


def clips(detectors: dict[str, Any], shares: tuple[float, ...]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuquan-detect-eval-") as tmp:
        for subject in (*scenes.PEOPLE, *scenes.ANIMALS_AND_OBJECTS):
            for share in shares:
                path = Path(tmp) / f"{subject}-{round(share * 100)}.avi"
                scenes.write_clip(path, scenes.crossing(scenes.photo(subject), share).frames)
                row: dict[str, Any] = {"subject": subject, "share": share}
                for role in ROLES:
                    settings = camera(path, role)
                    detector = detectors[settings.model_for(None)]
                    row[role] = len(scenes.play(path, settings, detector))
                rows.append(row)
    return rows


def speed(detectors: dict[str, Any], rounds: int) -> dict[str, float]:
    frame = scenes.pasted(scenes.photo("astronaut"), 0.15)[0]
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(rounds):
        for name, det in detectors.items():
            t = time.perf_counter()
            det.detect(frame)
            times[name].append(time.perf_counter() - t)
    return {name: round(statistics.median(v) * 1000, 2) for name, v in times.items()}


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    # Low, so the tables show the scores under the cameras' own threshold too.
    detectors = {name: load_detector(name, threads=2, min_score=0.05) for name in MODELS}
    still_rows = stills(detectors)
    common.table(
        "stills: top person score, whole frame / motion region (SSD: top other label)",
        [
            "subject",
            "variant",
            "BlazePose whole",
            "BlazePose region",
            "SSD whole",
            "SSD region",
            "SSD other",
        ],  # fmt: skip
        [
            [
                r["subject"],
                r["variant"],
                r[MODELS[0]]["whole"],
                r[MODELS[0]]["region"],
                r[MODELS[1]]["whole"],
                r[MODELS[1]]["region"],
                f"{r[MODELS[1]]['other'][0]} {r[MODELS[1]]['other'][1]}",
            ]  # fmt: skip
            for r in still_rows
        ],
    )
    shares = (0.15,) if args.quick else (0.15, 0.08)
    clip_rows = clips(detectors, shares)
    common.table(
        "clips: person incidents (goal: 1 for a person, 0 for an animal or object)",
        [
            "subject",
            "height",
            *(f"role {r} ({camera(Path('x'), r).model_for(None)})" for r in ROLES),
        ],
        [
            [r["subject"], f"{round(r['share'] * 100)} %", *(r[role] for role in ROLES)]
            for r in clip_rows
        ],  # fmt: skip
    )
    ms = speed(detectors, 10 if args.quick else 40)
    base = ms[MODELS[0]]
    common.table(
        "detect() on a 640x480 frame, median ms (same run, interleaved)",
        ["model", "ms", "x BlazePose"],
        [[name, v, common.ratio(v, base)] for name, v in ms.items()],
    )
    goal = {
        role: all(
            (r[role] == 1) if r["subject"] in scenes.PEOPLE else (r[role] == 0) for r in clip_rows
        )
        for role in ROLES
    }
    print(f"goal met (one incident per person clip, none otherwise): {goal}")
    common.report(
        "detect_eval",
        args,
        {"stills": still_rows, "clips": clip_rows, "detect_ms": ms, "goal_met": goal},
    )


if __name__ == "__main__":
    main()
