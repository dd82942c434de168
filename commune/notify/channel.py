"""What the sender hands an endpoint adapter, and what it hands back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Delivery:
    """One attempt at one notification: ``body`` is the stored payload text, sent as it is."""

    id: int
    alert_id: int
    target: str
    attempt: int
    payload: dict[str, Any]
    body: bytes
    done: tuple[str, ...] = ()  # recipients that already have it


@dataclass(frozen=True)
class Outcome:
    """``ok``: the endpoint took it. ``status`` is what it answered (an HTTP status, a Zalo
    error code), ``error`` why it failed; ``done`` the recipients that have it so far."""

    ok: bool
    status: int | str | None = None
    error: str | None = None
    done: tuple[str, ...] = ()


class Channel(Protocol):
    """An endpoint adapter. ``send`` makes one attempt and never raises for what the endpoint
    or the network did (that is a failed ``Outcome``)."""

    def send(self, delivery: Delivery) -> Outcome: ...

    def close(self) -> None: ...


def describe(exc: BaseException) -> str:
    """An exception as an audit record may show it (its type and message, short)."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]
