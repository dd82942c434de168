"""Detector overhead: ``detect()`` on one frame against a bare ``Interpreter.invoke()``, same run.

Detector: ``sensors.detection.load_detector()`` (the default ``pose-detection`` model, 2 threads
unless ``--threads``) on a real photograph of a person (scikit-image's astronaut.png, pasted into
a grey frame) at three frame sizes: 224x224 (the model's input: no scaling), 640x360 (a camera's
sub-stream) and 1280x720 (a main stream). ``detect()`` includes everything a camera pays:
letterbox scaling and normalisation, setting the input, inference, reading the outputs, anchor
decoding, weighted NMS and the mapping back to frame pixels. Baseline: a bare LiteRT
``Interpreter`` of the same model file with the same threads, its input (the 640x360 frame,
prepared as ``detect()`` prepares it) set once, timing ``invoke()`` alone. The calls interleave
one by one (the machine is shared and noisy) and the figures are medians. Target: detect <=
1.2x bare on the 640x360 frame.
Also: the detector's own work timed alone (preprocessing; decoding with NMS), and what loading
costs (the sha256 check of the file, then the whole ``load_detector``).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from functools import partial
from typing import Any

import numpy as np
from PIL import Image
from skimage import data

from bench import common
from models.manifest import default_models_dir, get_spec
from sensors.detection import load_detector

TARGET = 1.2
TARGET_SIZE = (640, 360)
SIZES = [(224, 224), TARGET_SIZE, (1280, 720)]


def frame_of(width: int, height: int) -> np.ndarray:
    """A grey frame with the astronaut (a real person) filling most of its height."""
    frame = np.full((height, width, 3), 110, np.uint8)
    side = int(height * 0.8)
    person = np.asarray(Image.fromarray(data.astronaut()).resize((side, side)))
    top, left = (height - side) // 2, (width - side) // 2
    frame[top : top + side, left : left + side] = person
    return frame


def bare_interpreter(model: bytes, threads: int, tensor: np.ndarray) -> Any:
    """A LiteRT interpreter of ``model`` with ``tensor`` set as its input, ready to invoke."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    return interpreter


def timed_ms(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    args = p.parse_args(argv)
    n = 150 if args.quick else 1000

    spec = get_spec("pose-detection")
    model = spec.path(default_models_dir()).read_bytes()
    hash_ms = statistics.median(timed_ms(lambda: hashlib.sha256(model).hexdigest(), 20))
    load_ms = statistics.median(
        timed_ms(lambda: load_detector(threads=args.threads), 3 if args.quick else 5)
    )

    detector = load_detector(threads=args.threads)
    frames = {size: frame_of(*size) for size in SIZES}
    # the bare interpreter's input: the same picture, as detect() prepares it
    bare = bare_interpreter(model, args.threads, detector.preprocess(frames[TARGET_SIZE])[0])
    for frame in frames.values():  # warm up: XNNPACK packs weights on the first invoke
        for _ in range(5):
            detector.detect(frame)
            bare.invoke()
    found = {size: detector.detect(frame) for size, frame in frames.items()}

    # Interleaved call by call (bare, then each frame size, the order turning every time),
    # so a neighbour's burst of CPU use falls on both sides alike.
    bare_all: list[float] = []
    det_all: dict[tuple[int, int], list[float]] = {size: [] for size in SIZES}
    cases: list[Any] = [None, *SIZES]
    for i in range(n):
        for case in cases[i % len(cases) :] + cases[: i % len(cases)]:
            if case is None:
                bare_all += timed_ms(bare.invoke, 1)
            else:
                det_all[case] += timed_ms(partial(detector.detect, frames[case]), 1)

    # The detector's own work, timed alone: what detect() adds around the inference.
    own: dict[tuple[int, int], dict[str, float]] = {}
    for size, frame in frames.items():
        tensor, placement = detector.preprocess(frame)
        outputs = detector.runtime.run(tensor)
        prep = statistics.median(timed_ms(partial(detector.preprocess, frame), 200))
        decode = statistics.median(
            timed_ms(partial(detector.decode, outputs, placement, detector.min_score), 200)
        )
        own[size] = {"preprocess_ms": round(prep, 3), "decode_ms": round(decode, 3)}

    bare_med = statistics.median(bare_all)
    rows: list[list[Any]] = [
        ["bare Interpreter.invoke()", bare_med, common.percentile(bare_all, 95), 1.0, "", "", ""]
    ]
    results: dict[str, Any] = {}
    for size in SIZES:
        med = statistics.median(det_all[size])
        name = f"{size[0]}x{size[1]}"
        people = [d for d in found[size] if d.label == "person"]
        rows.append(
            [
                f"detect() on {name}",
                med,
                common.percentile(det_all[size], 95),
                common.ratio(med, bare_med),
                own[size]["preprocess_ms"],
                own[size]["decode_ms"],
                len(people),
            ]
        )
        results[name] = {
            "ms": round(med, 3),
            "p95_ms": round(common.percentile(det_all[size], 95), 3),
            "ratio": common.ratio(med, bare_med),
            "people": len(people),
            **own[size],
        }
    common.table(
        f"pose-detection, {args.threads} thread(s), {detector.runtime.name}: "
        f"ms per frame (median of {n} calls each, interleaved call by call)",
        ["case", "median ms", "p95 ms", "ratio", "preprocess ms", "decode ms", "people"],
        rows,
    )
    target_ratio = results[f"{TARGET_SIZE[0]}x{TARGET_SIZE[1]}"]["ratio"]
    met = target_ratio <= TARGET
    print(
        f"\ntarget: detect <= {TARGET}x bare on {TARGET_SIZE[0]}x{TARGET_SIZE[1]}: "
        f"{'met' if met else 'NOT met'} ({target_ratio}x)"
    )
    print(
        f"loading: sha256 of the {len(model) / 1e6:.1f} MB file {hash_ms:.1f} ms; "
        f"load_detector() {load_ms:.0f} ms in all"
    )
    common.report(
        "detect",
        args,
        {
            "model": spec.name,
            "runtime": detector.runtime.name,
            "threads": args.threads,
            "calls": n,
            "bare_ms": round(bare_med, 3),
            "bare_p95_ms": round(common.percentile(bare_all, 95), 3),
            "frames": results,
            "target_ratio": TARGET,
            "target_frame": f"{TARGET_SIZE[0]}x{TARGET_SIZE[1]}",
            "ratio": target_ratio,
            "met": met,
            "sha256_ms": round(hash_ms, 2),
            "load_ms": round(load_ms, 1),
        },
    )


if __name__ == "__main__":
    main()
