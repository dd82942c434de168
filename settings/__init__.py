"""The hub's configuration: one TOML file, validated into frozen typed objects before anything runs.

``load_config(path)`` reads the file; ``parse_config(data, base_dir=..., env=...)`` validates an
already parsed table. Both raise ``ConfigError`` holding *every* problem found, each as a
``(path, message)`` pair such as ``("inputs[1].pin", "GPIO 17 is already used by inputs[0]")``.

Validation happens in three layers, ESPHome style:

1. small named validators on single values (``mqtt_topic_level``, ``hostname_or_ip``,
   ``gpio_pin``, ``existing_file``...), attached to fields with ``Annotated``;
2. pydantic models (frozen, unknown keys rejected) that check types, ranges and the rules that
   tie two keys of one table together (``active_high`` needs ``pull_up = "none"``...);
3. checks across tables (unique names and pins, rules naming an existing output), run on the
   raw tables too, so that they are reported together with any type error elsewhere.

The camera tables (``[[cameras]]`` and their zones, filters, motion and tamper tables) are
checked by the dataclasses of ``sensors.camera.settings`` they become: a ``ValueError`` of theirs
is reported at the key it is about (``cameras[0].zones[1].polygon: ...``).

The broker password is never written in the TOML file: it comes from the environment variable
``TUQUAN_BROKER_PASSWORD`` or from ``broker.credentials_file``, and is held as a ``SecretStr``
that no repr, str, log line or error message shows. See docs/config.md for every key.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.errors import ConfigError
from sensors.camera.settings import (
    SOURCE_KINDS,
    CameraSettings,
    FilterSettings,
    MotionSettings,
    TamperSettings,
    ZoneSettings,
)

PASSWORD_ENV = "TUQUAN_BROKER_PASSWORD"

InputKind = Literal[
    "panic", "silent_panic", "duress", "fire", "smoke", "heat", "tamper", "door", "silence"
]
"""What a GPIO input is. Every kind but ``silence`` is also the event kind it reports."""

AlarmKind = Literal["panic", "silent_panic", "duress", "fire", "smoke", "heat", "tamper", "door"]
"""Event kinds an input can report and a rule can react to (``silence`` reports nothing)."""

OutputKind = Literal["siren", "buzzer", "led", "relay"]

RuleKind = Literal[
    "panic", "silent_panic", "duress", "fire", "smoke", "heat", "gas", "tamper", "door"
]
"""Event kinds a rule can react to: what inputs report, and ``gas`` from Modbus detectors."""

ModbusKind = Literal["smoke", "gas", "fire", "heat"]
"""What a Modbus detector reports when its reading reaches the threshold."""

SupervisionKind = Literal["supervision", "rf_supervision"]
"""The trouble a silent sensor node reports: wired (Contact ID 147) or radio (381)."""

Parity = Literal["N", "E", "O"]

SIREN_RULE_KINDS: tuple[RuleKind, ...] = (
    "panic", "duress", "fire", "smoke", "heat", "gas", "tamper"
)  # fmt: skip
"""What sounds each siren when the file has no ``rules`` key (never ``silent_panic``)."""

RESTORING_KINDS = frozenset({"tamper", "door"})
"""Input kinds whose release reports a restore unless ``restore`` says otherwise."""

SECRET_MASK = "**********"

# ---------------------------------------------------------------------------------------------
# Validation context: where relative paths start and where the environment comes from.


@dataclass(frozen=True)
class _Context:
    base_dir: Path
    env: Mapping[str, str]
    cross_checked: bool = False  # parse_config already ran the checks across tables


def _context(info: ValidationInfo) -> _Context:
    ctx = info.context
    if isinstance(ctx, _Context):
        return ctx
    return _Context(base_dir=Path.cwd(), env=os.environ)


# ---------------------------------------------------------------------------------------------
# Named validators for single values.

_TOPIC_LEVEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_DEVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


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


def existing_file(value: Path, info: ValidationInfo) -> Path:
    """A readable file; a relative path starts at the config file's folder. Returns it absolute."""
    path = value.expanduser()
    if not path.is_absolute():
        path = _context(info).base_dir / path
    path = Path(os.path.normpath(path))
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


def _read_password_file(path: Path) -> str:
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
    _read_password_file(path)
    return path


def non_empty(value: tuple[str, ...]) -> tuple[str, ...]:
    """A list that must name at least one thing."""
    if not value:
        raise ValueError("must name at least one event kind")
    return value


Id = Annotated[StrictStr, AfterValidator(mqtt_topic_level)]
Name = Annotated[StrictStr, AfterValidator(device_name)]
Host = Annotated[StrictStr, AfterValidator(hostname_or_ip)]
Pin = Annotated[StrictInt, AfterValidator(gpio_pin)]
SerialPort = Annotated[StrictStr, AfterValidator(serial_port)]
Baud = Annotated[StrictInt, Field(ge=300, le=4_000_000)]
Count = Annotated[StrictInt, Field(ge=1, le=1000)]
Zone = Annotated[StrictStr, Field(min_length=1, max_length=100)]
ConfigFile = Annotated[Path, AfterValidator(existing_file)]
CredentialsFile = Annotated[Path, AfterValidator(credentials_file)]
Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegativeSeconds = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _get(item: Any, key: str) -> Any:
    """A key of a raw table or an attribute of an already built model."""
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


# ---------------------------------------------------------------------------------------------
# Tables.


class HubConfig(_Frozen):
    """``[hub]``: who this hub is. ``id`` and ``commune`` are MQTT topic levels."""

    id: Id
    commune: Id
    name: StrictStr = ""


class TLSConfig(_Frozen):
    """``[broker.tls]``: present means TLS is on. Files are absolute after validation."""

    ca_file: ConfigFile | None = None
    cert_file: ConfigFile | None = None
    key_file: ConfigFile | None = Field(default=None, validate_default=True)
    insecure: StrictBool = False

    @field_validator("key_file", mode="after")
    @classmethod
    def _cert_and_key_together(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "cert_file" not in info.data:  # cert_file itself is invalid, already reported
            return value
        has_cert = info.data["cert_file"] is not None
        if has_cert and value is None:
            raise ValueError("required when cert_file is set (client certificate and its key)")
        if value is not None and not has_cert:
            raise ValueError("key_file without cert_file: set both or neither")
        return value


class BrokerConfig(_Frozen):
    """``[broker]``: the MQTT broker. ``password`` comes from the environment or a file only."""

    host: Host = "127.0.0.1"
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 1883
    keepalive_s: Annotated[StrictInt, Field(ge=5, le=3600)] = 30
    client_id: Annotated[StrictStr, Field(min_length=1)] | None = None
    credentials_file: CredentialsFile | None = None
    password: SecretStr | None = Field(default=None, validate_default=True, repr=False)
    username: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        default=None, validate_default=True
    )
    tls: TLSConfig | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _password_from_env_or_file(cls, value: Any, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            raise ValueError(
                "a password is not allowed in the config file: put it in the file named by "
                f"broker.credentials_file, or in the environment variable {PASSWORD_ENV}"
            )
        env_password = _context(info).env.get(PASSWORD_ENV)
        if env_password:
            return SecretStr(env_password)
        path = info.data.get("credentials_file")
        if path is None:
            return None
        try:
            return SecretStr(_read_password_file(path))
        except ValueError:  # changed since the check a moment ago; report it where it belongs
            return None

    @field_validator("username", mode="after")
    @classmethod
    def _username_with_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("password") is not None:
            raise ValueError(
                f"required when a password is given (broker.credentials_file or {PASSWORD_ENV}):"
                " MQTT sends no password without a username"
            )
        return value


class UplinkConfig(_Frozen):
    """``[uplink]``: when an event counts as delivered, how often health is published, how a
    silent link is found and reported (``status_led`` is checked against ``[[outputs]]``)."""

    receipts: StrictBool = True
    receipt_timeout_s: Seconds = 60.0
    health_interval_s: Seconds = 30.0
    ping_interval_s: Seconds = 5.0
    link_timeout_s: Seconds = 15.0
    trouble_after_s: NonNegativeSeconds = 20.0
    status_led: Name | None = None

    @field_validator("link_timeout_s", mode="after")
    @classmethod
    def _longer_than_the_pings(cls, value: float, info: ValidationInfo) -> float:
        ping = info.data.get("ping_interval_s")
        if ping is not None and value <= ping:
            raise ValueError(
                f"must be more than ping_interval_s ({ping:g} s): a link is silent only once a "
                "ping has had time to come back"
            )
        return value


class OutboxConfig(_Frozen):
    """``[outbox]``: the SQLite store of events not yet delivered."""

    max_events: Annotated[StrictInt, Field(ge=100)] = 100_000
    delivered_retention_s: NonNegativeSeconds = 86_400.0


def _pull_up_from_toml(value: Any) -> Any:
    """TOML has no null: ``pull_up = "none"`` means no internal pull resistor (gpiozero None)."""
    if value == "none":
        return None
    if isinstance(value, str):
        raise ValueError(f'expected true, false or "none", not {value!r}')
    return value


class InputConfig(_Frozen):
    """``[[inputs]]``: a button or contact on a GPIO, read through gpiozero.

    ``pull_up``/``active_high`` follow gpiozero's ``Button``: with a pull resistor
    (``pull_up`` true or false) the active level follows from it; without one
    (``pull_up = "none"``, ``None`` here) ``active_high`` must say it.
    """

    name: Name
    kind: InputKind
    pin: Pin
    pull_up: StrictBool | None = True
    active_high: StrictBool | None = Field(default=None, validate_default=True)
    bounce_s: NonNegativeSeconds | None = 0.05
    hold_s: Seconds | None = None
    hold_kind: AlarmKind | None = Field(default=None, validate_default=True)
    zone: Annotated[StrictStr, Field(min_length=1, max_length=100)] = ""
    restore: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_name_and_kind(cls, data: Any) -> Any:
        """``zone`` defaults to the name; ``restore`` to true for tamper and door inputs."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if "zone" not in data and isinstance(data.get("name"), str) and data["name"]:
            data["zone"] = data["name"]
        if "restore" not in data and isinstance(data.get("kind"), str):
            data["restore"] = data["kind"] in RESTORING_KINDS
        return data

    @field_validator("pull_up", mode="before")
    @classmethod
    def _pull_up(cls, value: Any) -> Any:
        return _pull_up_from_toml(value)

    @field_validator("active_high", mode="after")
    @classmethod
    def _active_high_only_without_pull(
        cls, value: bool | None, info: ValidationInfo
    ) -> bool | None:
        if "pull_up" not in info.data:  # pull_up itself is invalid, already reported
            return value
        if info.data["pull_up"] is None and value is None:
            raise ValueError('required when pull_up = "none" (no pull resistor to imply it)')
        if info.data["pull_up"] is not None and value is not None:
            raise ValueError(
                'only allowed with pull_up = "none": with a pull resistor the active level '
                "follows from pull_up (true: active low, false: active high)"
            )
        return value

    @field_validator("hold_kind", mode="after")
    @classmethod
    def _hold_kind_needs_hold_s(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "hold_s" in info.data and info.data["hold_s"] is None:
            raise ValueError("needs hold_s: how long the button must be held to report it")
        return value


class OutputConfig(_Frozen):
    """``[[outputs]]``: a siren, buzzer, LED or relay on a GPIO, driven through gpiozero."""

    name: Name
    kind: OutputKind
    pin: Pin
    active_high: StrictBool = True


class RuleConfig(_Frozen):
    """``[[rules]]``: local alarm logic: any of ``when`` turns ``output`` on for ``seconds``."""

    when: Annotated[tuple[RuleKind, ...], AfterValidator(non_empty)]
    output: StrictStr
    seconds: Seconds = 180.0


def _zone_from_name(data: Any) -> Any:
    """A table's ``zone`` defaults to its ``name``."""
    if isinstance(data, Mapping) and "zone" not in data:
        name = data.get("name")
        if isinstance(name, str) and name:
            return {**data, "zone": name}
    return data


class BusConfig(_Frozen):
    """``[[buses]]``: a serial port (USB adapter, UART) carrying sensor nodes' frames."""

    name: Name
    port: SerialPort
    baud: Baud = 115_200
    rs485: StrictBool = False


class NodeConfig(_Frozen):
    """``[[nodes]]``: a sensor node on a bus, known by its 16-bit id.

    The node is declared lost after ``missed * heartbeat_s`` without any frame from it.
    """

    name: Name
    bus: StrictStr
    id: Annotated[StrictInt, AfterValidator(node_id)]
    zone: Zone = ""
    heartbeat_s: Seconds = 30.0
    missed: Count = 8
    supervision_kind: SupervisionKind = "supervision"

    @model_validator(mode="before")
    @classmethod
    def _default_zone(cls, data: Any) -> Any:
        return _zone_from_name(data)

    @property
    def window_s(self) -> float:
        """Silence longer than this means the node is lost."""
        return self.heartbeat_s * self.missed


class ModbusConfig(_Frozen):
    """``[[modbus]]``: one register of a Modbus RTU detector (gas, smoke, fire, heat), polled.

    The reading (times ``scale``) at or above ``threshold`` reports ``kind``; it is restored
    when the reading falls below ``restore_below`` (hysteresis).
    """

    name: Name
    port: SerialPort
    baud: Baud = 9600
    parity: Parity = "N"
    stopbits: Literal[1, 2] = 1
    unit: Annotated[StrictInt, Field(ge=1, le=247)]
    # ``register`` in the file; the attribute has another name because pydantic models (ABCs)
    # already have a ``register`` method.
    register_address: Annotated[StrictInt, Field(ge=0, le=65535, alias="register")]
    function: Literal[3, 4] = 3
    signed: StrictBool = False
    kind: ModbusKind
    threshold: Annotated[float, Field(strict=True, allow_inf_nan=False)]
    restore_below: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = Field(
        default=None, validate_default=True
    )
    scale: Annotated[float, Field(strict=True, allow_inf_nan=False)] = 1.0
    zone: Zone = ""
    poll_s: Seconds = 2.0
    timeout_s: Annotated[float, Field(strict=True, gt=0, le=10, allow_inf_nan=False)] = 0.5
    missed: Count = 3

    @model_validator(mode="before")
    @classmethod
    def _default_zone(cls, data: Any) -> Any:
        return _zone_from_name(data)

    @field_validator("scale", mode="after")
    @classmethod
    def _scale_not_zero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("must not be 0 (every reading would be 0)")
        return value

    @field_validator("restore_below", mode="after")
    @classmethod
    def _restore_below_threshold(cls, value: float | None, info: ValidationInfo) -> float | None:
        threshold = info.data.get("threshold")
        if threshold is None:  # threshold itself is invalid, already reported
            return value
        if value is None:
            return float(threshold)
        if value > threshold:
            raise ValueError(
                f"must be at most threshold ({threshold:g}), not {value:g}: the alarm is "
                "restored when the reading falls below it"
            )
        return value


# ---------------------------------------------------------------------------------------------
# Cameras and person detection (docs/cameras.md, docs/detection.md).
#
# The camera tables map one to one onto the frozen dataclasses of sensors.camera.settings, which
# check their own values. Pydantic checks the TOML types here; the dataclasses check ranges and
# the rules between keys, and a ValueError of theirs is reported at the key it is about.

DEFAULT_MODEL = "pose-detection"
SNAPSHOT_MB = 1_000_000  # bytes in one ``snapshots.max_mb``

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
PositiveNumber = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Point = tuple[Number, Number]
PolygonTable = tuple[Point, ...]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_URL_CREDENTIALS = re.compile(r"(?<=//)[^/@]*@")  # as sensors.camera.sources.redact
_ZONE = ZoneSettings("zone")
_FILTERS = FilterSettings()
_MOTION = MotionSettings()
_TAMPER = TamperSettings()
_CAMERA = CameraSettings("camera", "camera")


def _error_at(parts: Sequence[int | str], message: str) -> PydanticCustomError:
    """An error at ``parts`` below the table being validated (``_pydantic_errors`` joins them)."""
    return _errors_at([(tuple(parts), message)])


def _errors_at(errors: Sequence[tuple[tuple[int | str, ...], str]]) -> PydanticCustomError:
    """Several errors at keys below the table being validated, as one pydantic error."""
    text = "; ".join(f"{format_path(parts) or '.'}: {msg}" for parts, msg in errors)
    return PydanticCustomError("errors_at", "{message}", {"message": text, "at": list(errors)})


_WHERE = re.compile(r"^(?:(?:camera|zone)(?: [^:]*)?|filters|motion|tamper): ")


def _strip_where(message: str, key: str = "") -> str:
    """``"camera cam-1: masks[0]: point ..."`` -> ``"point ..."``: the path already says where."""
    while (match := _WHERE.match(message)) is not None:
        message = message[match.end() :]
    if key:
        message = re.sub(rf"^{re.escape(key)}(\[\d+\])?: ", "", message)
    return message


def _refusal(cls: Any, values: Mapping[str, Any]) -> str | None:
    """Why ``cls(**values)`` raises ``ValueError``, or None if it builds."""
    try:
        cls(**values)
    except ValueError as exc:
        return str(exc)
    return None


def settings_errors(
    cls: Any, values: Mapping[str, Any], given: Iterable[str], keep: Sequence[str] = ()
) -> list[tuple[tuple[int | str, ...], str]]:
    """What the settings dataclass ``cls`` refuses in ``values``, each at the key it is about.

    A key is to blame when ``cls`` refuses it alone (with the required ``keep`` keys and
    defaults for the rest) and still refuses it together with the other keys the file gave that
    it accepts alone (``backoff_min_s = 70`` alone is refused, since the default
    ``backoff_max_s`` is 60; with ``backoff_max_s = 100`` beside it, it is fine). Within an
    array, the first entry refused on its own is named. What only several keys together get
    wrong (``min_area`` above ``max_area``) is reported at the table.
    """
    whole = _refusal(cls, values)
    if whole is None:
        return []
    base = {k: values[k] for k in keep}
    keys = [k for k in values if k in set(given) and k not in keep]
    alone = {k for k in keys if _refusal(cls, {**base, k: values[k]}) is not None}
    accepted = {k: values[k] for k in keys if k not in alone}
    errors: list[tuple[tuple[int | str, ...], str]] = []
    for key in keys:
        if key not in alone:
            continue
        value = values[key]
        message = _refusal(cls, {**base, **accepted, key: value})
        if message is None:
            continue  # fine beside the others
        parts: tuple[int | str, ...] = (key,)
        if isinstance(value, tuple) and len(value) > 1:
            refused = [
                i for i, v in enumerate(value) if _refusal(cls, {**base, **accepted, key: (v,)})
            ]
            if refused and len(refused) < len(value):
                parts = (key, refused[0])
                message = _refusal(cls, {**base, **accepted, key: (value[refused[0]],)}) or message
        errors.append((parts, _strip_where(message, key)))
    return errors or [((), _strip_where(whole))]


def existing_dir(value: Path, info: ValidationInfo) -> Path:
    """A folder; a relative path starts at the config file's folder. Returns it absolute."""
    path = value.expanduser()
    if not path.is_absolute():
        path = _context(info).base_dir / path
    path = Path(os.path.normpath(path))
    if not path.is_dir():
        raise ValueError(f"not a folder: {path}" if path.exists() else f"folder not found: {path}")
    return path


def camera_source(value: str, info: ValidationInfo) -> str:
    """A camera's ``source``: a URL, device or ``picamera``/``usb:N`` as written, or a video file
    or picture folder, whose relative path starts at the config file's folder."""
    if not value:
        raise ValueError("must not be empty")
    if _SCHEME.match(value) or value.isdigit() or value.startswith("/"):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = _context(info).base_dir / path
    return os.path.normpath(path)


class DetectionConfig(_Frozen):
    """``[detection]``: the detector every camera shares (a model of ``models/manifest.toml``)."""

    models_dir: Annotated[Path, AfterValidator(existing_dir)] | None = None
    model: Annotated[StrictStr, Field(min_length=1)] = DEFAULT_MODEL
    threads: Annotated[StrictInt, Field(ge=1, le=16)] = 2
    min_score: Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)] | None = None

    @field_validator("model", mode="after")
    @classmethod
    def _model_in_manifest(cls, value: str, info: ValidationInfo) -> str:
        if "models_dir" not in info.data:  # models_dir itself is invalid, already reported
            return value
        from models.manifest import ModelError, get_spec

        try:
            get_spec(value, info.data["models_dir"])
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        return value

    def labels(self) -> tuple[str, ...] | None:
        """The model's labels, or None if its manifest cannot be read."""
        from models.manifest import ModelError, get_spec

        try:
            return get_spec(self.model, self.models_dir).labels
        except ModelError:
            return None


class SnapshotsConfig(_Frozen):
    """``[snapshots]``: the JPEGs of person incidents, in ``<data dir>/snapshots``."""

    max_mb: Annotated[float, Field(strict=True, gt=0, le=1_000_000, allow_inf_nan=False)] = 200.0

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * SNAPSHOT_MB)


class ZoneConfig(_Frozen):
    """``[[cameras.zones]]``: where in a camera's view, and when, a person is an incident."""

    name: Zone
    polygon: PolygonTable = ()
    armed: tuple[StrictStr, ...] = ()
    inertia: StrictInt = _ZONE.inertia

    def settings(self) -> ZoneSettings:
        return ZoneSettings(**self.model_dump())


class FilterConfig(_Frozen):
    """``[cameras.filters]``: when a detection is believed."""

    min_score: Number = _FILTERS.min_score
    threshold: Number = _FILTERS.threshold
    history: StrictInt = _FILTERS.history
    min_frames: StrictInt = _FILTERS.min_frames
    min_area: Number = _FILTERS.min_area
    max_area: Number = _FILTERS.max_area
    min_ratio: Number = _FILTERS.min_ratio
    max_ratio: Annotated[float, Field(strict=True, gt=0)] = _FILTERS.max_ratio  # inf: no limit

    def settings(self) -> FilterSettings:
        return FilterSettings(**self.model_dump())


class MotionConfig(_Frozen):
    """``[cameras.motion]``: motion detection, which gates the detector."""

    enabled: StrictBool = _MOTION.enabled
    width: StrictInt = _MOTION.width
    threshold: StrictInt = _MOTION.threshold
    contour_area: StrictInt = _MOTION.contour_area
    alpha: Number = _MOTION.alpha
    lightning: Number = _MOTION.lightning
    margin: Number = _MOTION.margin
    min_region: Number = _MOTION.min_region
    recheck_s: Number = _MOTION.recheck_s
    max_regions: StrictInt = _MOTION.max_regions

    def settings(self) -> MotionSettings:
        return MotionSettings(**self.model_dump())


class TamperConfig(_Frozen):
    """``[cameras.tamper]``: covered, defocused or turned away."""

    enabled: StrictBool = _TAMPER.enabled
    width: StrictInt = _TAMPER.width
    check_s: Number = _TAMPER.check_s
    learn_s: Number = _TAMPER.learn_s
    adapt_s: Number = _TAMPER.adapt_s
    persist_s: Number = _TAMPER.persist_s
    covered_std: Number = _TAMPER.covered_std
    blur_ratio: Number = _TAMPER.blur_ratio
    scene_match: Number = _TAMPER.scene_match
    grid: StrictInt = _TAMPER.grid

    def settings(self) -> TamperSettings:
        return TamperSettings(**self.model_dump())


CameraKind = Literal["auto", "picamera", "usb", "stream", "file", "images"]
assert typing.get_args(CameraKind) == SOURCE_KINDS


class CameraConfig(_Frozen):
    """``[[cameras]]``: one camera, its zones, masks and filters (docs/cameras.md)."""

    name: Name
    source: Annotated[StrictStr, AfterValidator(camera_source)]
    kind: CameraKind = "auto"
    zone: Zone = ""
    detect_fps: Number = _CAMERA.detect_fps
    width: StrictInt | None = None
    height: StrictInt | None = None
    loop: StrictBool = False
    zones: tuple[ZoneConfig, ...] = ()
    masks: tuple[PolygonTable, ...] = ()
    labels: tuple[StrictStr, ...] = _CAMERA.labels
    filters: FilterConfig = Field(default_factory=FilterConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    tamper: TamperConfig = Field(default_factory=TamperConfig)
    end_after_s: Number = _CAMERA.end_after_s
    offline_after_s: Number = _CAMERA.offline_after_s
    stall_s: Number = _CAMERA.stall_s
    open_timeout_s: Number = _CAMERA.open_timeout_s
    read_timeout_s: Number = _CAMERA.read_timeout_s
    backoff_min_s: Number = _CAMERA.backoff_min_s
    backoff_max_s: Number = _CAMERA.backoff_max_s
    snapshot_margin: Number = _CAMERA.snapshot_margin
    snapshot_quality: StrictInt = _CAMERA.snapshot_quality

    @model_validator(mode="before")
    @classmethod
    def _default_zone(cls, data: Any) -> Any:
        return _zone_from_name(data)

    @model_validator(mode="after")
    def _valid(self) -> CameraConfig:
        """Every value the camera's settings refuse, its zones' and sub-tables' included."""
        errors: list[tuple[tuple[int | str, ...], str]] = []
        zones = []
        for index, zone in enumerate(self.zones):
            found = settings_errors(
                ZoneSettings, zone.model_dump(), zone.model_fields_set, keep=("name",)
            )
            errors += [(("zones", index, *parts), msg) for parts, msg in found]
            if not found:
                zones.append(zone.settings())
        tables: dict[str, Any] = {}
        for name, cls in (
            ("filters", FilterSettings),
            ("motion", MotionSettings),
            ("tamper", TamperSettings),
        ):
            table = getattr(self, name)
            found = settings_errors(cls, table.model_dump(), table.model_fields_set)
            errors += [((name, *parts), msg) for parts, msg in found]
            tables[name] = cls() if found else table.settings()
        # The camera's own keys, with the sub-tables that are valid (defaults for the others).
        values = {**self._values(), "zones": tuple(zones), **tables}
        errors += settings_errors(
            CameraSettings, values, self.model_fields_set, keep=("name", "source")
        )
        if errors:
            raise _errors_at(errors)
        return self

    def _values(self) -> dict[str, Any]:
        tables = {"zones", "filters", "motion", "tamper"}
        return {name: getattr(self, name) for name in type(self).model_fields if name not in tables}

    def settings(self) -> CameraSettings:
        """The camera's ``sensors.camera.settings.CameraSettings``."""
        return CameraSettings(
            **self._values(),
            zones=tuple(z.settings() for z in self.zones),
            filters=self.filters.settings(),
            motion=self.motion.settings(),
            tamper=self.tamper.settings(),
        )


_SECTIONS = ("hub", "broker", "uplink", "outbox", "detection", "snapshots")
_ARRAYS = ("inputs", "outputs", "rules", "buses", "nodes", "modbus", "cameras")


class Config(_Frozen):
    """The whole hub configuration. Build it with ``load_config`` or ``parse_config``."""

    hub: HubConfig
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    uplink: UplinkConfig = Field(default_factory=UplinkConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    inputs: tuple[InputConfig, ...] = ()
    outputs: tuple[OutputConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    buses: tuple[BusConfig, ...] = ()
    nodes: tuple[NodeConfig, ...] = ()
    modbus: tuple[ModbusConfig, ...] = ()
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    snapshots: SnapshotsConfig = Field(default_factory=SnapshotsConfig)
    cameras: tuple[CameraConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _default_tables(cls, data: Any) -> Any:
        """Missing tables are validated as empty ones (so the env context reaches [broker]);
        no ``rules`` key at all means one rule per siren output."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for section in _SECTIONS[1:]:
            data.setdefault(section, {})
        if "rules" not in data:
            outputs = data.get("outputs")
            data["rules"] = [
                {"when": list(SIREN_RULE_KINDS), "output": _get(out, "name")}
                for out in (outputs if isinstance(outputs, Sequence) else ())
                if _get(out, "kind") == "siren" and isinstance(_get(out, "name"), str)
            ]
        return data

    @model_validator(mode="after")
    def _consistent_across_tables(self, info: ValidationInfo) -> Config:
        ctx = info.context
        if isinstance(ctx, _Context) and ctx.cross_checked:
            return self
        errors = cross_table_errors({name: getattr(self, name) for name in (*_ARRAYS, "uplink")})
        if errors:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in errors))
        return self

    @model_validator(mode="after")
    def _labels_of_the_model(self) -> Config:
        """A camera's ``labels`` are labels its detector can give (else it never reports)."""
        known = self.detection.labels() if self.cameras else None
        if known is None:
            return self
        for index, camera in enumerate(self.cameras):
            for n, label in enumerate(camera.labels):
                if label not in known:
                    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
                    raise _error_at(
                        ("cameras", index, "labels", n),
                        f"{label!r} is not a label of model {self.detection.model} ({shown})",
                    )
        return self

    def input(self, name: str) -> InputConfig:
        """The input called ``name``; KeyError if there is none."""
        for inp in self.inputs:
            if inp.name == name:
                return inp
        raise KeyError(f"no input named {name!r}")

    def output(self, name: str) -> OutputConfig:
        """The output called ``name``; KeyError if there is none."""
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(f"no output named {name!r}")

    def bus(self, name: str) -> BusConfig:
        """The sensor bus called ``name``; KeyError if there is none."""
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(f"no bus named {name!r}")

    def node(self, name: str) -> NodeConfig:
        """The sensor node called ``name``; KeyError if there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r}")

    def camera(self, name: str) -> CameraConfig:
        """The camera called ``name``; KeyError if there is none."""
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise KeyError(f"no camera named {name!r}")

    @property
    def client_id(self) -> str:
        """The MQTT client id: ``broker.client_id`` or ``tuquan-<commune>-<hub id>``."""
        return self.broker.client_id or f"tuquan-{self.hub.commune}-{self.hub.id}"

    def redacted(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole config for logs: the password shows as a mask."""
        data = self.model_dump(mode="json")
        data["broker"]["password"] = SECRET_MASK if self.broker.password is not None else None
        for camera in data["cameras"]:  # rtsp://user:password@host/...
            camera["source"] = _URL_CREDENTIALS.sub("***@", camera["source"])
        return data


# ---------------------------------------------------------------------------------------------
# Checks across tables.


def cross_table_errors(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Unique names across inputs, outputs, nodes, Modbus detectors and cameras; unique pins; rules
    naming an existing output; nodes on an existing bus with an id unique on it; serial ports
    not shared between a bus and anything else.

    Works on raw TOML tables as well as on built models, and skips values of the wrong type
    (those are reported by the type checks), so it can run on a config with other errors.
    """
    errors: list[tuple[str, str]] = []
    name_users: dict[str, str] = {}
    pin_users: dict[int, str] = {}
    kinds_of_name: dict[str, str] = {}
    for section in ("inputs", "outputs", "nodes", "modbus", "cameras"):
        for index, item in _entries(data, section):
            where = f"{section}[{index}]"
            name, pin = _get(item, "name"), _get(item, "pin")
            if isinstance(name, str):
                if name in name_users:
                    errors.append(
                        (f"{where}.name", f"name {name!r} is already used by {name_users[name]}")
                    )
                else:
                    name_users[name] = where
                    kinds_of_name[name] = section
            if (
                section in ("inputs", "outputs")
                and isinstance(pin, int)
                and not isinstance(pin, bool)
            ):
                if pin in pin_users:
                    errors.append(
                        (f"{where}.pin", f"GPIO {pin} is already used by {pin_users[pin]}")
                    )
                else:
                    pin_users[pin] = where
    outputs = sorted(name for name, section in kinds_of_name.items() if section == "outputs")
    for index, rule in _entries(data, "rules"):
        output = _get(rule, "output")
        if not isinstance(output, str) or output in outputs:
            continue
        if output in kinds_of_name:
            msg = f"{output!r} is {_WHAT_SECTION_HOLDS[kinds_of_name[output]]}, not an output"
        elif outputs:
            msg = f"no output named {output!r} (outputs: {', '.join(outputs)})"
        else:
            msg = f"no output named {output!r}: there are no [[outputs]]"
        errors.append((f"rules[{index}].output", msg))
    errors.extend(_status_led_errors(data, outputs))
    errors.extend(_serial_errors(data))
    return errors


def _status_led_errors(data: Mapping[str, Any], outputs: Sequence[str]) -> list[tuple[str, str]]:
    """``uplink.status_led`` names an output that no alarm rule drives."""
    uplink = data.get("uplink")
    led = _get(uplink, "status_led") if isinstance(uplink, Mapping | BaseModel) else None
    if not isinstance(led, str):
        return []
    if led not in outputs:
        known = f" (outputs: {', '.join(outputs)})" if outputs else ": there are no [[outputs]]"
        return [("uplink.status_led", f"no output named {led!r}{known}")]
    if "rules" in data:
        driven = {_get(rule, "output"): f"rules[{i}]" for i, rule in _entries(data, "rules")}
    else:  # no rules key: one rule per siren (Config._default_tables)
        driven = {
            _get(out, "name"): "the default siren rule"
            for _, out in _entries(data, "outputs")
            if _get(out, "kind") == "siren"
        }
    if led in driven:
        return [
            (
                "uplink.status_led",
                f"{led!r} is driven by {driven[led]}: the status LED needs an output of its own",
            )
        ]
    return []


_WHAT_SECTION_HOLDS = {
    "inputs": "an input",
    "nodes": "a sensor node",
    "modbus": "a Modbus detector",
    "cameras": "a camera",
}

_LINE_SETTINGS = ("baud", "parity", "stopbits")


def _entries(data: Mapping[str, Any], section: str) -> list[tuple[int, Any]]:
    """``(index, table)`` of an array of tables; nothing if it is not an array."""
    items = data.get(section)
    if not isinstance(items, Sequence) or isinstance(items, str):
        return []
    return list(enumerate(items))


def _serial_errors(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    buses: dict[str, str] = {}
    for index, bus in _entries(data, "buses"):
        name = _get(bus, "name")
        if isinstance(name, str):
            if name in buses:
                errors.append(
                    (f"buses[{index}].name", f"name {name!r} is already used by {buses[name]}")
                )
            else:
                buses[name] = f"buses[{index}]"
    node_ids: dict[tuple[str, int], str] = {}
    for index, node in _entries(data, "nodes"):
        bus, node_id = _get(node, "bus"), _get(node, "id")
        if not isinstance(bus, str):
            continue
        if bus not in buses:
            known = ", ".join(sorted(buses))
            msg = (
                f"no bus named {bus!r} (buses: {known})"
                if known
                else f"no bus named {bus!r}: there are no [[buses]]"
            )
            errors.append((f"nodes[{index}].bus", msg))
        elif isinstance(node_id, int) and not isinstance(node_id, bool):
            if (bus, node_id) in node_ids:
                errors.append(
                    (
                        f"nodes[{index}].id",
                        f"id {node_id} is already used on bus {bus!r} by {node_ids[bus, node_id]}",
                    )
                )
            else:
                node_ids[bus, node_id] = f"nodes[{index}]"
    port_users: dict[str, str] = {}
    for index, bus in _entries(data, "buses"):
        port = _get(bus, "port")
        if isinstance(port, str):
            if port in port_users:
                errors.append(
                    (f"buses[{index}].port", f"port {port!r} is already used by {port_users[port]}")
                )
            else:
                port_users[port] = f"buses[{index}]"
    first_on_line: dict[str, tuple[str, Any]] = {}
    for index, entry in _entries(data, "modbus"):
        where, port = f"modbus[{index}]", _get(entry, "port")
        if not isinstance(port, str):
            continue
        if port in port_users:
            errors.append(
                (
                    f"{where}.port",
                    f"port {port!r} is already used by {port_users[port]}, a sensor bus: "
                    "a Modbus line needs a port of its own",
                )
            )
            continue
        if port not in first_on_line:
            first_on_line[port] = (where, entry)
            continue
        # Several detectors on one RS-485 line: one speed and framing for all of them.
        first_where, first = first_on_line[port]
        for key in _LINE_SETTINGS:
            mine, theirs = _line_setting(entry, key), _line_setting(first, key)
            if mine is not None and theirs is not None and mine != theirs:
                errors.append(
                    (
                        f"{where}.{key}",
                        f"{mine!r} differs from {first_where}.{key} ({theirs!r}) on the same "
                        f"port {port!r}: every detector on one line uses the same settings",
                    )
                )
    return errors


def _line_setting(entry: Any, key: str) -> Any:
    """A Modbus line setting, its default when absent, None when of the wrong type."""
    value = _get(entry, key)
    if value is None:
        return ModbusConfig.model_fields[key].default
    wanted = str if key == "parity" else int
    if isinstance(value, bool) or not isinstance(value, wanted):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# Turning pydantic's errors into (path, message) pairs.


def format_path(loc: Sequence[int | str]) -> str:
    """``("inputs", 1, "pin")`` → ``inputs[1].pin``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class validating the table at ``loc`` (list indexes skipped)."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return None
        model = _model_in(info.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _unknown_key_message(loc: Sequence[int | str]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    allowed = [
        info.alias or name for name, info in model.model_fields.items() if name != "password"
    ]
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
    return f"unknown key {key!r}; {hint}"


_BOUNDS = {
    "greater_than": "greater than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "tuple_type": "an array",
    "list_type": "an array",
    "path_type": "a path string",
}


def _message(error: Mapping[str, Any]) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "extra_forbidden":
        return _unknown_key_message(loc)
    if kind == "missing":
        model = _model_at(loc)
        return "required table is missing" if model is not None else "required key is missing"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}"
    if kind in _BOUNDS:
        ctx = error.get("ctx", {})
        bound = next(iter(ctx.values()), "?")
        return f"must be {_BOUNDS[kind]} {bound}, not {error['input']!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {error.get('ctx', {}).get('max_length')} characters long"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{error['input']!r} is not one of {expected}"
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=True):
        if err["type"] == "errors_at":  # errors at keys below the table (_errors_at)
            for parts, message in err.get("ctx", {}).get("at", ()):
                out.append((format_path((*err["loc"], *parts)), str(message)))
        else:
            out.append((format_path(err["loc"]), _message(err)))
    return out


# ---------------------------------------------------------------------------------------------
# Entry points.


def parse_config(data: Mapping[str, Any], *, base_dir: Path, env: Mapping[str, str]) -> Config:
    """Validate a parsed TOML table into a ``Config``; ``ConfigError`` lists every problem.

    Relative file paths start at ``base_dir`` (the config file's folder); the broker password
    is taken from ``env`` (``TUQUAN_BROKER_PASSWORD``) before ``broker.credentials_file``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError([("", "the configuration must be a TOML table")])
    errors: list[tuple[str, str]] = []
    config: Config | None = None
    try:
        config = Config.model_validate(
            data, context=_Context(base_dir=base_dir, env=env, cross_checked=True)
        )
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc))
    errors.extend(cross_table_errors(data))
    errors.sort(key=_file_order)
    if errors or config is None:
        # Raised outside the except block: pydantic's own error text quotes input values.
        raise ConfigError(errors)
    return config


_TABLE_ORDER = ("hub", "broker", "uplink", "outbox") + _ARRAYS[:-1] + _SECTIONS[4:] + ("cameras",)


def _file_order(error: tuple[str, str]) -> tuple[int, int]:
    """Sort key: the order of the tables in docs/config.md, then the array index."""
    match = re.match(r"([^.\[]*)(?:\[(\d+)\])?", error[0])
    table, index = (match.group(1), match.group(2)) if match else ("", None)
    rank = _TABLE_ORDER.index(table) if table in _TABLE_ORDER else len(_TABLE_ORDER)
    return rank, int(index) if index else -1


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate one TOML config file (``env`` defaults to ``os.environ``)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([(str(path), f"not UTF-8 text (byte {exc.start})")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_syntax_error(path, exc)]) from None
    return parse_config(
        data, base_dir=path.resolve().parent, env=os.environ if env is None else env
    )


def _toml_syntax_error(path: Path, exc: tomllib.TOMLDecodeError) -> tuple[str, str]:
    """``hub.toml:3:7`` and tomllib's message without its position suffix."""
    text = str(exc)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if match:
        where = f"{path}:{match.group(1)}:{match.group(2)}"
        return where, f"TOML syntax error: {text[: match.start()]}"
    return str(path), f"TOML syntax error: {text}"


__all__ = [
    "PASSWORD_ENV",
    "SIREN_RULE_KINDS",
    "AlarmKind",
    "BrokerConfig",
    "BusConfig",
    "CameraConfig",
    "Config",
    "DetectionConfig",
    "FilterConfig",
    "HubConfig",
    "InputConfig",
    "InputKind",
    "ModbusConfig",
    "ModbusKind",
    "MotionConfig",
    "NodeConfig",
    "OutboxConfig",
    "OutputConfig",
    "OutputKind",
    "Parity",
    "RuleConfig",
    "RuleKind",
    "SnapshotsConfig",
    "SupervisionKind",
    "TLSConfig",
    "TamperConfig",
    "UplinkConfig",
    "ZoneConfig",
    "cross_table_errors",
    "format_path",
    "load_config",
    "parse_config",
]
