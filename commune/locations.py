"""Where the receiver's store is: ``[receiver] store`` (a SQLite file, or a PostgreSQL URL), or
``<data dir>/receiver.sqlite3`` when the config does not say.

The data folder holds what is the machine's own whatever the store: the commune's signing key
(``commune.key``), the console's command counter, the camera snapshots.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationInfo

from commune.db import is_postgres_url, shown_location
from settings.base import load_context

DB_FILENAME = "receiver.sqlite3"


def store_location(
    configured: str | None, data_dir: Path, override: str | None = None
) -> str | Path:
    """The store to open: ``override`` (``--store``), else the configured one, else the file
    in the data folder."""
    chosen = override if override is not None else configured
    if chosen is None:
        return Path(data_dir) / DB_FILENAME
    return chosen if is_postgres_url(chosen) else Path(chosen)


def store_setting(value: str, info: ValidationInfo) -> str:
    """``[receiver] store``: a ``postgresql://`` URL libpq can parse, or a file path (relative
    to the config file's folder)."""
    if is_postgres_url(value):
        from psycopg import conninfo

        try:
            conninfo.conninfo_to_dict(value)
        except Exception as exc:  # psycopg.ProgrammingError: the URL's own message
            raise ValueError(f"not a PostgreSQL URL libpq accepts: {exc}") from None
        if ":" in value.split("://", 1)[1].split("@", 1)[0] and "@" in value:
            raise ValueError(
                f"{shown_location(value)} has a password in it: give it in ~/.pgpass, "
                "PGPASSFILE or PGPASSWORD instead (the URL is logged)"
            )
        return value
    if "://" in value:
        raise ValueError(f"{value!r}: a store is a file path or a postgresql:// URL")
    if not value.strip():
        raise ValueError("the store is empty: a file path or a postgresql:// URL")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = load_context(info).base_dir / path
    return str(path)


__all__ = ["DB_FILENAME", "store_location", "store_setting"]
