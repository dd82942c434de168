"""The simulated hubs' signing keys: one Ed25519 key per hub, made for the run and kept in
memory (a fleet's keys are test keys), and the list of their public keys for enrolment.

``write_public_keys`` writes one ``HUB KEY`` line per hub, the two arguments
``tuquan keys trust HUB KEY`` takes at a receiver; the command line can also enrol them
straight into a receiver's store (``tuquan fleet --enrol``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from core.files import write_durably
from core.signing import PublicKey, SigningKey


def make_keys(hubs: Iterable[str]) -> dict[str, SigningKey]:
    return {hub: SigningKey.generate() for hub in hubs}


def write_public_keys(path: Path, keys: Iterable[tuple[str, PublicKey]]) -> int:
    """Write ``HUB KEY`` lines (durably); how many."""
    lines = [f"{hub} {key.text}\n" for hub, key in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, "".join(lines).encode())
    os.chmod(path, 0o644)
    return len(lines)


def read_public_key(path: Path) -> PublicKey:
    """A commune's public key from a file: its first line, ``ed25519:<base64url>`` (what
    ``tuquan keys show --receiver`` prints first, or a hub's ``commune.pub``). Raises
    KeyFileError (naming the file) or OSError."""
    from core.signing import KeyFileError

    try:
        text = path.read_text(encoding="ascii", errors="strict")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a public key text (not ASCII)") from None
    first = text.strip().splitlines()[0] if text.strip() else ""
    try:
        return PublicKey.from_text(first)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
