"""A small disk to fill, for the tests of what a full disk does (root only, as CI runs)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for the test (root only, as CI runs the suite)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        _skip("mounting a small tmpfs to fill needs root (CI runs the suite as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        _skip(f"this machine refuses to mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the filesystem to the last byte; returns the filler file (delete it to free)."""
    filler = disk / "filler"
    chunk = bytes(64 * 1024)
    with filler.open("wb", buffering=0) as f:
        for size in (len(chunk), 4096, 512, 1):
            try:
                while True:
                    f.write(chunk[:size])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def _skip(reason: str) -> None:
    import pytest

    pytest.skip(reason)
