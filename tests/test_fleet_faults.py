"""The fleet under faults: a receiver killed and restarted, a broker restarted, a receiver gone
for good, hostile messages to the hubs. Nothing is lost where the design says so, and the
fleet names the loss where something is."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from commune.locations import DB_FILENAME
from testkit.broker import Broker
from testkit.mqtt import publish_once
from testkit.receivers import Receivers
from testkit.waiting import wait_until
from tests.fleet_kit import Running, fleet_ids_in, profile, start_tuquan, summary_json, tuquan

COMMUNE = "c1"


def test_a_receiver_killed_and_restarted_mid_run_loses_nothing(
    mosquitto: Broker, tmp_path: Path
) -> None:
    rx_dir = tmp_path / "rx"
    store = rx_dir / DB_FILENAME
    receive = ("receive", "--broker", mosquitto.address, "--commune", COMMUNE,
               "--data-dir", str(rx_dir))  # fmt: skip
    receiver = start_tuquan(*receive, log=tmp_path / "rx.log")
    try:
        wait_until(store.exists, 30, "the receiver's store")
        run = Running(
            profile([mosquitto], hubs=100, duration_s=12.0, drill=40, drill_within_s=4.0),
            tmp_path / "fleet",
            stores=[store],
        ).start()
        run.wait_connected()
        wait_until(lambda: run.events_made() > 100, 30, "events under way")
        receiver.send_signal(signal.SIGKILL)
        receiver.wait(10)
        made_while_down = run.events_made()
        wait_until(lambda: run.events_made() > made_while_down + 50, 30, "events while down")
        receiver = start_tuquan(*receive, log=tmp_path / "rx.log")
        summary = run.summary()
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(30)
    assert summary.ok, summary.as_dict()["loss"]
    assert summary.events["made"] == summary.events["receipted"] == summary.events["stored"]
    assert summary.latency_ms["alarm"]["count"] == 40
    assert len(fleet_ids_in(store)) == summary.events["made"]


def test_a_broker_restart_mid_run_loses_nothing(mosquitto: Broker, tmp_path: Path) -> None:
    """A broker without persistence restarted: its sessions and queues are gone. The hubs send
    again what it had acknowledged; the receiver's new session makes them send all again."""
    store = tmp_path / "rx" / DB_FILENAME
    with Receivers(mosquitto, COMMUNE, store) as receivers:
        receivers.start()
        run = Running(
            profile([mosquitto], hubs=100, duration_s=12.0, drill=20, drill_within_s=3.0),
            tmp_path / "fleet",
            stores=[store],
        ).start()
        run.wait_connected()
        wait_until(lambda: run.events_made() > 100, 30, "events under way")
        mosquitto.restart()
        summary = run.summary()
    assert summary.ok, summary.as_dict()["loss"]
    assert summary.events["made"] == summary.events["receipted"] == summary.events["stored"]
    assert summary.links["disconnects"] >= 100  # every hub saw the broker go
    assert summary.links["connects"] >= 200


def test_a_receiver_gone_for_good_is_a_loss_the_fleet_names(
    mosquitto: Broker, tmp_path: Path
) -> None:
    store = tmp_path / "rx" / DB_FILENAME
    receivers = Receivers(mosquitto, COMMUNE, store)
    receivers.start()
    try:
        proc = start_tuquan(
            "fleet", "--hubs", "50", "--broker", mosquitto.address, "--commune", COMMUNE,
            "--duration-s", "8", "--telemetry-per-min", "60", "--settle-s", "3",
            "--store", str(store), "--json", "--quiet", log=tmp_path / "fleet.log",
        )  # fmt: skip
        wait_until(lambda: len(fleet_ids_in(store)) > 50, 60, "events stored")
    finally:
        receivers.stop_all()
    done_before = len(fleet_ids_in(store))
    proc.wait(120)
    assert proc.returncode == 1
    output = (tmp_path / "fleet.log").read_text()
    summary = summary_json(output[output.index("{") :])
    assert summary["ok"] is False
    loss = summary["loss"]
    assert (
        loss["count"] == summary["events"]["outstanding"] >= summary["events"]["made"] - done_before
    )
    assert loss["count"] > 0
    assert set(loss["by_reason"]) <= {
        "never receipted, not in the store",
        "never receipted (stored)",
    }
    named = loss["first"][0]
    assert named["hub"].startswith("fleet-") and named["seq"] >= 1 and named["id"]
    assert summary["events"]["stored"] == done_before


def test_the_text_summary_names_the_loss(mosquitto: Broker) -> None:
    done = tuquan(
        "fleet", "--hubs", "3", "--broker", mosquitto.address, "--duration-s", "2",
        "--telemetry-per-min", "60", "--settle-s", "1", "--quiet",
    )  # fmt: skip
    assert done.returncode == 1
    assert "LOSS:" in done.stdout and "never receipted" in done.stdout
    assert "fleet-0001 seq 1 " in done.stdout


def test_hostile_messages_to_the_hubs_cost_nothing(mosquitto: Broker, tmp_path: Path) -> None:
    store = tmp_path / "rx" / DB_FILENAME
    base = "tuquan/v1/c1/fleet-0001"
    hostile = [
        b"", b"not json", b"[1, 2]", b'{"ids": "x"}', b'{"ids": [1]}',
        b'{"ids": ["' + b"a" * 65 + b'"]}',
        b"[" * 10_000, b'{"ids": [NaN]}', b'{"ids": [], "n": 1' + b"0" * 400 + b"}",
        json.dumps({"ids": ["0" * 64]}).encode(),
    ]  # fmt: skip
    with Receivers(mosquitto, COMMUNE, store) as receivers:
        receivers.start()
        run = Running(profile([mosquitto], hubs=10, duration_s=6.0), tmp_path / "fleet",
                      stores=[store]).start()  # fmt: skip
        run.wait_connected()
        publish_once(mosquitto, f"{base}/receipt", hostile)
        publish_once(mosquitto, "tuquan/v1/c1/_receiver/status", [b"{]", b'{"state": 3}'])
        publish_once(mosquitto, f"{base}/cmd/ping", [b"[" * 10_000, b'{"ts": 1e999}'])
        summary = run.summary()
        # The receiver's real status back, for whoever comes next.
        receivers.started[0].stop()
    assert summary.ok, summary.as_dict()["loss"]
    assert summary.links["bad_receipts"] >= 8
    assert summary.links["bad_receiver_status"] == 2 * 10  # every hub saw both
    assert summary.events["unknown_receipted"] >= 1  # the well-formed id no hub made
    assert run.fleet.loops[0].errors == 0
