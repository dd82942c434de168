"""``tuquan detect IMAGE... [--model NAME] [--threads N] [--min-score S] [--models-dir DIR]``.

Prints one JSON line per image, ``{"image": PATH, "detections": [{"label", "score", "box"}]}``
(box: x_min, y_min, x_max, y_max in the picture's pixels), or ``{"image": PATH, "error": ...}``
for a picture it cannot read, and goes on with the others. Exit status: 0, or 1 if a picture
could not be read, or 2 if the model cannot be loaded.

The detector (numpy, the inference runtime) is imported by the command, not by the parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_detect(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    detect = sub.add_parser("detect", help="find people (or objects) in picture files")
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, ... files")
    detect.add_argument("--model", default="pose-detection", help="model name (tuquan model list)")
    detect.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    detect.add_argument(
        "--min-score", type=float, help="drop detections below this score (default: the model's)"
    )
    detect.add_argument("--models-dir", help="where model files are (default: models/)")
    detect.set_defaults(func=cmd_detect)


def cmd_detect(args: argparse.Namespace) -> int:
    from sensors.detection import ModelError, load_detector
    from sensors.detection.images import read_image

    try:
        detector = load_detector(
            args.model,
            threads=args.threads,
            models_dir=Path(args.models_dir) if args.models_dir else None,
            min_score=args.min_score,
        )
    except ModelError as exc:
        print(f"tuquan detect: {exc}", file=sys.stderr)
        return 2
    failed = False
    for path in args.images:
        line: dict[str, Any] = {"image": path}
        try:
            found = detector.detect(read_image(Path(path)))
        except (OSError, ValueError) as exc:  # FrameError is a ValueError
            line["error"] = str(exc)
            failed = True
        else:
            line["detections"] = [
                {"label": d.label, "score": d.score, "box": [round(v, 1) for v in d.box]}
                for d in found
            ]
        print(json.dumps(line), flush=True)
    return 1 if failed else 0
