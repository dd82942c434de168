"""``[[buses]]``, ``[[nodes]]`` and ``[[modbus]]``: serial ports carrying sensor nodes' frames,
the nodes on them, and Modbus RTU detectors polled register by register."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from settings.base import Frozen, zone_from_name
from settings.kinds import ModbusKind, SupervisionKind
from settings.validators import Baud, Count, Name, Number, Seconds, SerialPort, Zone, node_id

Parity = Literal["N", "E", "O"]


class BusConfig(Frozen):
    """``[[buses]]``: a serial port (USB adapter, UART) carrying sensor nodes' frames."""

    name: Name
    port: SerialPort
    baud: Baud = 115_200
    rs485: StrictBool = False


class NodeConfig(Frozen):
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
        return zone_from_name(data)

    @property
    def window_s(self) -> float:
        """Silence longer than this means the node is lost."""
        return self.heartbeat_s * self.missed


class ModbusConfig(Frozen):
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
    threshold: Number
    restore_below: Number | None = Field(default=None, validate_default=True)
    scale: Number = 1.0
    zone: Zone = ""
    poll_s: Seconds = 2.0
    timeout_s: Annotated[float, Field(strict=True, gt=0, le=10, allow_inf_nan=False)] = 0.5
    missed: Count = 3

    @model_validator(mode="before")
    @classmethod
    def _default_zone(cls, data: Any) -> Any:
        return zone_from_name(data)

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


LINE_SETTINGS = ("baud", "parity", "stopbits")
"""What every Modbus detector on one RS-485 line must agree on."""
