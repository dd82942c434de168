"""The escalation ladder on real alerts (stored events followed by the AlertBook) and a real
SQLite file: each step once when due, what it says, and what acknowledging does."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from notify_kit import (
    Endpoint,
    Store,
    expect_hub,
    fill,
    opened,
    receiver_config,
    small_disk,
    webhook,
)

from commune.desk_config import EscalationConfig
from commune.notify import messages
from commune.notify.escalation import Escalator
from commune.notify.sender import NotificationSender
from testkit.waiting import wait_until

LADDER = [
    {"name": "to-truong", "after_s": 60, "notify": ["leader"]},
    {"name": "truc-ban", "after_s": 180, "notify": ["leader", "duty"]},
]


def ladder(url: str = "http://127.0.0.1:9/none", alerts: tuple[str, ...] = ("alarm", "trouble")):
    return receiver_config(
        {"leader": webhook(f"{url}/leader"), "duty": webhook(f"{url}/duty")}, LADDER, alerts
    )


def test_each_step_is_queued_once_when_its_time_has_come(tmp_path: Path) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    hub = expect_hub(store)
    alert = store.open_alert(hub=hub)
    escalator = Escalator(
        store.alerts, store.queue, ladder().escalation, store.hubs, "https://console.example/"
    )
    t0 = opened(alert)
    assert escalator.tick(t0 + 59) == 0
    assert escalator.tick(t0 + 60) == 1
    assert escalator.tick(t0 + 61) == 0  # queued once
    assert escalator.tick(t0 + 200) == 2
    assert escalator.tick(t0 + 10_000) == 0
    rows = store.queue.for_alert(alert.id)
    assert [(n.step, n.target, n.kind) for n in rows] == [
        ("to-truong", "leader", "alert.escalated"),
        ("truc-ban", "leader", "alert.escalated"),
        ("truc-ban", "duty", "alert.escalated"),
    ]
    payload = rows[0].payload()
    assert payload == {
        "type": "alert.escalated",
        "alert": alert.to_dict(),
        "step": {"name": "to-truong", "index": 1, "after_s": 60},
        "hub": {
            "name": "Chợ An Đông, cổng 1",
            "place": "34 An Dương Vương",
            "contact": "Tổ trưởng Nguyễn Văn A, 0901 234 567",
            "latitude": 10.757,
            "longitude": 106.673,
        },
        "url": f"https://console.example/alerts/{alert.id}",
        "text": "Báo động PANIC tại Chợ An Đông, cổng 1 (34 An Dương Vương) "
        "chưa được xác nhận sau 1 phút",
    }
    assert rows[1].payload()["text"].endswith("chưa được xác nhận sau 3 phút")
    escalated = [r for r in store.audit.for_alert(alert.id) if r.action == "escalated"]
    assert [(r.actor, r.detail["step"], r.detail["notify"]) for r in escalated] == [
        ("system", "to-truong", ["leader"]),
        ("system", "truc-ban", ["leader", "duty"]),
    ]
    # A restart (new objects on the same file) does not queue a step again.
    store.close()
    again = Store(tmp_path / "receiver.sqlite3")
    assert Escalator(again.alerts, again.queue, ladder().escalation).tick(t0 + 20_000) == 0
    assert len(again.queue.for_alert(alert.id)) == 3


def test_a_receiver_back_after_several_steps_queues_them_all_in_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    alert = store.open_alert()
    escalator = Escalator(store.alerts, store.queue, ladder().escalation, language="en")
    assert escalator.tick(opened(alert) + 3600) == 3
    rows = store.queue.for_alert(alert.id)
    assert [n.step for n in rows] == ["to-truong", "truc-ban", "truc-ban"]
    # No hub row: the text names the hub by its id; no console URL: no link.
    assert rows[0].payload()["text"] == "PANIC alarm at hub-1 not acknowledged after 1 min"
    assert rows[0].payload()["hub"] is None and rows[0].payload()["url"] is None
    # The console's address from the config: a link to the alert.
    other = store.open_alert(hub="hub-2")
    config = EscalationConfig.model_validate(
        {"steps": LADDER[:1], "console_url": "http://10.0.0.2:8080/"}
    )
    assert Escalator(store.alerts, store.queue, config).tick(opened(other) + 61) == 1
    [n] = store.queue.for_alert(other.id)
    assert n.payload()["url"] == f"http://10.0.0.2:8080/alerts/{other.id}"


def test_only_the_configured_classes_of_alert_escalate(tmp_path: Path) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    person = store.open_alert(hub="hub-cam", kind="person")  # a detection
    tamper = store.open_alert(hub="hub-2", kind="tamper")  # a trouble
    late = max(opened(person), opened(tamper)) + 61
    assert Escalator(store.alerts, store.queue, ladder().escalation).tick(late) == 1
    assert store.queue.for_alert(person.id) == []
    [n] = store.queue.for_alert(tamper.id)
    assert n.payload()["text"].startswith("Sự cố TAMPER tại hub-2")
    detections = ladder(alerts=("detection",)).escalation
    assert Escalator(store.alerts, store.queue, detections, language="en").tick(late) == 1
    [n] = store.queue.for_alert(person.id)
    assert n.payload()["text"] == "PERSON detection at hub-cam not acknowledged after 1 min"


def test_an_acknowledged_alert_stops_its_ladder_and_the_people_told_hear_who(
    tmp_path: Path,
) -> None:
    with Endpoint() as server:
        config = ladder(server.url)
        store = Store(tmp_path / "receiver.sqlite3")
        hub = expect_hub(store)
        alert = store.open_alert(hub=hub)
        escalator = Escalator(store.alerts, store.queue, config.escalation, store.hubs)
        sender = NotificationSender(store.db, store.audit, config.notify)
        sender.start()
        try:
            t0 = opened(alert)
            assert escalator.tick(t0 + 61) == 1
            sender.wake()
            server.requests.wait_until(lambda got: len(got) == 1)
            store.alerts.acknowledge(alert.id, "trung-uy-lan")
            assert escalator.tick(t0 + 500) == 1  # not step 2: the follow-up to "leader"
            assert escalator.tick(t0 + 900) == 0
            sender.wake()
            wait_until(lambda: store.queue.counts() == {"pending": 0, "sent": 2, "damaged": 0})
        finally:
            sender.stop()
    requests = server.requests.items()
    assert [r.path for r in requests] == ["/leader", "/leader"]  # "duty" (step 2) never told
    assert [r.json()["type"] for r in requests] == ["alert.escalated", "alert.acknowledged"]
    follow_up = requests[1].json()
    assert follow_up["alert"]["ack_by"] == "trung-uy-lan"
    assert follow_up["step"]["name"] == "to-truong"  # the highest step it reached
    assert follow_up["text"] == (
        "Báo động PANIC tại Chợ An Đông, cổng 1 (34 An Dương Vương) đã được trung-uy-lan xác nhận"
    )
    actions = [r.action for r in store.audit.for_alert(alert.id) if r.actor == "system"]
    assert actions.count("escalated") == 1 and actions.count("escalation_stopped") == 1


def test_an_alert_acknowledged_before_its_first_step_sends_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    alert = store.open_alert()
    escalator = Escalator(store.alerts, store.queue, ladder().escalation)
    assert escalator.tick(opened(alert) + 30) == 0
    store.alerts.acknowledge(alert.id, "an")
    assert escalator.tick(opened(alert) + 3600) == 0
    assert store.queue.for_alert(alert.id) == []
    assert not [r for r in store.audit.for_alert(alert.id) if r.action.startswith("escalat")]


def test_a_trouble_restored_by_itself_tells_the_people_told_that_it_is_over(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    alert = store.open_alert(kind="tamper")
    escalator = Escalator(store.alerts, store.queue, ladder().escalation, language="en")
    assert escalator.tick(opened(alert) + 200) == 3
    store.restore(alert.hub, "tamper")
    assert escalator.tick(opened(alert) + 300) == 2  # one follow-up per target told
    follow_ups = [n for n in store.queue.for_alert(alert.id) if n.kind == "alert.closed"]
    assert [n.target for n in follow_ups] == ["leader", "duty"]
    assert follow_ups[0].payload()["text"] == "TAMPER trouble at hub-1 restored by itself"


def test_a_full_disk_makes_the_step_wait_for_the_next_tick(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_disk(tmp_path) as disk:
        store = Store(disk / "receiver.sqlite3")
        alert = store.open_alert()
        escalator = Escalator(store.alerts, store.queue, ladder().escalation)
        filler = fill(disk)
        with caplog.at_level(logging.ERROR, logger="commune.notify.escalation"):
            assert escalator.tick(opened(alert) + 61) == 0  # no exception for the desk
            assert escalator.tick(opened(alert) + 62) == 0
        assert len(caplog.records) == 1 and "refused a write" in caplog.records[0].getMessage()
        assert store.queue.for_alert(alert.id) == []
        filler.unlink()
        assert escalator.tick(opened(alert) + 63) == 1
        assert [n.step for n in store.queue.for_alert(alert.id)] == ["to-truong"]
        store.close()


def test_durations_read_naturally_in_both_languages() -> None:
    assert [messages.duration("vi", s) for s in (30, 60, 90, 3600, 5400)] == [
        "30 giây",
        "1 phút",
        "1 phút 30 giây",
        "1 giờ",
        "1 giờ 30 phút",
    ]
    assert [messages.duration("en", s) for s in (0.5, 60, 90, 7200)] == [
        "0.5 s",
        "1 min",
        "1 min 30 s",
        "2 h",
    ]


def test_a_language_the_messages_do_not_speak_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "receiver.sqlite3")
    with pytest.raises(ValueError, match="language must be one of vi, en"):
        Escalator(store.alerts, store.queue, ladder().escalation, language="fr")
