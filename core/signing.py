"""Ed25519 signatures over canonical JSON: what proves that an event came from its hub, a receipt
and a command from the commune, a command's result from the hub that ran it.

A signed object is a JSON object with two more members, ``kid`` (the signer's key fingerprint)
and ``sig`` (base64url, no padding, of the 64-byte Ed25519 signature). The signature is over

    b"tuquan/v1 " + purpose + b"\\n" + canonical JSON of the object without "sig"

where the canonical JSON is Matrix's (the ``canonicaljson`` package): keys sorted by code point,
no whitespace, UTF-8 without escapes beyond those JSON requires, no NaN or Infinity; integers as
written, other numbers as Python's shortest round-trip form. The purpose ("event", "receipt",
"command", "cmd_result", "health") keeps a signature made for one use from being accepted for
another. ``kid`` is inside the signed bytes, so it cannot be swapped.

Keys come from the ``cryptography`` package; nothing here implements cryptography itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import canonicaljson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import TuquanError

PURPOSES = ("event", "receipt", "command", "cmd_result", "health")
PUBLIC_PREFIX = "ed25519:"


class KeyFileError(TuquanError):
    """A key file or a public key text that cannot be used; says which and why."""


def canonical(obj: Any) -> bytes:
    """The canonical JSON bytes of ``obj`` (raises ValueError on NaN/Infinity)."""
    return canonicaljson.encode_canonical_json(obj)


def signed_bytes(purpose: str, obj: Mapping[str, Any]) -> bytes:
    """What is signed for ``obj`` (its "sig" member left out)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown signature purpose {purpose!r}")
    body = {k: v for k, v in obj.items() if k != "sig"}
    return b"tuquan/v1 " + purpose.encode() + b"\n" + canonical(body)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PublicKey:
    """An Ed25519 public key, its text form (``ed25519:<base64url>``) and its fingerprint."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise KeyFileError("an Ed25519 public key is 32 bytes")
        self.raw = raw
        self._key = Ed25519PublicKey.from_public_bytes(raw)

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        body = text.strip()
        if body.startswith(PUBLIC_PREFIX):
            body = body[len(PUBLIC_PREFIX) :]
        try:
            raw = _unb64(body)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"not a public key (expected {PUBLIC_PREFIX}<base64url>)") from None
        if len(raw) != 32:
            raise KeyFileError(f"not a public key: {len(raw)} bytes, an Ed25519 key has 32")
        return cls(raw)

    @property
    def text(self) -> str:
        return PUBLIC_PREFIX + _b64(self.raw)

    @property
    def fingerprint(self) -> str:
        """16 characters of base32 in groups of four, to read out over the phone."""
        digest = base64.b32encode(hashlib.sha256(self.raw).digest()[:10]).decode()
        return "-".join(digest[i : i + 4] for i in range(0, 16, 4))

    def verifies(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.fingerprint})"


class SigningKey:
    """An Ed25519 private key, kept in a PEM file readable by its owner only (0600)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public = PublicKey(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the key file ({exc.strerror})") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[SigningKey, bool]:
        """The key at ``path``, made there first if there is none; (key, made now)."""
        if path.exists():
            return cls.load(path), False
        key = cls.generate()
        key.save(path)
        return key, True

    def save(self, path: Path, *, replace: bool = False) -> None:
        """Write the key (0600, durably); refuses to overwrite unless ``replace``."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.exists() and not replace:
            tmp.unlink()
            raise KeyFileError(f"{path}: a key is already there")
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def sign_bytes(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def sign(self, purpose: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """``obj`` with ``kid`` and ``sig`` set."""
        body = {k: v for k, v in obj.items() if k != "sig"}
        body["kid"] = self.public.fingerprint
        body["sig"] = _b64(self.sign_bytes(signed_bytes(purpose, body)))
        return body


def signature_of(obj: Mapping[str, Any]) -> bytes | None:
    """The decoded ``sig`` member, or None if it is missing or not 64 bytes of base64url."""
    sig = obj.get("sig")
    if not isinstance(sig, str) or len(sig) != 86:
        return None
    try:
        raw = _unb64(sig)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


def verify(
    purpose: str,
    obj: Mapping[str, Any],
    key_for: Callable[[str], PublicKey | None] | PublicKey,
) -> bool:
    """Whether ``obj`` carries a valid signature for ``purpose``: by the one key given, or by
    the key ``key_for(obj["kid"])`` returns. Never raises on hostile input."""
    signature = signature_of(obj)
    kid = obj.get("kid")
    if signature is None or not isinstance(kid, str):
        return False
    key = key_for if isinstance(key_for, PublicKey) else key_for(kid)
    if key is None or key.fingerprint != kid:
        return False
    try:
        data = signed_bytes(purpose, obj)
    except (ValueError, TypeError, RecursionError):
        return False
    return key.verifies(signature, data)
