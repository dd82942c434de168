"""``tuquan fleet`` against a real Mosquitto and real commune receivers with SQLite stores: every
event receipted and stored once, signed and verified both ways, commands answered, the will."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from commune.commands import CounterStore, publish_command, sign_command
from commune.trust import load_commune_key
from core.signing import SigningKey
from core.topics import HubTopics
from testkit.broker import Broker
from testkit.mqtt import Subscriber
from testkit.receivers import Receivers
from testkit.waiting import wait_until
from tests.fleet_kit import Running, profile, start_tuquan, summary_json, tuquan

COMMUNE = "c1"


def test_every_event_is_receipted_and_stored_once(mosquitto: Broker, tmp_path: Path) -> None:
    store = tmp_path / "rx" / "receiver.sqlite3"
    with Receivers(mosquitto, COMMUNE, store) as receivers:
        receiver = receivers.start()
        done = tuquan(
            "fleet", "--hubs", "100", "--full-hubs", "1", "--broker", mosquitto.address,
            "--commune", COMMUNE, "--duration-s", "8", "--telemetry-per-min", "30",
            "--health-s", "2", "--drill", "30", "--drill-within-s", "4", "--settle-s", "40",
            "--store", str(store), "--json", "--quiet", "--seed", "1",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        summary = summary_json(done.stdout)
        stats = receiver.stats
    events = summary["events"]
    assert summary["ok"] is True and summary["loss"]["count"] == 0
    assert events["made"] > 100 and events["outstanding"] == 0
    assert events["made"] == events["receipted"] == events["stored"]
    assert events["missing_from_store"] == 0 and events["duplicates_in_store"] == 0
    assert summary["seq_gaps"]["total"] == 0 and summary["seq_gaps"]["in_store"]["total"] == 0
    assert summary["latency_ms"]["alarm"]["count"] + summary["full_hubs"][0]["panics_pressed"] == 30
    assert summary["latency_ms"]["telemetry"]["count"] > 0
    [full] = summary["full_hubs"]
    assert full["events"] == full["receipted"] > 0 and full["missing_from_store"] == 0
    # Once each in the record: the store holds as many rows as events were made.
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
        per_hub = db.execute("SELECT count(DISTINCT hub) FROM events").fetchone()[0]
    assert rows == (events["made"], events["made"])
    assert per_hub == 101
    assert stats.stored == events["made"]


def test_signed_events_are_verified_and_receipts_checked(mosquitto: Broker, tmp_path: Path) -> None:
    """--sign --enrol: the receiver verifies every event; --commune-key: the hubs take only
    receipts the commune signed."""
    rx_dir = tmp_path / "rx"
    rx_dir.mkdir()
    commune_pub = tmp_path / "commune.pub"
    commune_pub.write_text(load_commune_key(rx_dir).public.text + "\n")
    store = rx_dir / "receiver.sqlite3"
    keys_out = tmp_path / "keys.txt"
    with Receivers(mosquitto, COMMUNE, store) as receivers:
        receivers.start()
        done = tuquan(
            "fleet", "--hubs", "50", "--full-hubs", "1", "--broker", mosquitto.address,
            "--commune", COMMUNE, "--duration-s", "5", "--telemetry-per-min", "30",
            "--health-s", "2", "--settle-s", "30", "--sign", "--enrol", "--store", str(store),
            "--commune-key", str(commune_pub), "--keys-out", str(keys_out), "--json", "--quiet",
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = summary_json(done.stdout)
    assert summary["events"]["made"] == summary["events"]["stored"] > 50
    assert summary["links"]["forged_receipts"] == 0
    assert summary["profile"]["verify_receipts"] == [COMMUNE]
    lines = keys_out.read_text().splitlines()
    assert len(lines) == 51 and lines[0].startswith("fleet-0001 ed25519:")
    with sqlite3.connect(store) as db:
        unverified = db.execute("SELECT count(*) FROM events WHERE verified IS NOT 1").fetchone()
        quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()
    assert unverified == (0,) and quarantined == (0,)


def test_receipts_signed_by_another_key_are_refused(mosquitto: Broker, tmp_path: Path) -> None:
    """A commune key that is not the receiver's: every receipt is forged to the hubs, so nothing
    counts as delivered and the fleet says so (exit 1)."""
    wrong = tmp_path / "wrong.pub"
    wrong.write_text(SigningKey.generate().public.text + "\n")
    with Receivers(mosquitto, COMMUNE, tmp_path / "rx" / "receiver.sqlite3") as receivers:
        receivers.start()
        done = tuquan(
            "fleet", "--hubs", "20", "--broker", mosquitto.address, "--commune", COMMUNE,
            "--duration-s", "3", "--telemetry-per-min", "60", "--settle-s", "2",
            "--commune-key", str(wrong), "--json", "--quiet",
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    summary = summary_json(done.stdout)
    assert summary["links"]["forged_receipts"] > 0
    assert summary["events"]["receipted"] == 0
    assert summary["loss"]["by_reason"] == {"never receipted": summary["events"]["made"]}


def test_hubs_spread_over_brokers_and_communes(
    mosquitto_factory: Callable[..., Broker], tmp_path: Path
) -> None:
    brokers = [mosquitto_factory(name="b1"), mosquitto_factory(name="b2")]
    stores = [tmp_path / "rx1" / "receiver.sqlite3", tmp_path / "rx2" / "receiver.sqlite3"]
    with (
        Receivers(brokers[0], "c1", stores[0]) as first,
        Receivers(brokers[1], "c2", stores[1]) as second,
    ):
        first.start()
        second.start()
        run = Running(profile(brokers, ("c1", "c2"), hubs=60), tmp_path / "fleet", stores=stores)
        summary = run.start().summary()
    assert summary.ok, summary.as_dict()["loss"]
    assert summary.events["stored"] == summary.events["made"] > 60
    assert summary.events["duplicates_in_store"] == 0
    for n, path in enumerate(stores):
        with sqlite3.connect(path) as db:
            communes = {r[0] for r in db.execute("SELECT DISTINCT commune FROM events")}
            hubs = {r[0] for r in db.execute("SELECT DISTINCT hub FROM events")}
        assert communes == {f"c{n + 1}"}
        assert len(hubs) == 30  # round-robin: every other hub


def test_a_command_to_one_fleet_hub_gets_its_result(mosquitto: Broker, tmp_path: Path) -> None:
    topics = HubTopics(COMMUNE, "fleet-0007")
    run = Running(profile([mosquitto], hubs=20, duration_s=30.0), tmp_path / "fleet").start()
    try:
        run.wait_connected()
        with Subscriber(mosquitto, topics.cmd_result) as sub:
            sub.publish(f"{topics.base}/cmd/ping", json.dumps({"request_id": "r1"}))
            sub.publish(f"{topics.base}/cmd/status", json.dumps({"request_id": "r2"}))
            sub.publish(f"{topics.base}/cmd/launch", json.dumps({"request_id": "r3"}))
            sub.publish(f"{topics.base}/cmd/ping", b"[not an object")
            results = {m.json()["request_id"]: m.json() for m in sub.wait_for(3)}
    finally:
        run.stop.set()
        run.summary()
    assert results["r1"]["ok"] is True and results["r1"]["cmd"] == "ping"
    assert results["r2"]["ok"] is True and results["r2"]["hub"] == "fleet-0007"
    assert results["r3"] == {
        "cmd": "launch", "request_id": "r3", "ok": False, "error": "unknown command 'launch'"
    }  # fmt: skip
    assert set(results) == {"r1", "r2", "r3"}  # the malformed one is dropped, not answered


def test_an_enrolled_fleet_hub_runs_only_signed_commands(mosquitto: Broker, tmp_path: Path) -> None:
    commune_key = SigningKey.generate()
    topics = HubTopics(COMMUNE, "fleet-0003")
    run = Running(
        profile([mosquitto], hubs=5, duration_s=30.0, sign=True),
        tmp_path / "fleet",
        commune_keys={COMMUNE: commune_key.public},
    ).start()
    try:
        run.wait_connected()
        command = sign_command(
            commune_key, COMMUNE, "fleet-0003", "silence", {}, "duty officer",
            counter_store=CounterStore(tmp_path / "counter"),
        )  # fmt: skip
        with Subscriber(mosquitto, topics.cmd_result) as sub:
            sub.publish(f"{topics.base}/cmd/ping", json.dumps({"request_id": "plain"}))
            publish_command(sub.client, command).wait_for_publish(10)
            publish_command(sub.client, command).wait_for_publish(10)  # a replay
            results = [m.json() for m in sub.wait_for(3)]
    finally:
        run.stop.set()
        summary = run.summary()
    plain, signed, replay = results
    assert plain["ok"] is False and "unsigned command refused" in plain["error"]
    assert signed["ok"] is True and signed["command_id"] == command["id"]
    assert signed["checks"] == ["signature", "hub", "expiry", "counter"]
    assert "sig" in signed  # signed by the hub's key
    assert replay["ok"] is False
    # The silence was reported like a real hub's, and receipted... by nobody here: counted.
    hub = next(h for h in run.fleet.hubs if h.hub == "fleet-0003")
    assert any(p.kind == "silenced" for p in hub.ledger.pending.values())
    assert not summary.ok


def test_the_will_marks_a_killed_fleet_offline(mosquitto: Broker, tmp_path: Path) -> None:
    status = HubTopics(COMMUNE, "fleet-0002").status
    proc = start_tuquan(
        "fleet", "--hubs", "5", "--broker", mosquitto.address, "--commune", COMMUNE,
        "--duration-s", "120", "--keepalive-s", "2", "--quiet", log=tmp_path / "fleet.log",
    )  # fmt: skip
    try:
        with Subscriber(mosquitto, status) as sub:
            sub.wait_until(lambda ms: any(m.payload == b"online" for m in ms), timeout=30)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            sub.wait_until(lambda ms: ms[-1].payload == b"offline", timeout=30)
        with Subscriber(mosquitto, status) as late:  # retained: a newcomer sees it at once
            [msg] = late.wait_for(1)
        assert msg.retain and msg.payload == b"offline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_clean_end_says_offline_and_ends_the_sessions(mosquitto: Broker, tmp_path: Path) -> None:
    # No receiver: nothing is receipted, so no settling time is waited for.
    run = Running(profile([mosquitto], hubs=10, duration_s=1.0, settle_s=1.0), tmp_path / "fleet")
    run.start()
    run.summary()
    with Subscriber(mosquitto, "tuquan/v1/c1/+/status") as sub:
        wait_until(lambda: sub.count >= 10, 30, "ten retained statuses")
        assert {m.payload for m in sub.messages} == {b"offline"}
        assert all(m.retain for m in sub.messages)
    assert session_present(mosquitto, "tuquan-c1-fleet-0001") is False


def session_present(broker: Broker, client_id: str) -> bool:
    """Whether the broker still keeps a session for ``client_id`` (connecting with
    clean_start false, then leaving with the session's expiry at 0 so the probe leaves none)."""
    flags: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, f, rc, p: flags.append(bool(f.session_present))
    client.connect(broker.host, broker.port, clean_start=False)
    client.loop_start()
    try:
        wait_until(lambda: flags, 10, "CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return flags[0]
