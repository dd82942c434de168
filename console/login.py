"""Logging in, slowed down by wrong passwords and stopped by a lock.

Each wrong password in a row makes the answer wait longer (``login_delay``: 0.25 s doubling,
at most 5 s) and the ``lockout_after``-th locks the account for ``lockout_minutes``; while it is
locked even the right password is refused. Every success, failure, lock and refusal is an audit
record with the name that was tried. A name that is no user costs the same password check and
the same wait as a wrong password, so the answer does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from commune.audit import AuditLog
from commune.desk_config import ConsoleConfig
from console.accounts import MAX_PASSWORD_CHARS, Accounts, Session
from core.events import utc_now_iso

log = logging.getLogger(__name__)

BASE_DELAY_S = 0.25
MAX_DELAY_S = 5.0
OK, WRONG, LOCKED = "ok", "wrong", "locked"


def login_delay(failures: int) -> float:
    """How long the answer to the ``failures``-th wrong password in a row waits."""
    if failures <= 0:
        return 0.0
    return min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** min(failures - 1, 16))


@dataclass(frozen=True)
class LoginResult:
    outcome: str  # OK, WRONG or LOCKED
    token: str = ""
    session: Session | None = None


def shown_name(name: str) -> str:
    """The tried name as the audit keeps it: printable, at most 64 characters."""
    return "".join(c for c in name[:64] if c.isprintable()) or "?"


async def attempt_login(
    accounts: Accounts,
    audit: AuditLog,
    cfg: ConsoleConfig,
    name: str,
    password: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> LoginResult:
    actor = shown_name(name)
    user = accounts.get_user(name)
    if user is not None and user.locked_at(utc_now_iso()):
        audit.append(
            actor, "login_refused", detail={"reason": "locked", "until": user.locked_until}
        )
        await sleep(BASE_DELAY_S)
        return LoginResult(LOCKED)
    good = len(password) <= MAX_PASSWORD_CHARS and await run_in_threadpool(
        accounts.verify, name, password
    )
    if good and user is not None:
        accounts.record_success(name)
        token, session = accounts.open_session(name, float(cfg.session_hours))
        audit.append(actor, "login", detail={"role": user.role})
        return LoginResult(OK, token, session)
    if user is None:
        failures, locked_until = 1, None
    else:
        failure = accounts.record_failure(name, cfg.lockout_after, float(cfg.lockout_minutes))
        failures, locked_until = failure.failures, failure.locked_until
    delay = login_delay(failures)
    audit.append(
        actor,
        "login_failed",
        detail={"failures": failures, "delay_s": delay, "known": user is not None},
    )
    if locked_until is not None:
        audit.append(actor, "account_locked", detail={"until": locked_until, "failures": failures})
        log.warning(
            "console account %s locked until %s after %d wrong passwords",
            actor,
            locked_until,
            failures,
        )
    await sleep(delay)
    return LoginResult(LOCKED if locked_until is not None else WRONG)
