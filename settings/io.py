"""``[[inputs]]``, ``[[outputs]]`` and ``[[rules]]``: buttons and contacts on GPIOs, the sirens,
buzzers, LEDs and relays they may sound, and the local alarm logic between them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from settings.base import Frozen
from settings.kinds import RESTORING_KINDS, AlarmKind, InputKind, RuleKind
from settings.validators import Name, NonNegativeSeconds, Pin, Seconds, Zone, non_empty

OutputKind = Literal["siren", "buzzer", "led", "relay"]


def _pull_up_from_toml(value: Any) -> Any:
    """TOML has no null: ``pull_up = "none"`` means no internal pull resistor (gpiozero None)."""
    if value == "none":
        return None
    if isinstance(value, str):
        raise ValueError(f'expected true, false or "none", not {value!r}')
    return value


class InputConfig(Frozen):
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
    zone: Zone = ""
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


class OutputConfig(Frozen):
    """``[[outputs]]``: a siren, buzzer, LED or relay on a GPIO, driven through gpiozero."""

    name: Name
    kind: OutputKind
    pin: Pin
    active_high: StrictBool = True


class RuleConfig(Frozen):
    """``[[rules]]``: local alarm logic: any of ``when`` turns ``output`` on for ``seconds``."""

    when: Annotated[tuple[RuleKind, ...], AfterValidator(non_empty("event kind"))]
    output: StrictStr
    seconds: Seconds = 180.0
