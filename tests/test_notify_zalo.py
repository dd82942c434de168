"""The Zalo Official Account adapter against a local HTTP server that imitates Zalo's two
endpoints: the customer-service message and the OAuth token refresh."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from notify_kit import ZALO_SECRET, Endpoint, Request, Store, opened, receiver_config, zalo

from commune.config import ReceiverConfig
from commune.desk_config import ZaloTarget
from commune.notify.channel import Delivery
from commune.notify.escalation import Escalator
from commune.notify.sender import NotificationSender
from commune.notify.zalo import ZaloChannel
from commune.notify.zalo_tokens import ZaloTokens
from testkit.waiting import wait_until

APP_ID = "1234567890"
SEED = "refresh-0"
STEPS = [{"name": "to-truong", "after_s": 60, "notify": ["zalo-to"]}]


class ZaloImitation:
    """Zalo as its documentation describes it: refresh tokens are single-use and rotate; a
    message with an access token that is not the current one answers HTTP 200, error -216."""

    def __init__(self, refresh_token: str = SEED) -> None:
        self.lock = threading.Lock()
        self.refresh_token = refresh_token
        self.valid: set[str] = set()
        self.issued = 0
        self.refuse: dict[str, int] = {}  # user id -> how many messages to refuse (-230)
        self.delivered: list[tuple[str, str]] = []  # (user id, text)

    def answer(self, request: Request) -> tuple[int, Any]:
        with self.lock:
            if request.path == "/v4/oa/access_token":
                return self._token(request)
            if request.path == "/v3.0/oa/message/cs":
                return self._message(request)
            return 404, {"error": 404, "message": "not found"}

    def _token(self, request: Request) -> tuple[int, Any]:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if request.headers.get("secret_key") != ZALO_SECRET:
            return 200, {"error": -14002, "message": "Invalid secret key"}
        if form != {
            "refresh_token": self.refresh_token,
            "app_id": APP_ID,
            "grant_type": "refresh_token",
        }:
            return 200, {"error": -14014, "message": "Invalid refresh token"}
        self.issued += 1
        access, self.refresh_token = f"access-{self.issued}", f"refresh-{self.issued}"
        self.valid = {access}
        return 200, {
            "access_token": access,
            "refresh_token": self.refresh_token,
            "expires_in": "3600",
        }

    def _message(self, request: Request) -> tuple[int, Any]:
        if request.headers.get("access_token") not in self.valid:
            return 200, {"error": -216, "message": "Access token is invalid"}
        body = request.json()
        user = body["recipient"]["user_id"]
        if self.refuse.get(user, 0) > 0:
            self.refuse[user] -= 1
            return 200, {"error": -230, "message": "User has not interacted with the OA"}
        self.delivered.append((user, body["message"]["text"]))
        return 200, {"error": 0, "message": "Success", "data": {"user_id": user}}

    def expire(self) -> None:
        with self.lock:
            self.valid.clear()


def config(base: str, seed: str = SEED, recipients: tuple[str, ...] = ("u-1", "u-2")):
    return receiver_config(
        {"zalo-to": zalo(base, list(recipients))},
        STEPS,
        env={"TUQUAN_ZALO_REFRESH_TOKEN": seed},
    )


def escalate_and_deliver(store: Store, cfg: ReceiverConfig, hub: str) -> int:
    """Open an alert on ``hub``, let it escalate, deliver it; the notification's id."""
    alert = store.open_alert(hub=hub)
    assert Escalator(store.alerts, store.queue, cfg.escalation).tick(opened(alert) + 61) == 1
    [n] = store.queue.for_alert(alert.id)
    sender = NotificationSender(store.db, store.audit, cfg.notify)
    sender.start()
    try:
        wait_until(lambda: store.queue.get(n.id).state == "sent", timeout=30, what="delivered")
    finally:
        sender.stop()
    return n.id


def stored_refresh_token(store: Store) -> str | None:
    state = ZaloTokens(store.db).load("zalo-to")
    return state.refresh_token if state is not None else None


def test_the_documented_request_shape_and_an_expired_token_refreshed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    zalo_server = ZaloImitation()
    caplog.set_level(logging.DEBUG)
    with Endpoint(zalo_server.answer) as server:
        cfg = config(server.url)
        store = Store(tmp_path / "receiver.sqlite3")
        first = escalate_and_deliver(store, cfg, "hub-1")

        refresh, *messages = server.requests.items()
        # No token yet: the config's refresh token is exchanged first.
        assert refresh.path == "/v4/oa/access_token"
        assert refresh.headers["secret_key"] == ZALO_SECRET
        assert refresh.headers["content-type"] == "application/x-www-form-urlencoded"
        assert parse_qs(refresh.body.decode()) == {
            "refresh_token": [SEED],
            "app_id": [APP_ID],
            "grant_type": ["refresh_token"],
        }
        text = store.queue.get(first).payload()["text"]
        assert text.startswith("Báo động PANIC tại hub-1")
        assert [(m.path, m.headers["access_token"], m.json()) for m in messages] == [
            (
                "/v3.0/oa/message/cs",
                "access-1",
                {"recipient": {"user_id": user}, "message": {"text": text}},
            )
            for user in ("u-1", "u-2")
        ]
        assert all(m.headers["content-type"] == "application/json" for m in messages)
        assert stored_refresh_token(store) == "refresh-1"  # the rotated one, persisted

        # Zalo invalidates the access token: -216, a refresh with the newest refresh token,
        # the new pair persisted, the message sent again and delivered.
        zalo_server.expire()
        server.requests.clear()
        second = escalate_and_deliver(store, cfg, "hub-2")
        steps = [(r.path, r.headers.get("access_token"), r.status) for r in server.requests.items()]
        assert steps == [
            ("/v3.0/oa/message/cs", "access-1", 200),  # answered error -216
            ("/v4/oa/access_token", None, 200),
            ("/v3.0/oa/message/cs", "access-2", 200),
            ("/v3.0/oa/message/cs", "access-2", 200),
        ]
        assert parse_qs(server.requests.items()[1].body.decode())["refresh_token"] == ["refresh-1"]
        assert stored_refresh_token(store) == "refresh-2"
        assert [user for user, _ in zalo_server.delivered] == ["u-1", "u-2", "u-1", "u-2"]
        n = store.queue.get(second)
        assert n is not None and n.attempts == 1 and n.done == ("u-1", "u-2")

    # Never a token or the secret in the logs or the audit trail.
    trail = repr([r.to_dict() for r in store.audit.recent(1000)])
    for secret in (ZALO_SECRET, SEED, "refresh-1", "refresh-2", "access-1", "access-2"):
        assert secret not in caplog.text and secret not in trail


def test_a_restart_uses_the_persisted_token(tmp_path: Path) -> None:
    zalo_server = ZaloImitation()
    with Endpoint(zalo_server.answer) as server:
        cfg = config(server.url)
        store = Store(tmp_path / "receiver.sqlite3")
        escalate_and_deliver(store, cfg, "hub-1")
        assert zalo_server.issued == 1
        store.close()

        # New objects on the same file, the same config (whose refresh token is used up).
        again = Store(tmp_path / "receiver.sqlite3")
        server.requests.clear()
        escalate_and_deliver(again, cfg, "hub-2")
        assert zalo_server.issued == 1  # no refresh: the stored access token is still good
        assert {r.headers["access_token"] for r in server.requests.items()} == {"access-1"}
        assert [user for user, _ in zalo_server.delivered] == ["u-1", "u-2", "u-1", "u-2"]


def test_a_recipient_who_has_it_is_not_sent_it_again(tmp_path: Path) -> None:
    zalo_server = ZaloImitation()
    zalo_server.refuse["u-2"] = 2
    with Endpoint(zalo_server.answer) as server:
        cfg = config(server.url)
        store = Store(tmp_path / "receiver.sqlite3")
        notification = escalate_and_deliver(store, cfg, "hub-1")
    assert [user for user, _ in zalo_server.delivered] == ["u-1", "u-2"]  # u-1 once
    n = store.queue.get(notification)
    assert n is not None and n.attempts == 3
    ends = [r for r in store.notify_records(notification) if r.action != "notify_attempt"]
    assert [r.action for r in ends] == ["notify_failed", "notify_failed", "notify_sent"]
    assert ends[0].detail["status"] == -230 and ends[0].detail["error"].startswith("u-2: ")
    assert ends[-1].detail["status"] == 0


def test_a_token_about_to_expire_is_refreshed_before_it_is_used(tmp_path: Path) -> None:
    zalo_server = ZaloImitation()
    now = [1_800_000_000.0]
    with Endpoint(zalo_server.answer) as server:
        target = config(server.url, recipients=("u-1",)).notify["zalo-to"]
        assert isinstance(target, ZaloTarget)
        store = Store(tmp_path / "receiver.sqlite3")
        channel = ZaloChannel("zalo-to", target, ZaloTokens(store.db), clock=lambda: now[0])
        payload = {"type": "alert.escalated", "text": "thử"}
        delivery = Delivery(1, 1, "zalo-to", 1, payload, b"{}")
        try:
            assert channel.send(delivery).ok
            now[0] += 3600 - 61  # the token (valid 3600 s) still has 61 s: used
            assert channel.send(delivery).ok
            now[0] += 2  # 59 s left: refreshed first, no refused message on the way
            assert channel.send(delivery).ok
        finally:
            channel.close()
    paths = [r.path.rsplit("/", 1)[-1] for r in server.requests.items()]
    assert paths == ["access_token", "cs", "cs", "access_token", "cs"]
    assert zalo_server.issued == 2


def test_a_refused_refresh_is_a_failed_attempt_and_a_new_seed_in_the_config_is_used(
    tmp_path: Path,
) -> None:
    zalo_server = ZaloImitation(refresh_token="refresh-from-the-oa-admin")
    with Endpoint(zalo_server.answer) as server:
        store = Store(tmp_path / "receiver.sqlite3")
        target = config(server.url, recipients=("u-1",)).notify["zalo-to"]
        assert isinstance(target, ZaloTarget)
        channel = ZaloChannel("zalo-to", target, ZaloTokens(store.db))
        delivery = Delivery(1, 1, "zalo-to", 1, {"type": "t", "text": "x"}, b"{}")
        outcome = channel.send(delivery)
        channel.close()
        assert not outcome.ok
        assert outcome.error == "token refresh refused: error -14014: Invalid refresh token"
        assert zalo_server.delivered == []

        # The operator puts the OA's new refresh token in the config: it seeds the target again.
        renewed = config(server.url, seed="refresh-from-the-oa-admin", recipients=("u-1",))
        target = renewed.notify["zalo-to"]
        assert isinstance(target, ZaloTarget)
        channel = ZaloChannel("zalo-to", target, ZaloTokens(store.db))
        assert channel.send(delivery).ok
        channel.close()
    assert zalo_server.delivered == [("u-1", "x")]
    assert stored_refresh_token(store) == "refresh-1"
