"""``Config``: the whole hub configuration, one model holding every table.

Missing tables are validated as empty ones, a file without a ``rules`` key gets one rule per
siren, the checks across tables run once every table is built (``parse_config`` runs them on
the raw tables instead, to report them with the type errors), and a camera's ``labels`` must be
labels of the detection model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, ValidationInfo, model_validator

from settings.base import Frozen, LoadContext, field_of
from settings.buses import BusConfig, ModbusConfig, NodeConfig
from settings.cameras import CameraConfig, DetectionConfig, SnapshotsConfig, redact_url
from settings.checks import cross_table_errors
from settings.errors import error_at
from settings.hub import SECRET_MASK, BrokerConfig, HubConfig, OutboxConfig, UplinkConfig
from settings.io import InputConfig, OutputConfig, RuleConfig
from settings.kinds import SIREN_RULE_KINDS

SECTIONS = ("hub", "broker", "uplink", "outbox", "detection", "snapshots")
"""The single tables, in the order of docs/config.md."""
ARRAYS = ("inputs", "outputs", "rules", "buses", "nodes", "modbus", "cameras")
"""The arrays of tables, in the order of docs/config.md."""


class Config(Frozen):
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
        for section in SECTIONS[1:]:
            data.setdefault(section, {})
        if "rules" not in data:
            outputs = data.get("outputs")
            data["rules"] = [
                {"when": list(SIREN_RULE_KINDS), "output": field_of(out, "name")}
                for out in (outputs if isinstance(outputs, Sequence) else ())
                if field_of(out, "kind") == "siren" and isinstance(field_of(out, "name"), str)
            ]
        return data

    @model_validator(mode="after")
    def _consistent_across_tables(self, info: ValidationInfo) -> Config:
        ctx = info.context
        if isinstance(ctx, LoadContext) and ctx.cross_checked:
            return self
        errors = cross_table_errors({name: getattr(self, name) for name in (*ARRAYS, "uplink")})
        if errors:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in errors))
        return self

    @model_validator(mode="after")
    def _labels_of_the_model(self) -> Config:
        """A camera's model is in the manifest, and its ``labels`` are labels that model can
        give (else it never reports)."""
        from models.manifest import ModelError, get_spec

        for index, camera in enumerate(self.cameras):
            model = camera.model_for(self.detection.model)
            if model == self.detection.model:
                known = self.detection.labels()
            else:
                try:
                    known = get_spec(model, self.detection.models_dir).labels
                except ModelError as exc:
                    key = "model" if camera.model else "role"
                    raise error_at(("cameras", index, key), str(exc)) from None
            if known is None:
                continue
            for n, label in enumerate(camera.labels):
                if label not in known:
                    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
                    raise error_at(
                        ("cameras", index, "labels", n),
                        f"{label!r} is not a label of model {model} ({shown})",
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
            camera["source"] = redact_url(camera["source"])
        return data
