"""Webhook notifications against a real HTTP server on loopback: down, then answering 503, then
up; a silent one; what is signed and how a receiver checks it."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from pathlib import Path

from notify_kit import WEBHOOK_SECRET, Endpoint, Request, Store, opened, receiver_config, webhook

from commune.notify.escalation import Escalator
from commune.notify.sender import NotificationSender
from commune.notify.webhook import sign, verify_signature
from testkit.broker import free_port
from testkit.waiting import wait_until

STEPS = [{"name": "to-truong", "after_s": 60, "notify": ["hook"]}]


def independent_signature(request: Request) -> str:
    """The signature as an integrator computes it from the docs, without tuquan's code."""
    signed = request.headers["x-tuquan-timestamp"].encode() + b"." + request.body
    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()


def test_a_webhook_down_for_a_while_receives_every_notification_once_back_in_order(
    tmp_path: Path,
) -> None:
    port = free_port()  # nobody listens there yet: connections are refused
    config = receiver_config({"hook": webhook(f"http://127.0.0.1:{port}/tuquan")}, STEPS)
    store = Store(tmp_path / "receiver.sqlite3")
    alerts = [store.open_alert(hub=f"hub-{n}") for n in (1, 2, 3)]
    escalator = Escalator(store.alerts, store.queue, config.escalation)
    assert escalator.tick(now=max(opened(a) for a in alerts) + 61) == 3
    ids = [n.id for n in store.queue.pending("hook")]
    assert len(ids) == 3

    # Once it listens, the endpoint answers 503 twice more before it takes anything.
    replies = itertools.chain([503, 503], itertools.repeat(200))
    server = Endpoint(lambda request: (next(replies), {}), port=port)
    sender = NotificationSender(store.db, store.audit, config.notify)
    sender.start()
    try:
        wait_until(
            lambda: len(store.notify_records(ids[0])) >= 6,  # three refused attempts
            timeout=30,
            what="attempts at the first notification while the endpoint is down",
        )
        with server:
            wait_until(
                lambda: store.queue.counts()["sent"] == 3,
                timeout=30,
                what="every notification delivered",
            )
    finally:
        sender.stop()

    requests = server.requests.items()
    accepted = [r for r in requests if r.status == 200]
    assert [r.delivery for r in accepted] == ids  # each once, in the order they were queued
    # In order per target: nothing later was even tried before the earlier one was taken.
    assert [r.delivery for r in requests] == sorted(r.delivery for r in requests)
    assert [r.delivery for r in requests if r.status == 503] == [ids[0], ids[0]]
    for request, alert in zip(accepted, alerts, strict=True):
        assert request.path == "/tuquan"
        assert request.headers["content-type"] == "application/json"
        signature = request.headers["x-tuquan-signature"]
        assert verify_signature(
            WEBHOOK_SECRET, request.headers["x-tuquan-timestamp"], request.body, signature
        )
        assert signature == independent_signature(request)
        body = request.json()
        assert body["type"] == "alert.escalated"
        assert body["alert"]["id"] == alert.id
        assert body["step"] == {"name": "to-truong", "index": 1, "after_s": 60}

    # Every attempt is audited: its start, then how it ended.
    first = store.queue.get(ids[0])
    assert first is not None and first.state == "sent" and first.attempts >= 6
    records = store.notify_records(ids[0])
    assert [r.detail["attempt"] for r in records if r.action == "notify_attempt"] == list(
        range(1, first.attempts + 1)
    )
    ends = [r for r in records if r.action != "notify_attempt"]
    assert [r.action for r in ends] == ["notify_failed"] * (first.attempts - 1) + ["notify_sent"]
    assert "ConnectError" in ends[0].detail["error"]
    assert [r.detail.get("status") for r in ends[-3:]] == [503, 503, 200]
    assert all(r.actor == "system" and r.detail["target"] == "hook" for r in records)
    for later in ids[1:]:
        assert [r.action for r in store.notify_records(later)] == ["notify_attempt", "notify_sent"]


def test_a_silent_endpoint_and_a_redirect_are_failed_attempts_retried(tmp_path: Path) -> None:
    calls = itertools.count()

    def answer(request: Request) -> tuple[int, object]:
        n = next(calls)
        if n == 0:
            time.sleep(3)  # longer than the target's timeout: a peer that never answers
        return (302 if n == 1 else 200), {}

    with Endpoint(answer) as server:
        config = receiver_config({"hook": webhook(server.url, timeout_s=0.5)}, STEPS)
        store = Store(tmp_path / "receiver.sqlite3")
        alert = store.open_alert()
        assert Escalator(store.alerts, store.queue, config.escalation).tick(opened(alert) + 60) == 1
        sender = NotificationSender(store.db, store.audit, config.notify)
        sender.start()
        try:
            wait_until(lambda: store.queue.counts()["sent"] == 1, timeout=30, what="delivered")
        finally:
            sender.stop()
    [n] = store.queue.for_alert(alert.id)
    ends = [r for r in store.notify_records(n.id) if r.action != "notify_attempt"]
    assert [r.action for r in ends] == ["notify_failed", "notify_failed", "notify_sent"]
    assert "Timeout" in ends[0].detail["error"]
    assert ends[1].detail["status"] == 302
    # The same bytes at every attempt: a receiver can dedupe on X-Tuquan-Delivery.
    bodies = {r.body for r in server.requests.items()}
    assert len(bodies) == 1 and {r.delivery for r in server.requests.items()} == {n.id}


def test_what_is_signed_and_what_a_receiver_refuses() -> None:
    body = json.dumps({"type": "alert.escalated", "text": "x"}).encode()
    stamp = "1760000000"
    header = sign(WEBHOOK_SECRET, stamp, body)
    expected = hmac.new(WEBHOOK_SECRET.encode(), b"1760000000." + body, hashlib.sha256)
    assert header == "sha256=" + expected.hexdigest()
    assert verify_signature(WEBHOOK_SECRET, stamp, body, header)
    assert verify_signature(WEBHOOK_SECRET.encode(), int(stamp), body, header)
    assert not verify_signature(WEBHOOK_SECRET, stamp, body + b" ", header)  # a changed body
    assert not verify_signature(WEBHOOK_SECRET, "1760000001", body, header)  # another time
    assert not verify_signature("another-secret", stamp, body, header)
    assert not verify_signature(WEBHOOK_SECRET, stamp, body, header.removeprefix("sha256="))
    assert not verify_signature(WEBHOOK_SECRET, stamp, body, None)
    assert not verify_signature(WEBHOOK_SECRET, "-1", body, sign(WEBHOOK_SECRET, "-1", body))
    assert not verify_signature(WEBHOOK_SECRET, "1e9", body, header)
    # A replay: right signature, but too old for a receiver that allows 5 minutes.
    now = 1760000000 + 301
    assert not verify_signature(WEBHOOK_SECRET, stamp, body, header, max_age_s=300, now=now)
    assert verify_signature(WEBHOOK_SECRET, stamp, body, header, max_age_s=300, now=now - 2)
