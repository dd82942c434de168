"""The hub's configuration: one TOML file, validated into frozen typed objects before anything runs.

``load_config(path)`` reads the file; ``parse_config(data, base_dir=..., env=...)`` validates an
already parsed table. Both raise ``ConfigError`` holding *every* problem found, each as a
``(path, message)`` pair such as ``("inputs[1].pin", "GPIO 17 is already used by inputs[0]")``.

Validation happens in three layers, ESPHome style:

1. small named validators on single values (``mqtt_topic_level``, ``hostname_or_ip``,
   ``gpio_pin``, ``existing_file``...), attached to fields with ``Annotated``
   (``settings.validators``);
2. pydantic models (frozen, unknown keys rejected) that check types, ranges and the rules that
   tie two keys of one table together (``active_high`` needs ``pull_up = "none"``...), one
   module per concern: ``hub`` (hub, broker, TLS, uplink, outbox), ``io`` (inputs, outputs,
   rules), ``buses`` (serial buses, nodes, Modbus), ``cameras`` (cameras and detection);
3. checks across tables (unique names and pins, rules naming an existing output), run on the
   raw tables too, so that they are reported together with any type error elsewhere
   (``settings.checks``).

``settings.errors`` turns what pydantic and tomllib refuse into those pairs; ``settings.kinds``
chooses, among the event kinds of ``core.events.KINDS``, what each table may name. The camera
models are what the camera pipeline reads. See docs/config.md for every key.
"""

from __future__ import annotations

from settings.base import Frozen, LoadContext
from settings.buses import BusConfig, ModbusConfig, NodeConfig, Parity
from settings.cameras import (
    DEFAULT_MODEL,
    SNAPSHOT_MB,
    CameraConfig,
    DetectionConfig,
    FilterConfig,
    MotionConfig,
    SnapshotsConfig,
    TamperConfig,
    ZoneConfig,
)
from settings.checks import cross_table_errors
from settings.config import Config
from settings.errors import format_path, pydantic_errors
from settings.hub import (
    PASSWORD_ENV,
    SECRET_MASK,
    BrokerConfig,
    HubConfig,
    OutboxConfig,
    TLSConfig,
    UplinkConfig,
)
from settings.io import InputConfig, OutputConfig, OutputKind, RuleConfig
from settings.kinds import (
    SIREN_RULE_KINDS,
    AlarmKind,
    InputKind,
    ModbusKind,
    RuleKind,
    SupervisionKind,
)
from settings.loading import load_config, parse_config, read_toml

__all__ = [
    "DEFAULT_MODEL",
    "PASSWORD_ENV",
    "SECRET_MASK",
    "SIREN_RULE_KINDS",
    "SNAPSHOT_MB",
    "AlarmKind",
    "BrokerConfig",
    "BusConfig",
    "CameraConfig",
    "Config",
    "DetectionConfig",
    "FilterConfig",
    "Frozen",
    "HubConfig",
    "InputConfig",
    "InputKind",
    "LoadContext",
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
    "pydantic_errors",
    "read_toml",
]
