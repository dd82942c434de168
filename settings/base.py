"""What every configuration model shares: frozen tables that refuse unknown keys, and the load
context (where relative paths start, where the environment comes from)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo


class Frozen(BaseModel):
    """A table of a config file: immutable once built, and a key it does not know is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class LoadContext:
    """Passed to ``model_validate(..., context=...)``: what validation needs besides the file."""

    base_dir: Path  # relative paths in the file start here (the file's folder)
    env: Mapping[str, str]  # where the broker password may come from
    cross_checked: bool = False  # parse_config runs the checks across tables itself


def load_context(info: ValidationInfo) -> LoadContext:
    """The context a validator runs in; a model built in code gets the working folder and
    ``os.environ``."""
    ctx = info.context
    if isinstance(ctx, LoadContext):
        return ctx
    return LoadContext(base_dir=Path.cwd(), env=os.environ)


def field_of(item: Any, key: str) -> Any:
    """A key of a raw table or an attribute of an already built model (None if absent)."""
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


def zone_from_name(data: Any) -> Any:
    """A table's ``zone`` defaults to its ``name`` (a ``mode="before"`` model validator)."""
    if isinstance(data, Mapping) and "zone" not in data:
        name = data.get("name")
        if isinstance(name, str) and name:
            return {**data, "zone": name}
    return data
