"""The commune receiver's config file: which commune, which broker.

```toml
[receiver]
commune = "phuong-1"        # or "+" (every commune of the broker), or communes = ["a", "b"]
share_group = "police"      # optional: MQTT shared subscription, for several receivers
store = "postgresql://tuquan@db1,db2/tuquan"   # optional: default <data dir>/receiver.sqlite3
session_expiry_s = 60       # optional: how long the broker keeps this receiver's session

[broker]                    # the same keys as a hub's [broker] (docs/config.md)
host = "mqtt.commune.example"
port = 8883
username = "receiver-phuong-1"
credentials_file = "credentials.toml"
```

It is read and its errors are reported as the hub's are (``settings``): every problem at its
key, an unknown key with the closest allowed one, a file that is not TOML or not UTF-8 at its
line and column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from commune.dc09.config import ForwardConfig
from commune.desk_config import (
    ConsoleConfig,
    EscalationConfig,
    ExpectedHubConfig,
    NotifyTarget,
    SupervisionConfig,
    target_name,
)
from commune.locations import store_setting
from commune.receiver import MAX_SESSION_EXPIRY_S
from commune.scope import EVERY, CommuneScope, commune_name
from core.errors import ConfigError
from settings import BrokerConfig, Frozen, LoadContext, pydantic_errors, read_toml
from settings.validators import mqtt_topic_level

_SHARE_GROUP = re.compile(r"[A-Za-z0-9_-]{1,64}")


def share_group_name(value: str) -> str:
    """The group of an MQTT shared subscription (``$share/<group>/...``)."""
    if not _SHARE_GROUP.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid share group: use 1 to 64 letters, digits, '-' or '_' "
            "(it is a level of the shared subscription $share/<group>/...)"
        )
    return value


def commune_or_every(value: str) -> str:
    """``[receiver] commune``: a commune (an MQTT topic level), or ``+`` for every commune."""
    return value if value == EVERY else mqtt_topic_level(value)


def commune_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """``[receiver] communes``: at least one, each a commune, none twice."""
    if not values:
        raise ValueError('name at least one commune, or use commune = "+" for every commune')
    for value in values:
        commune_name(value)
    for i, value in enumerate(values):
        if value in values[:i]:
            raise ValueError(f"commune {value!r} is named twice")
    return values


class ReceiverSection(Frozen):
    """``[receiver]``: whose hubs' events are received: ``commune`` (one, or ``+`` for every
    commune the broker carries) or ``communes`` (a list); see ``commune.scope``.

    ``session_expiry_s``: how long the broker keeps the session of an offline receiver (and
    the events queued in it); by default a day, or 60 s with ``share_group``, since Mosquitto
    goes on handing an offline member its share until its session expires."""

    commune: Annotated[StrictStr, AfterValidator(commune_or_every)] | None = None
    communes: Annotated[tuple[StrictStr, ...], AfterValidator(commune_list)] | None = None
    share_group: Annotated[StrictStr, AfterValidator(share_group_name)] | None = None
    client_id: Annotated[StrictStr, Field(min_length=1)] | None = None
    # A SQLite file or a PostgreSQL URL (commune.locations); default <data dir>/receiver.sqlite3.
    store: Annotated[StrictStr, AfterValidator(store_setting)] | None = None
    session_expiry_s: Annotated[StrictInt, Field(ge=0, le=MAX_SESSION_EXPIRY_S)] | None = None

    @field_validator("communes")
    @classmethod
    def _not_with_commune(
        cls, value: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        if value is not None and info.data.get("commune") is not None:
            raise ValueError("give commune or communes, not both")
        return value

    @model_validator(mode="after")
    def _some_commune(self) -> ReceiverSection:
        if self.commune is None and self.communes is None:
            raise ValueError(
                'name the commune(s): commune = "phuong-1" (or "+" for every commune of the '
                'broker), or communes = ["phuong-1", "xa-2"]'
            )
        return self

    @property
    def scope(self) -> CommuneScope:
        return CommuneScope.of(self.communes if self.communes is not None else str(self.commune))


class ReceiverConfig(Frozen):
    """The whole receiver configuration. Build it with ``load_receiver_config``.

    The console's tables (``hubs``, ``supervision``, ``escalation``, ``notify``, ``console``)
    are described in ``commune.desk_config``."""

    receiver: ReceiverSection
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    hubs: tuple[ExpectedHubConfig, ...] = ()
    supervision: SupervisionConfig = Field(default_factory=SupervisionConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    notify: dict[Annotated[StrictStr, AfterValidator(target_name)], NotifyTarget] = Field(
        default_factory=dict
    )
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    forward: ForwardConfig = Field(default_factory=ForwardConfig)  # commune.dc09.config

    @field_validator("hubs")
    @classmethod
    def _unique_hubs(cls, hubs: tuple[ExpectedHubConfig, ...]) -> tuple[ExpectedHubConfig, ...]:
        seen: set[str] = set()
        for hub in hubs:
            if hub.id in seen:
                raise ValueError(f"hub {hub.id!r} is listed twice")
            seen.add(hub.id)
        return hubs

    @model_validator(mode="after")
    def _steps_name_targets(self) -> ReceiverConfig:
        for step in self.escalation.steps:
            for name in step.notify:
                if name not in self.notify:
                    known = ", ".join(sorted(self.notify)) or "none is configured"
                    raise ValueError(
                        f"escalation step {step.name!r} notifies {name!r}, which is not a "
                        f"[notify.<name>] table (known: {known})"
                    )
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_broker(cls, data: Any) -> Any:
        """No ``[broker]`` is validated as an empty one, so the password comes from the env."""
        if isinstance(data, Mapping) and "broker" not in data:
            return {**data, "broker": {}}
        return data


def parse_receiver_config(
    data: Mapping[str, Any], *, base_dir: Path, env: Mapping[str, str]
) -> ReceiverConfig:
    """Validate a parsed TOML table; ``ConfigError`` lists every problem (see ``parse_config``)."""
    try:
        return ReceiverConfig.model_validate(data, context=LoadContext(base_dir=base_dir, env=env))
    except ValidationError as exc:
        errors = pydantic_errors(exc, ReceiverConfig)
    raise ConfigError(errors)  # outside the except block: pydantic's text quotes input values


def load_receiver_config(path: Path, env: Mapping[str, str] | None = None) -> ReceiverConfig:
    """Read and validate a receiver config file (``env`` defaults to ``os.environ``)."""
    path = Path(path)
    return parse_receiver_config(
        read_toml(path), base_dir=path.resolve().parent, env=os.environ if env is None else env
    )


__all__ = ["ReceiverConfig", "ReceiverSection", "load_receiver_config", "parse_receiver_config"]
