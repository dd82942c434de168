"""Webhook notifications: a JSON POST, signed with HMAC-SHA256 (GitHub/Stripe style).

Each request carries:

- ``Content-Type: application/json``; the body is the notification's payload, the same bytes
  at every attempt;
- ``X-Tuquan-Timestamp``: the Unix time of this attempt, in whole seconds (decimal digits);
- ``X-Tuquan-Signature: sha256=<hex>``: the HMAC-SHA256, keyed with the target's secret (its
  UTF-8 bytes), of ``<timestamp> "." <body>``: the timestamp header's bytes, one dot, then the
  body's exact bytes. A receiver recomputes it (``verify_signature``) and may refuse a timestamp
  too far from its clock, so a recorded request cannot be replayed later;
- ``X-Tuquan-Delivery``: the notification's id. Delivery is at least once (a retry after a
  lost answer sends it again), so a receiver keeps the ids it has seen and drops repeats.

A 2xx answer is a delivery; anything else (3xx included: redirects are not followed), a
timeout or a refused connection is a failed attempt, retried. The answer's body is never read.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx

from commune.desk_config import WebhookTarget
from commune.notify.channel import Delivery, Outcome, describe

SIGNATURE_HEADER = "X-Tuquan-Signature"
TIMESTAMP_HEADER = "X-Tuquan-Timestamp"
DELIVERY_HEADER = "X-Tuquan-Delivery"
USER_AGENT = "tuquan-notify/1"


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Tuquan-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(_key(secret), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes,
    header: str | None,
    *,
    max_age_s: float | None = None,
    now: float | None = None,
) -> bool:
    """True when ``header`` (the ``X-Tuquan-Signature`` received) signs ``body`` at
    ``timestamp`` (the ``X-Tuquan-Timestamp`` received) with ``secret``. With ``max_age_s``,
    also refuse a timestamp further than that from ``now`` (a replay)."""
    if not isinstance(header, str) or not header.startswith("sha256="):
        return False
    stamp = str(timestamp)
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return False
    if max_age_s is not None:
        current = time.time() if now is None else now
        if abs(current - int(stamp)) > max_age_s:
            return False
    return hmac.compare_digest(sign(secret, stamp, body), header)


class WebhookChannel:
    """Posts notifications to one ``[notify.<name>]`` webhook."""

    def __init__(self, name: str, target: WebhookTarget, client: httpx.Client | None = None):
        self.name = name
        self.target = target
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client()

    def headers(self, delivery: Delivery, timestamp: str) -> dict[str, str]:
        assert self.target.secret is not None  # the config requires it
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.target.secret.get_secret_value(), timestamp, delivery.body),
            DELIVERY_HEADER: str(delivery.id),
        }

    def send(self, delivery: Delivery) -> Outcome:
        timestamp = str(int(time.time()))
        try:
            with self._client.stream(
                "POST",
                self.target.url,
                content=delivery.body,
                headers=self.headers(delivery, timestamp),
                timeout=float(self.target.timeout_s),
                follow_redirects=False,
            ) as response:
                status = response.status_code
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return Outcome(False, error=describe(exc))
        if 200 <= status < 300:
            return Outcome(True, status=status)
        return Outcome(False, status=status, error=f"HTTP {status}")

    def close(self) -> None:
        if self._own_client:
            self._client.close()
