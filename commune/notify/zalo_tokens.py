"""The Zalo Official Account tokens of each target, kept in the receiver's store.

Zalo's refresh token is single-use: each refresh answers a new access token *and* a new refresh
token, and the old refresh token stops working. So the newest pair is written here (committed)
before it is used, and a restart carries on with it rather than with the refresh token of the
config, which was used up long ago.

The config's refresh token seeds a target on first use. Its SHA-256 is kept beside the tokens:
when an operator puts a different refresh token in the config (after the stored one was revoked,
say), the new one seeds the target again. Tokens are never logged, and never leave this table
except in requests to Zalo.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from commune.db import Db
from core.events import utc_now_iso

TABLE = "zalo_tokens"

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        target TEXT PRIMARY KEY NOT NULL,
        access_token TEXT,
        expires_at REAL NOT NULL DEFAULT 0,
        refresh_token TEXT NOT NULL,
        seed_sha256 TEXT,
        updated_at TEXT NOT NULL
    )""",
)


@dataclass(frozen=True)
class TokenState:
    """One target's tokens; ``expires_at`` in Unix seconds (0: no usable access token)."""

    access_token: str | None
    expires_at: float
    refresh_token: str
    seed_sha256: str | None

    def __repr__(self) -> str:  # never show a token
        return f"TokenState(expires_at={self.expires_at!r}, seed_sha256={self.seed_sha256!r})"


def seed_digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()


class ZaloTokens:
    """The ``zalo_tokens`` table of a ``Db``."""

    def __init__(self, db: Db) -> None:
        self.db = db
        db.schema(SCHEMA)

    def load(self, target: str) -> TokenState | None:
        row = self.db.read_one(f"SELECT * FROM {TABLE} WHERE target = ?", (target,))
        if row is None or not isinstance(row["refresh_token"], str):
            return None
        access = row["access_token"]
        expires = row["expires_at"]
        return TokenState(
            access_token=access if isinstance(access, str) and access else None,
            expires_at=float(expires) if isinstance(expires, int | float) else 0.0,
            refresh_token=row["refresh_token"],
            seed_sha256=row["seed_sha256"],
        )

    def save(self, target: str, state: TokenState) -> None:
        """Write ``state`` (committed when this returns; raises ``sqlite3.Error`` if not)."""
        with self.db.tx() as conn:
            conn.execute(
                f"INSERT INTO {TABLE} (target, access_token, expires_at, refresh_token, "
                "seed_sha256, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(target) DO UPDATE "
                "SET access_token = excluded.access_token, expires_at = excluded.expires_at, "
                "refresh_token = excluded.refresh_token, seed_sha256 = excluded.seed_sha256, "
                "updated_at = excluded.updated_at",
                (
                    target,
                    state.access_token,
                    state.expires_at,
                    state.refresh_token,
                    state.seed_sha256,
                    utc_now_iso(),
                ),
            )
