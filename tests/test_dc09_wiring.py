"""The forwarder where it runs: ``tuquan receive`` with a ``[forward.dc09]`` table, and the
console's station; a panic pressed on the simulated hub reaches pysiaalarm's receiver as
Contact ID 120 under the hub's account, through the real broker, receiver and store."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dc09_kit import WAIT_S, SiaReceiver, dc09_config

from commune.config import parse_receiver_config
from commune.dc09.forwarder import Dc09Forwarder
from commune.receiver import ReceiverError
from commune.station import Station
from gateway.broker import BrokerSettings
from testkit.broker import Broker
from testkit.hubs import COMMUNE, HUB, press_and_release, sim_hub
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "AB12"


def config_toml(port: int) -> str:
    return f"""
[receiver]
commune = "{COMMUNE}"

[forward.dc09]
host = "127.0.0.1"
port = {port}
line_prefix = "3"
retry_max_s = 0.5
link_test_s = 0

[forward.dc09.accounts]
{HUB} = "{ACCOUNT}"
"""


def panics(centre: SiaReceiver) -> list[tuple[str | None, str | None, str]]:
    return [(a.qualifier, a.code, a.account) for a in centre.events() if a.code == "120"]


def test_tuquan_receive_forwards_a_pressed_panic(mosquitto: Broker, tmp_path: Path) -> None:
    with SiaReceiver(accounts=[ACCOUNT]) as centre:
        config = tmp_path / "receiver.toml"
        config.write_text(config_toml(centre.port), encoding="utf-8")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tuquan.cli import main; main()",
                "receive",
                "--config",
                str(config),
                "--broker",
                f"{mosquitto.host}:{mosquitto.port}",
                "--data-dir",
                str(tmp_path / "commune"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False) as hub:
                press_and_release(hub)
                wait_until(lambda: panics(centre), WAIT_S, "the panic at the centre")
            assert panics(centre) == [("1", "120", ACCOUNT)]
            [arrival] = [a for a in centre.events() if a.code == "120"]
            assert arrival.partition == "01" and arrival.zone == "001"
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "DC-09: delivering to 127.0.0.1" in err


def test_the_consoles_station_forwards_a_pressed_panic(mosquitto: Broker, tmp_path: Path) -> None:
    with SiaReceiver(accounts=[ACCOUNT]) as centre:
        data = tomllib.loads(config_toml(centre.port))
        config = parse_receiver_config(data, base_dir=tmp_path, env={})
        broker = BrokerSettings(mosquitto.host, mosquitto.port, client_id="tuquan-receiver-demo")
        station = Station(tmp_path / "commune", config, broker)
        station.start()
        try:
            assert station.forwarder is not None
            with sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False) as hub:
                press_and_release(hub)
                wait_until(lambda: panics(centre), WAIT_S, "the panic at the centre")
            forwarder = station.forwarder
            assert panics(centre) == [("1", "120", ACCOUNT)]
            # Whatever else the hub reported (alarms and troubles only), each arrived once.
            wait_until(lambda: forwarder.stats()["queue"]["pending"] == 0, WAIT_S)
            queued = forwarder.queue.rows()
            assert sorted(a.sequence for a in centre.events()) == [r.sequence for r in queued]
            stats = forwarder.stats()
            assert stats["naks"] == 0 and stats["bad_replies"] == 0
        finally:
            station.stop()


def test_a_store_that_cannot_be_opened_is_a_receiver_error(tmp_path: Path) -> None:

    (tmp_path / "a-file").write_text("", encoding="utf-8")
    with pytest.raises(ReceiverError, match="cannot open its store"):
        Dc09Forwarder(tmp_path / "a-file" / "receiver.sqlite3", dc09_config(9000))
