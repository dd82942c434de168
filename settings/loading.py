"""Reading a config file: TOML in, a validated ``Config`` out, or one ``ConfigError`` holding
every problem found, in the order of the tables in docs/config.md."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import ConfigError
from settings.base import LoadContext
from settings.checks import cross_table_errors
from settings.config import ARRAYS, SECTIONS, Config
from settings.errors import not_utf8_error, pydantic_errors, toml_syntax_error


def read_toml(path: Path) -> dict[str, Any]:
    """The tables of a TOML file. A file that cannot be read, is not UTF-8 or is not TOML is a
    ``ConfigError`` at the file (and the line and column, where they are known)."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([not_utf8_error(path, exc)]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([toml_syntax_error(path, exc)]) from None


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
            data, context=LoadContext(base_dir=base_dir, env=env, cross_checked=True)
        )
    except ValidationError as exc:
        errors.extend(pydantic_errors(exc, Config))
    errors.extend(cross_table_errors(data))
    errors.sort(key=_file_order)
    if errors or config is None:
        # Raised outside the except block: pydantic's own error text quotes input values.
        raise ConfigError(errors)
    return config


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate one TOML config file (``env`` defaults to ``os.environ``)."""
    path = Path(path)
    data = read_toml(path)
    return parse_config(
        data, base_dir=path.resolve().parent, env=os.environ if env is None else env
    )


_TABLE_ORDER = (*SECTIONS[:4], *ARRAYS[:-1], *SECTIONS[4:], "cameras")


def _file_order(error: tuple[str, str]) -> tuple[int, int]:
    """Sort key: the order of the tables in docs/config.md, then the array index."""
    match = re.match(r"([^.\[]*)(?:\[(\d+)\])?", error[0])
    table, index = (match.group(1), match.group(2)) if match else ("", None)
    rank = _TABLE_ORDER.index(table) if table in _TABLE_ORDER else len(_TABLE_ORDER)
    return rank, int(index) if index else -1
