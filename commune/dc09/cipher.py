"""AES-CBC as DC-09 uses it: a key of 128, 192 or 256 bits, an initialisation vector of zeros,
and the text padded *in front* to a whole number of 16-byte blocks.

An encrypted message carries ``[`` followed by the hex of AES(``<pad>|<data>]<timestamp>``):
``pad`` is 1 to 16 random letters and digits (never ``|``, ``[`` or ``]``), so the receiver
finds the data after the first ``|``. The fixed IV is the standard's; the random pad and the
timestamp inside are what keep two encryptions of the same event apart.

CBC has no integrity check: a wrong key does not fail, it yields noise. Whoever decrypts must
check the text's shape (``replies`` does).
"""

from __future__ import annotations

import secrets
import string

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
KEY_SIZES = (16, 24, 32)
IV = bytes(BLOCK)
PAD_CHARS = string.ascii_letters + string.digits


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    if len(key) not in KEY_SIZES:
        raise ValueError(f"an AES key is 16, 24 or 32 bytes, not {len(key)}")
    return Cipher(algorithms.AES(key), modes.CBC(IV))


def pad(text: str) -> str:
    """``<pad>|text`` with 1 to 16 random pad characters, a multiple of 16 long."""
    size = BLOCK - (len(text) + 1) % BLOCK  # 1..16
    return "".join(secrets.choice(PAD_CHARS) for _ in range(size)) + "|" + text


def encrypt(key: bytes, text: str) -> str:
    """Upper-case hex of AES-CBC(``pad(text)``)."""
    plain = pad(text).encode("ascii")
    encryptor = _cipher(key).encryptor()
    return (encryptor.update(plain) + encryptor.finalize()).hex().upper()


def decrypt(key: bytes, hex_text: str) -> str | None:
    """The text inside an encrypted block (still padded), or None when ``hex_text`` is not hex
    of whole blocks or what it decrypts to is not ASCII (a wrong key, most of the time)."""
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return None
    if not data or len(data) % BLOCK:
        return None
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    try:
        return plain.decode("ascii")
    except UnicodeDecodeError:
        return None
