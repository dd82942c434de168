"""The console's accounts, in the receiver's SQLite file: users, their sessions, API tokens.

- ``console_users``: name, role (viewer < operator < admin), the argon2id hash of the password,
  the count of wrong passwords in a row and, once that reaches the configured limit, until when
  the account is locked.
- ``console_sessions``: one row per logged-in browser. The cookie holds a random token; only
  its SHA-256 is stored, so a copy of the file does not give anyone a session. Each session has
  its own CSRF token and an expiry.
- ``console_tokens``: API tokens for integrations (a province system, a community app), by
  name and role; the token is shown once when made and only its SHA-256 is kept.

Tokens are 256 random bits, so a plain SHA-256 is enough for them; passwords are chosen by
people and get argon2id (argon2-cffi's defaults, rehashed at login when those change).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from commune.db import INTEGRITY_ERRORS, Db
from core.errors import TuquanError
from core.events import utc_now_iso

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
_RANK = {role: rank for rank, role in enumerate(ROLES)}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this only bounds the work per attempt
TOKEN_PREFIX = "tqc_"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS console_users (
        name TEXT PRIMARY KEY NOT NULL,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        failed INTEGER NOT NULL DEFAULT 0,
        locked_until TEXT,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS console_sessions (
        token_hash TEXT PRIMARY KEY NOT NULL,
        "user" TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )""",
    'CREATE INDEX IF NOT EXISTS idx_console_sessions_user ON console_sessions ("user")',
    """CREATE TABLE IF NOT EXISTS console_tokens (
        name TEXT PRIMARY KEY NOT NULL,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    )""",
)


class AccountError(TuquanError):
    """A bad name, role or password, or a user or token that does not (or already) exist."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    failed: int
    locked_until: str | None
    created_at: str

    def locked_at(self, now: str) -> bool:
        return self.locked_until is not None and self.locked_until > now


@dataclass(frozen=True)
class Session:
    user: str
    role: str
    csrf: str
    expires_at: str
    token_hash: str


@dataclass(frozen=True)
class ApiToken:
    name: str
    role: str
    created_at: str


@dataclass(frozen=True)
class Failure:
    """A wrong password: how many in a row now, and until when the account is locked (set
    only by the failure that locked it)."""

    failures: int
    locked_until: str | None


def role_allows(role: str, needed: str) -> bool:
    """Whether ``role`` is at least ``needed`` (viewer < operator < admin)."""
    return _RANK.get(role, -1) >= _RANK[needed]


def check_name(name: str, what: str = "user name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AccountError(
            f"{name!r} is not a valid {what}: use 1 to 64 letters, digits, '.', '_', '@' or "
            "'-', starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def check_password(password: str) -> str:
    if not password:
        raise AccountError("the password is empty")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"the password is longer than {MAX_PASSWORD_CHARS} characters")
    return password


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def later(minutes: float = 0, hours: float = 0) -> str:
    """UTC ISO-8601 (as ``utc_now_iso``) that far from now."""
    at = datetime.now(UTC) + timedelta(minutes=minutes, hours=hours)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Accounts:
    """The three tables of a ``Db``. Safe from any thread (``Db`` serialises)."""

    def __init__(self, db: Db, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.hasher = hasher if hasher is not None else PasswordHasher()
        # Verified against when the user does not exist, so that a wrong name costs the same
        # time as a wrong password.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        db.schema(SCHEMA)

    # -- users -----------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str) -> User:
        check_name(name)
        check_role(role)
        hashed = self.hasher.hash(check_password(password))
        try:
            with self.db.tx() as conn:
                conn.execute(
                    "INSERT INTO console_users (name, role, password_hash, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (name, role, hashed, utc_now_iso()),
                )
        except INTEGRITY_ERRORS:
            raise AccountError(f"user {name!r} already exists") from None
        return self._require(name)

    def remove_user(self, name: str) -> None:
        """Remove the user and end their sessions."""
        with self.db.tx() as conn:
            cur = conn.execute("DELETE FROM console_users WHERE name = ?", (name,))
            if not cur.rowcount:
                raise AccountError(f"no user {name!r}")
            conn.execute('DELETE FROM console_sessions WHERE "user" = ?', (name,))

    def set_password(self, name: str, password: str) -> None:
        """A new password: unlocks the account and ends its sessions."""
        hashed = self.hasher.hash(check_password(password))
        with self.db.tx() as conn:
            cur = conn.execute(
                "UPDATE console_users SET password_hash = ?, failed = 0, locked_until = NULL "
                "WHERE name = ?",
                (hashed, name),
            )
            if not cur.rowcount:
                raise AccountError(f"no user {name!r}")
            conn.execute('DELETE FROM console_sessions WHERE "user" = ?', (name,))

    def set_role(self, name: str, role: str) -> None:
        check_role(role)
        with self.db.tx() as conn:
            cur = conn.execute("UPDATE console_users SET role = ? WHERE name = ?", (role, name))
            if not cur.rowcount:
                raise AccountError(f"no user {name!r}")

    def unlock(self, name: str) -> None:
        with self.db.tx() as conn:
            cur = conn.execute(
                "UPDATE console_users SET failed = 0, locked_until = NULL WHERE name = ?", (name,)
            )
            if not cur.rowcount:
                raise AccountError(f"no user {name!r}")

    def get_user(self, name: str) -> User | None:
        row = self.db.read_one(
            "SELECT name, role, failed, locked_until, created_at FROM console_users WHERE name = ?",
            (name,),
        )
        return User(**dict(row)) if row is not None else None

    def _require(self, name: str) -> User:
        user = self.get_user(name)
        if user is None:
            raise AccountError(f"no user {name!r}")
        return user

    def users(self) -> list[User]:
        rows = self.db.read(
            "SELECT name, role, failed, locked_until, created_at FROM console_users ORDER BY name"
        )
        return [User(**dict(r)) for r in rows]

    def verify(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s (slow on purpose: argon2id). Rehashes a hash
        made with older parameters. An unknown user costs the same and is False."""
        row = self.db.read_one("SELECT password_hash FROM console_users WHERE name = ?", (name,))
        hashed = str(row[0]) if row is not None else self._dummy_hash
        try:
            self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False
        if row is None:
            return False
        if self.hasher.check_needs_rehash(hashed):
            with self.db.tx() as conn:
                conn.execute(
                    "UPDATE console_users SET password_hash = ? WHERE name = ? "
                    "AND password_hash = ?",
                    (self.hasher.hash(password), name, hashed),
                )
        return True

    def record_failure(self, name: str, lock_after: int, lock_minutes: float) -> Failure:
        """One more wrong password for ``name``; the ``lock_after``-th in a row locks the
        account for ``lock_minutes`` (and starts the count again)."""
        with self.db.tx() as conn:
            row = conn.execute(
                "UPDATE console_users SET failed = failed + 1 WHERE name = ? RETURNING failed",
                (name,),
            ).fetchone()
            if row is None:
                return Failure(0, None)
            failures = int(row[0])
            if failures < lock_after:
                return Failure(failures, None)
            until = later(minutes=lock_minutes)
            conn.execute(
                "UPDATE console_users SET failed = 0, locked_until = ? WHERE name = ?",
                (until, name),
            )
            return Failure(failures, until)

    def record_success(self, name: str) -> None:
        with self.db.tx() as conn:
            conn.execute(
                "UPDATE console_users SET failed = 0, locked_until = NULL WHERE name = ?", (name,)
            )

    # -- sessions --------------------------------------------------------------------------

    def open_session(self, name: str, hours: float) -> tuple[str, Session]:
        """A new session for ``name``: (the cookie's token, the session)."""
        user = self._require(name)
        token = secrets.token_urlsafe(32)
        session = Session(
            user=name,
            role=user.role,
            csrf=secrets.token_urlsafe(32),
            expires_at=later(hours=hours),
            token_hash=digest(token),
        )
        with self.db.tx() as conn:
            now = utc_now_iso()
            conn.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            conn.execute(
                'INSERT INTO console_sessions (token_hash, "user", csrf, created_at, expires_at) '
                "VALUES (?, ?, ?, ?, ?)",
                (session.token_hash, name, session.csrf, now, session.expires_at),
            )
        return token, session

    def session(self, token: str) -> Session | None:
        """The live session of this cookie token, with the user's current role; None if it
        expired, was closed, or its user was removed."""
        if not token or len(token) > 200:
            return None
        row = self.db.read_one(
            'SELECT s."user" AS "user", u.role, s.csrf, s.expires_at, s.token_hash '
            'FROM console_sessions s JOIN console_users u ON u.name = s."user" '
            "WHERE s.token_hash = ? AND s.expires_at > ?",
            (digest(token), utc_now_iso()),
        )
        return Session(**dict(row)) if row is not None else None

    def close_session(self, token_hash: str) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,))

    # -- API tokens ------------------------------------------------------------------------

    def add_token(self, name: str, role: str) -> str:
        """Make a token; returns it (the only time it can be seen)."""
        check_name(name, "token name")
        check_role(role)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self.db.tx() as conn:
                conn.execute(
                    "INSERT INTO console_tokens (name, role, token_hash, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (name, role, digest(token), utc_now_iso()),
                )
        except INTEGRITY_ERRORS:
            raise AccountError(f"token {name!r} already exists") from None
        return token

    def remove_token(self, name: str) -> None:
        with self.db.tx() as conn:
            cur = conn.execute("DELETE FROM console_tokens WHERE name = ?", (name,))
            if not cur.rowcount:
                raise AccountError(f"no token {name!r}")

    def tokens(self) -> list[ApiToken]:
        rows = self.db.read("SELECT name, role, created_at FROM console_tokens ORDER BY name")
        return [ApiToken(**dict(r)) for r in rows]

    def token(self, token: str) -> ApiToken | None:
        """The API token this bearer string is, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = self.db.read_one(
            "SELECT name, role, created_at FROM console_tokens WHERE token_hash = ?",
            (digest(token),),
        )
        return ApiToken(**dict(row)) if row is not None else None
