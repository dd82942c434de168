"""The commune receiver's config file: which commune, which broker.

```toml
[receiver]
commune = "phuong-1"
share_group = "police"      # optional: MQTT shared subscription, for several receivers

[broker]                    # the same keys as a hub's [broker] (docs/config.md)
host = "mqtt.commune.example"
port = 8883
username = "receiver-phuong-1"
credentials_file = "credentials.toml"
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field, StrictStr, ValidationError

from core.errors import ConfigError
from settings import (
    BrokerConfig,
    HubConfig,
    _Context,
    _Frozen,
    _pydantic_errors,
    _toml_syntax_error,
)


class ReceiverSection(_Frozen):
    commune: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    share_group: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    client_id: Annotated[StrictStr, Field(min_length=1)] | None = None


class ReceiverConfig(_Frozen):
    receiver: ReceiverSection
    broker: BrokerConfig = Field(default_factory=BrokerConfig)


def load_receiver_config(path: Path, env: Mapping[str, str] | None = None) -> ReceiverConfig:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read the file: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_syntax_error(path, exc)]) from None
    data.setdefault("broker", {})
    context = _Context(base_dir=path.resolve().parent, env=os.environ if env is None else env)
    try:
        return ReceiverConfig.model_validate(data, context=context)
    except ValidationError as exc:
        errors = _pydantic_errors(exc)
    raise ConfigError(errors)


__all__ = ["HubConfig", "ReceiverConfig", "load_receiver_config"]
