"""Zalo Official Account notifications: the OA's "customer service" message to each follower.

One request per recipient::

    POST {api_base}/v3.0/oa/message/cs
    access_token: <the OA access token>
    Content-Type: application/json

    {"recipient": {"user_id": "<id>"}, "message": {"text": "<the notification's text>"}}

Zalo answers HTTP 200 with ``{"error": 0, ...}`` when it took the message, and HTTP 200 with a
non-zero ``error`` and a ``message`` when it did not. A recipient that took it is remembered on
the notification (``done``), so a retry goes only to the others; the notification is delivered
once every recipient has it.

The access token comes from the OA's refresh token::

    POST {oauth_base}/v4/oa/access_token
    secret_key: <the app's secret key>
    Content-Type: application/x-www-form-urlencoded

    refresh_token=<...>&app_id=<...>&grant_type=refresh_token

answered with ``{"access_token", "refresh_token", "expires_in"}`` (seconds, a string or a
number). It is refreshed when there is none, when it expires within ``REFRESH_MARGIN_S``, and
when a message is refused for the token (``TOKEN_ERRORS``); the new pair is stored
(``commune.notify.zalo_tokens``) before it is used. Tokens and the secret are never logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from commune.db import STORE_ERRORS
from commune.desk_config import ZaloTarget
from commune.notify.channel import Delivery, Outcome, describe
from commune.notify.zalo_tokens import TokenState, ZaloTokens, seed_digest
from core.errors import TuquanError

log = logging.getLogger(__name__)

MESSAGE_PATH = "/v3.0/oa/message/cs"
TOKEN_PATH = "/v4/oa/access_token"
# Zalo's answers for a message refused because of its access token: -216 "access token is
# invalid" (the OA API's code, also given for an expired token) and -124 "access token invalid"
# (the code of Zalo's notification and OAuth services).
TOKEN_ERRORS = frozenset({-216, -124})
REFRESH_MARGIN_S = 60.0
MAX_TOKEN_LIFE_S = 7 * 24 * 3600.0  # an absurd expires_in is not believed past this
MAX_TEXT_CHARS = 2000  # Zalo's limit for a text message
MAX_ANSWER_BYTES = 64 * 1024


class TokenFailure(TuquanError):
    """No usable access token (the refresh failed, or its result could not be stored)."""


@dataclass(frozen=True)
class Answer:
    """Zalo's ``error`` (None when there was no readable answer) and its message."""

    code: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.code is None else f"error {self.code}: {self.message}"


class ZaloChannel:
    """Sends notifications through one ``[notify.<name>]`` Zalo OA target."""

    def __init__(
        self,
        name: str,
        target: ZaloTarget,
        tokens: ZaloTokens,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.target = target
        self.tokens = tokens
        self._clock = clock
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client()
        self._lock = threading.Lock()
        self._unsaved: TokenState | None = None  # refreshed but not yet stored (a full disk)

    # -- messages ----------------------------------------------------------------------------

    def send(self, delivery: Delivery) -> Outcome:
        text = str(delivery.payload.get("text", ""))[:MAX_TEXT_CHARS]
        done = list(delivery.done)
        refused: list[str] = []
        last: Answer | None = None
        for recipient in self.target.recipients:
            if recipient in done:
                continue
            try:
                last = self._message(recipient, text)
            except TokenFailure as exc:
                return Outcome(False, error=str(exc), done=tuple(done))
            if last.code == 0:
                done.append(recipient)
            else:
                refused.append(f"{recipient}: {last}")
        if not refused:
            return Outcome(True, status=0, done=tuple(done))
        status = last.code if last is not None else None
        return Outcome(False, status=status, error="; ".join(refused), done=tuple(done))

    def _message(self, recipient: str, text: str) -> Answer:
        """Send to one recipient; once more with a new token if Zalo refused the token."""
        with self._lock:
            answer = self._post_message(self._access_token(), recipient, text)
            if answer.code in TOKEN_ERRORS:
                log.info("Zalo target %s: the access token was refused (%s)", self.name, answer)
                answer = self._post_message(self._refresh(self._state()), recipient, text)
            return answer

    def _post_message(self, token: str, recipient: str, text: str) -> Answer:
        body = {"recipient": {"user_id": recipient}, "message": {"text": text}}
        try:
            response = self._client.post(
                self.target.api_base.rstrip("/") + MESSAGE_PATH,
                json=body,
                headers={"access_token": token},
                timeout=float(self.target.timeout_s),
                follow_redirects=False,
            )
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return Answer(None, describe(exc))
        answer = _json(response)
        if not 200 <= response.status_code < 300:
            return Answer(None, f"HTTP {response.status_code}")
        if answer is None:
            return Answer(None, "the answer is not a JSON object")
        code = answer.get("error")
        if not isinstance(code, int) or isinstance(code, bool):
            return Answer(None, "the answer has no error code")
        return Answer(code, str(answer.get("message", ""))[:200])

    # -- tokens ------------------------------------------------------------------------------

    def _access_token(self) -> str:
        state = self._state()
        if state.access_token and state.expires_at - self._clock() > REFRESH_MARGIN_S:
            return state.access_token
        return self._refresh(state)

    def _state(self) -> TokenState:
        """The tokens to use: stored ones, else the config's seed (stored first)."""
        if self._unsaved is not None:
            self._save(self._unsaved)
        stored = self.tokens.load(self.name)
        seed = self.target.refresh_token
        digest = seed_digest(seed.get_secret_value()) if seed is not None else None
        if stored is not None and (digest is None or stored.seed_sha256 == digest):
            return stored
        if seed is None:
            raise TokenFailure(
                f"Zalo target {self.name} has no refresh token: set refresh_token_env or "
                "refresh_token_file"
            )
        if stored is not None:
            log.info(
                "Zalo target %s: a new refresh token in the config replaces the stored one",
                self.name,
            )
        state = TokenState(None, 0.0, seed.get_secret_value(), digest)
        self._save(state)
        return state

    def _refresh(self, state: TokenState) -> str:
        assert self.target.secret is not None  # the config requires it
        try:
            response = self._client.post(
                self.target.oauth_base.rstrip("/") + TOKEN_PATH,
                data={
                    "refresh_token": state.refresh_token,
                    "app_id": self.target.app_id,
                    "grant_type": "refresh_token",
                },
                headers={"secret_key": self.target.secret.get_secret_value()},
                timeout=float(self.target.timeout_s),
                follow_redirects=False,
            )
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise TokenFailure(f"token refresh: {describe(exc)}") from None
        answer = _json(response)
        if not 200 <= response.status_code < 300:
            raise TokenFailure(f"token refresh: HTTP {response.status_code}")
        if answer is None:
            raise TokenFailure("token refresh: the answer is not a JSON object")
        access, refresh = answer.get("access_token"), answer.get("refresh_token")
        if not isinstance(access, str) or not access:
            code, message = answer.get("error"), str(answer.get("message", ""))[:200]
            raise TokenFailure(f"token refresh refused: error {code}: {message}")
        life = _seconds(answer.get("expires_in"))
        new = TokenState(
            access_token=access,
            expires_at=self._clock() + life,
            refresh_token=refresh if isinstance(refresh, str) and refresh else state.refresh_token,
            seed_sha256=state.seed_sha256,
        )
        self._unsaved = new  # the old refresh token is used up: keep the new one at any cost
        self._save(new)
        log.info("Zalo target %s: access token refreshed (valid for %d s)", self.name, life)
        return access

    def _save(self, state: TokenState) -> None:
        try:
            self.tokens.save(self.name, state)
        except STORE_ERRORS as exc:
            raise TokenFailure(f"cannot store the Zalo tokens: {describe(exc)}") from None
        self._unsaved = None

    def close(self) -> None:
        if self._own_client:
            self._client.close()


def _json(response: httpx.Response) -> dict[str, Any] | None:
    content = response.content
    if len(content) > MAX_ANSWER_BYTES:
        return None
    try:
        value = response.json()
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _seconds(value: object) -> float:
    """``expires_in`` as Zalo gives it (a number, or a string of one); what cannot be believed
    is 0, so the token is refreshed again before its next use."""
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return 0.0
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return 0.0
    return min(float(value), MAX_TOKEN_LIFE_S)
