"""The hub's keys: its own signing key, and the commune's public key it trusts.

Both live in the hub's data dir: ``hub.key`` (Ed25519, PEM, 0600), made on first start or by
``tuquan keys init``; ``commune.pub`` (``ed25519:<base64url>``), written by
``tuquan keys trust --commune KEY`` when the installer enrols the hub. With a commune key, the hub
accepts only receipts and commands that the commune signed; without one (not enrolled yet) it
accepts unsigned ones, as before, and says so once at start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from core.files import write_durably
from core.signing import KeyFileError, PublicKey, SigningKey

log = logging.getLogger(__name__)

HUB_KEY_FILE = "hub.key"
COMMUNE_KEY_FILE = "commune.pub"


class HubKeys:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.signing, made = SigningKey.load_or_create(data_dir / HUB_KEY_FILE)
        if made:
            log.warning(
                "made this hub's signing key %s (fingerprint %s): enrol it at the commune"
                " receiver with `tuquan keys trust HUB %s`",
                data_dir / HUB_KEY_FILE,
                self.signing.public.fingerprint,
                self.signing.public.text,
            )
        self.commune = read_commune_key(data_dir)

    @property
    def enrolled(self) -> bool:
        """A commune key is configured: unsigned receipts and commands are refused."""
        return self.commune is not None


def read_commune_key(data_dir: Path) -> PublicKey | None:
    path = data_dir / COMMUNE_KEY_FILE
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read the commune's key ({exc})") from None
    try:
        return PublicKey.from_text(text)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def trust_commune(data_dir: Path, key: PublicKey) -> None:
    write_durably(data_dir / COMMUNE_KEY_FILE, (key.text + "\n").encode())


def forget_commune(data_dir: Path) -> bool:
    try:
        (data_dir / COMMUNE_KEY_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def load_hub_keys(data_dir: Path) -> HubKeys | None:
    """The hub's key (made now on a first start) and the commune's. A key file that cannot be
    read or written does not stop the hub: the siren still sounds, events go out unsigned,
    commands are refused, and the log says why."""
    try:
        return HubKeys(data_dir)
    except (KeyFileError, OSError) as exc:
        log.error("the hub's keys cannot be used (%s): its events go out unsigned", exc)
        return None
