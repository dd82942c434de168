"""``[forward.dc09]``: where the alarms, troubles and restores go as SIA DC-09, and how.

```toml
[forward.dc09]
host = "arc.example.vn"           # the monitoring centre's DC-09 receiver (TCP)
port = 9000
receiver_number = "1"             # the R field, 1-6 hex digits (optional)
line_prefix = "1"                 # the L field, 1-6 hex digits (default "0")
key_env = "TUQUAN_DC09_KEY"       # AES key (or key_file): omit both to send unencrypted
key_encoding = "text"             # "text": 16/24/32 hex characters, each one byte of the key
                                  # (as panels and pysiaalarm take it); "hex": 32/48/64 hex
                                  # digits, two per byte
ack_timeout_s = 10                # how long an ACK may take
link_test_s = 60                  # a NULL link test after this long without traffic (0: never)
retry_max_s = 60                  # retries back off from 1 s, doubling up to this
priorities = [0, 1]               # alarms and troubles (2: detections, 3: telemetry)
default_account_prefix = ""       # a hub with no account below: prefix + digits from its id
link_test_account = "0000"        # the account the link tests name

[forward.dc09.accounts]           # hub id -> its account at the centre (3-16 hex digits)
cho-an-dong-gate-1 = "1234"

[forward.dc09.zones]              # zone name -> Contact ID zone number (0-999)
panic-1 = 1
```

The key is never in the file: ``key_env`` names an environment variable, ``key_file`` a file
whose whole content (trimmed) is the key.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from settings import Frozen
from settings.base import load_context
from settings.validators import Host, Id, existing_file, non_empty

_HEX = re.compile(r"[0-9A-Fa-f]+")
ACCOUNT_MAX = 16
PREFIX_MAX = 8  # leaves at least 8 hex digits (32 bits) of a hub's id in a derived account


def _hex_of(low: int, high: int, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not low <= len(value) <= high or (value and not _HEX.fullmatch(value)):
            raise ValueError(f"{value!r} is not {what}: use {low} to {high} hex digits (0-9, A-F)")
        return value.upper()

    return AfterValidator(check)


Account = Annotated[StrictStr, _hex_of(3, ACCOUNT_MAX, "a DC-09 account")]
AccountPrefix = Annotated[StrictStr, _hex_of(0, PREFIX_MAX, "an account prefix")]
RouteNumber = Annotated[StrictStr, _hex_of(1, 6, "a receiver number or line prefix")]
ZoneName = Annotated[StrictStr, Field(min_length=1, max_length=64)]
ZoneNumber = Annotated[StrictInt, Field(ge=0, le=999)]
EnvName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
KeyFile = Annotated[Path, AfterValidator(existing_file)]
Priority = Annotated[StrictInt, Field(ge=0, le=3)]
Timeout = Annotated[StrictInt | StrictFloat, Field(gt=0, le=300)]
KEY_CHARS = {"text": (16, 24, 32), "hex": (32, 48, 64)}


def _between_or_zero(low: float, high: float) -> AfterValidator:
    def check(value: float) -> float:
        if value != 0 and not low <= value <= high:
            raise ValueError(f"must be 0 (never) or {low:g} to {high:g} seconds, not {value!r}")
        return value

    return AfterValidator(check)


class Dc09Config(Frozen):
    """``[forward.dc09]`` (see the module)."""

    host: Host
    port: Annotated[StrictInt, Field(ge=1, le=65535)]
    receiver_number: RouteNumber | None = None
    line_prefix: RouteNumber = "0"
    accounts: dict[Id, Account] = Field(default_factory=dict)
    default_account_prefix: AccountPrefix = ""
    link_test_account: Account = "0000"
    zones: dict[ZoneName, ZoneNumber] = Field(default_factory=dict)
    priorities: Annotated[tuple[Priority, ...], AfterValidator(non_empty("priority"))] = (0, 1)
    connect_timeout_s: Timeout = 10
    ack_timeout_s: Timeout = 10
    link_test_s: Annotated[
        StrictInt | StrictFloat, Field(ge=0, le=24 * 3600), _between_or_zero(1, 24 * 3600)
    ] = 60
    retry_max_s: Annotated[StrictInt | StrictFloat, Field(ge=0.05, le=3600)] = 60
    key_env: EnvName | None = None
    key_file: KeyFile | None = None
    key_encoding: Literal["text", "hex"] = "text"
    key: SecretStr | None = Field(default=None, validate_default=True, repr=False)

    @field_validator("key", mode="before")
    @classmethod
    def _read_key(cls, value: object, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            raise ValueError("a key is not allowed in the config file: use key_env or key_file")
        text = _secret(info.data.get("key_env"), info.data.get("key_file"), info)
        if text is None:
            return None
        encoding = info.data.get("key_encoding", "text")
        sizes = KEY_CHARS.get(encoding, KEY_CHARS["text"])
        if len(text) not in sizes or not _HEX.fullmatch(text):
            bits = "128, 192 or 256 bits"
            raise ValueError(
                f"the AES key must be {sizes[0]}, {sizes[1]} or {sizes[2]} hex characters "
                f"({bits}, key_encoding = {encoding!r}), not {len(text)} characters"
                + ("" if _HEX.fullmatch(text) else " of which some are not hex")
            )
        return SecretStr(text)

    def key_bytes(self) -> bytes | None:
        """The AES key as the cipher takes it, or None when messages go unencrypted."""
        if self.key is None:
            return None
        text = self.key.get_secret_value()
        return bytes.fromhex(text) if self.key_encoding == "hex" else text.encode("ascii")

    def account_for(self, hub: str) -> str:
        """The hub's account: ``accounts[hub]``, else ``derived_account``."""
        return self.accounts.get(hub) or derived_account(self.default_account_prefix, hub)


def derived_account(prefix: str, hub: str) -> str:
    """``prefix`` then the first hex digits of SHA-256(hub), 16 digits in all: stable, and
    unlikely to collide (at least 32 bits of the hash)."""
    digest = hashlib.sha256(hub.encode("utf-8")).hexdigest().upper()
    return prefix + digest[: ACCOUNT_MAX - len(prefix)]


def _secret(env_name: str | None, file: Path | None, info: ValidationInfo) -> str | None:
    """The key from the environment variable ``env_name``, else from ``file``; errors never
    quote it."""
    if env_name is not None:
        value = load_context(info).env.get(env_name, "").strip()
        if not value:
            raise ValueError(f"the environment variable {env_name} (the AES key) is not set")
        return value
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the AES key from {file}: {exc}") from None
        if not text:
            raise ValueError(f"{file} is empty: it must hold the AES key")
        return text
    return None


class ForwardConfig(Frozen):
    """``[forward]``: where stored events are forwarded besides the console."""

    dc09: Dc09Config | None = None


__all__ = ["Dc09Config", "ForwardConfig", "derived_account"]
