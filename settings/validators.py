"""Small named validators on single values, and the annotated types the tables are built from.

Each raises ``ValueError`` with a message that says what is allowed, in words; the error
formatter puts the key's path in front of it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field, StrictInt, StrictStr, ValidationInfo

from settings.base import load_context

_TOPIC_LEVEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_DEVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")

Num = TypeVar("Num", int, float)


def mqtt_topic_level(value: str) -> str:
    """An id that is used as one MQTT topic level (hub id, commune)."""
    if not _TOPIC_LEVEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid id: use 1 to 63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit (it is an MQTT topic level)"
        )
    return value


def device_name(value: str) -> str:
    """The name of an input or output: used in logs, commands and the simulator."""
    if not _DEVICE_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def hostname_or_ip(value: str) -> str:
    """A DNS hostname or an IPv4/IPv6 literal (no port, no brackets, no URL)."""
    if not value:
        raise ValueError("must not be empty")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if value.startswith("[") or "://" in value or value.count(":") == 1:
        raise ValueError(
            f"{value!r} is not a hostname or IP address: write a bare name or address "
            "(no brackets, no scheme) and put the port in broker.port"
        )
    labels = (value[:-1] if value.endswith(".") else value).split(".")
    if (
        len(value) > 253
        or not all(_HOST_LABEL.fullmatch(label) for label in labels)
        or all(label.isdigit() for label in labels)
    ):
        raise ValueError(f"{value!r} is not a valid hostname or IP address")
    return value


def gpio_pin(value: int) -> int:
    """A Raspberry Pi header GPIO in BCM numbering."""
    if not 0 <= value <= 27:
        raise ValueError(f"GPIO {value} does not exist: use a BCM GPIO number from 0 to 27")
    return value


def serial_port(value: str) -> str:
    """A serial device path such as ``/dev/ttyUSB0`` or ``/dev/serial/by-id/usb-...``.

    It need not exist when the file is checked: an adapter may be plugged in later, and the
    hub keeps trying to open it.
    """
    if not value:
        raise ValueError("must not be empty")
    if not value.startswith("/") or "\x00" in value:
        raise ValueError(
            f"{value!r} is not a device path: write the absolute path of the serial device, "
            "e.g. /dev/ttyUSB0 or /dev/serial/by-id/usb-..."
        )
    return value


def node_id(value: int) -> int:
    """A sensor node's 16-bit id as flashed into it (0 and 0xFFFF are reserved by the protocol)."""
    if not 1 <= value <= 0xFFFE:
        raise ValueError(
            f"node id {value} is out of range: use 1 to 65534 (0 and 65535 are reserved)"
        )
    return value


def _absolute(value: Path, info: ValidationInfo) -> Path:
    """``value`` made absolute; a relative path starts at the config file's folder."""
    path = value.expanduser()
    if not path.is_absolute():
        path = load_context(info).base_dir / path
    return Path(os.path.normpath(path))


def existing_file(value: Path, info: ValidationInfo) -> Path:
    """A readable file; a relative path starts at the config file's folder. Returns it absolute."""
    path = _absolute(value, info)
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return path


def existing_dir(value: Path, info: ValidationInfo) -> Path:
    """A folder; a relative path starts at the config file's folder. Returns it absolute."""
    path = _absolute(value, info)
    if not path.is_dir():
        raise ValueError(f"not a folder: {path}" if path.exists() else f"folder not found: {path}")
    return path


def read_password_file(path: Path) -> str:
    """The password from a credentials file; errors never quote the file's content."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages name the position, never the text; keep only the position.
        where = re.search(r"\(at (line \d+, column \d+|end of document)\)", str(exc))
        raise ValueError(
            f"{path} is not valid TOML" + (f" ({where.group(1)})" if where else "")
        ) from None
    unknown = sorted(set(data) - {"password"})
    if unknown:
        raise ValueError(f"{path} has unknown key(s) {', '.join(unknown)}: only password is read")
    password = data.get("password")
    if not isinstance(password, str) or not password:
        raise ValueError(f'{path} must contain a non-empty string: password = "..."')
    return password


def credentials_file(value: Path, info: ValidationInfo) -> Path:
    """An existing TOML file holding ``password = "..."``."""
    path = existing_file(value, info)
    read_password_file(path)
    return path


def non_empty(what: str) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """An array that must name at least one ``what`` ("event kind", "label")."""

    def check(value: tuple[Any, ...]) -> tuple[Any, ...]:
        if not value:
            raise ValueError(f"must name at least one {what}")
        return value

    return check


def spoken_list(choices: Sequence[object]) -> str:
    """``'a', 'b' or 'c'``: the words pydantic uses for a Literal's choices."""
    shown = [repr(choice) for choice in choices]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """A string that is one of ``choices`` (said as a ``Literal`` would say it)."""

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {spoken_list(choices)}")
        return value

    return check


def between(
    low: float, high: float, unit: str = "", *, above_low: bool = False, below_high: bool = False
) -> AfterValidator:
    """A number from ``low`` to ``high`` (``above_low``/``below_high``: the bound excluded)."""
    low_words = f"more than {low:g}" if above_low else ""
    high_words = f"less than {high:g}" if below_high else f"at most {high:g}"
    if low_words:
        allowed = f"{low_words} and {high_words}{unit}"
    elif below_high:
        allowed = f"at least {low:g} and {high_words}{unit}"
    else:
        allowed = f"between {low:g} and {high:g}{unit}"

    def check(value: Num) -> Num:
        too_low = value <= low if above_low else value < low
        too_high = value >= high if below_high else value > high
        if too_low or too_high:
            raise ValueError(f"must be {allowed}, not {value:g}")
        return value

    return AfterValidator(check)


Id = Annotated[StrictStr, AfterValidator(mqtt_topic_level)]
Name = Annotated[StrictStr, AfterValidator(device_name)]
Host = Annotated[StrictStr, AfterValidator(hostname_or_ip)]
Pin = Annotated[StrictInt, AfterValidator(gpio_pin)]
SerialPort = Annotated[StrictStr, AfterValidator(serial_port)]
Baud = Annotated[StrictInt, Field(ge=300, le=4_000_000)]
Count = Annotated[StrictInt, Field(ge=1, le=1000)]
Zone = Annotated[StrictStr, Field(min_length=1, max_length=100)]
ConfigFile = Annotated[Path, AfterValidator(existing_file)]
ConfigDir = Annotated[Path, AfterValidator(existing_dir)]
CredentialsFile = Annotated[Path, AfterValidator(credentials_file)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegativeSeconds = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Share = Annotated[float, Field(strict=True, allow_inf_nan=False), between(0, 1)]
"""A part of a whole (a score, a share of the frame's area): 0 to 1."""
