"""``tuquan bridge-config``: the commune broker's bridge to the province, its queue sized from the
province's rates, and the province broker's ACL lines; every bad input refused at its flag.
(The files at work between real brokers: tests/test_bridge.py.)"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from commune.bridge_sizing import Rates, size_queue
from tuquan.cli import main as tuquan

BASE = ["bridge-config", "--commune", "xa-a", "--province", "province.example:8883"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = tuquan([*BASE, *args] if not args or args[0] != "--raw" else list(args[1:]))
    out, err = capsys.readouterr()
    return code, out, err


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_bridge_carries_the_hubs_up_and_receipts_commands_and_status_down(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--hubs", "40")
    assert code == 0
    conf = lines(out)
    for line in (
        "persistence true",
        "queue_qos0_messages false",
        "connection tuquan-province",
        "address province.example:8883",
        "bridge_protocol_version mqttv50",
        "try_private true",
        "cleansession false",
        "remote_clientid tuquan-bridge-xa-a",
        "topic tuquan/v1/xa-a/+/event/+ out 1",
        "topic tuquan/v1/xa-a/+/snapshot/+ out 1",
        "topic tuquan/v1/xa-a/+/status out 1",
        "topic tuquan/v1/xa-a/+/health out 1",
        "topic tuquan/v1/xa-a/+/cmd_result out 1",
        "topic tuquan/v1/xa-a/+/receipt in 1",
        "topic tuquan/v1/xa-a/+/cmd/+ in 1",
        "topic tuquan/v1/xa-a/_receiver/status in 1",
    ):
        assert line in conf, line
    # Broker-wide lines first: after "connection" Mosquitto reads bridge options.
    assert conf.index("max_queued_messages 97500") < conf.index("connection tuquan-province")
    assert "max_queued_bytes 73050000" in conf
    assert not any(line.startswith(("remote_password", "bridge_cafile")) for line in conf)


def test_the_queue_holds_an_hour_with_every_re_send_counted() -> None:
    sizing = size_queue(Rates(hubs=40))  # 1 event a minute, health every 30 s, timeout 60 s
    # 60 events; re-sent at 60 s, 120 s, ...: 59 + 58 + ... + 1 = 1,770 copies (= 30.5 each)
    assert (sizing.originals, sizing.resends, sizing.health) == (60, 1770, 120)
    assert sizing.max_queued_messages == 40 * 1950 * 1.25
    assert sizing.max_queued_bytes == 40 * (1830 * 700 + 120 * 1500) * 1.25
    # A longer receipt timeout at the hubs shrinks the queue: 5 minutes, 6.5 copies an event.
    assert size_queue(Rates(hubs=40, receipt_timeout_s=300)).copies_per_event == 6.5
    # Snapshots are sent once (their PUBACK ends the hub's wait), and weigh in bytes.
    with_snapshots = size_queue(Rates(hubs=1, snapshots_per_hub_per_hour=6))
    assert with_snapshots.snapshots == 6
    assert with_snapshots.max_queued_bytes >= 6 * 60_000


def test_tls_credentials_and_several_addresses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    credentials = tmp_path / "bridge.toml"
    credentials.write_text('password = "Sesame-4410"\n')
    out_file = tmp_path / "tuquan-bridge.conf"
    acl_file = tmp_path / "province.acl"
    code, out, err = run(
        capsys,
        "--province", "node-2.example:8883",
        "--hubs", "3",
        "--cafile", "/etc/tuquan/province-ca.pem",
        "--certfile", "/etc/tuquan/bridge.pem",
        "--keyfile", "/etc/tuquan/bridge.key",
        "--username", "bridge-xa-a",
        "--credentials-file", str(credentials),
        "--client-id", "bridge.xa-a",
        "--out", str(out_file),
        "--province-acl", str(acl_file),
        "--province-receiver", "province-rx",
        "--province-console", "province-console",
    )  # fmt: skip
    assert code == 0, err
    assert "Sesame" not in out + err
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600  # it holds the password
    conf = lines(out_file.read_text())
    for line in (
        "address province.example:8883 node-2.example:8883",
        "remote_clientid bridge.xa-a",
        "remote_username bridge-xa-a",
        "remote_password Sesame-4410",
        "bridge_cafile /etc/tuquan/province-ca.pem",
        "bridge_certfile /etc/tuquan/bridge.pem",
        "bridge_keyfile /etc/tuquan/bridge.key",
        "bridge_tls_version tlsv1.2",
    ):
        assert line in conf, line
    acl = acl_file.read_text()
    bridge_part = acl.split("user bridge-xa-a\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert bridge_part == [
        "topic write $SYS/broker/connection/bridge.xa-a/state",
        "topic write tuquan/v1/xa-a/+/event/+",
        "topic write tuquan/v1/xa-a/+/snapshot/+",
        "topic write tuquan/v1/xa-a/+/status",
        "topic write tuquan/v1/xa-a/+/health",
        "topic write tuquan/v1/xa-a/+/cmd_result",
        "topic read tuquan/v1/xa-a/+/receipt",
        "topic read tuquan/v1/xa-a/+/cmd/+",
        "topic read tuquan/v1/xa-a/_receiver/status",
    ]
    assert "user province-rx\ntopic read tuquan/v1/+/+/event/#" in acl
    assert "user province-console\ntopic read tuquan/v1/#\ntopic write tuquan/v1/+/+/cmd/+" in acl
    assert "#   max_queued_messages" in acl  # what the province must hold for this bridge


def test_the_communes_and_the_hubs_come_from_the_receiver_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "rx.toml"
    config.write_text(
        '[receiver]\ncommunes = ["xa-a", "xa-b"]\n'
        + "".join(f'[[hubs]]\nid = "hub-{i}"\n' for i in range(3))
    )
    code, out, err = run(
        capsys, "--raw", "bridge-config", "--config", str(config), "--province", "p:1883"
    )
    assert code == 0, err
    conf = lines(out)
    assert "remote_clientid tuquan-bridge-xa-a+xa-b" in conf
    assert "topic tuquan/v1/xa-b/+/receipt in 1" in conf
    assert "# Sized for an outage of 3600 s with 3 hub(s) behind this broker:" in out
    config.write_text('[receiver]\ncommune = "+"\n')
    code, _, err = run(
        capsys,
        "--raw",
        "bridge-config",
        "--config",
        str(config),
        "--province",
        "p:1",
        "--hubs",
        "1",
    )
    assert code == 2 and "--commune: a bridge carries named communes, not '+'" in err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--hubs", "0"], "--hubs: must be at least 1, not 0"),
        ([], "--hubs: say how many hubs are behind this broker"),
        (["--hubs", "1", "--events-per-hub-per-min", "nan"], "--events-per-hub-per-min: input"),
        (["--hubs", "1", "--receipt-timeout-s", "0"], "--receipt-timeout-s: must be at least 1"),
        (["--hubs", "1", "--province", "nohost"], "--province: 'nohost' is not HOST:PORT"),
        (["--hubs", "1", "--province", "a b:1"], "--province:"),
        (["--hubs", "1", "--commune", "Xa"], "--commune: 'Xa' is not a valid id"),
        (["--hubs", "1", "--commune", "xa-a"], "--commune: commune 'xa-a' is named twice"),
        (["--hubs", "1", "--cafile", "ca.pem"], "--cafile: 'ca.pem' must be an absolute path"),
        (["--hubs", "1", "--certfile", "/c.pem"], "--keyfile: give certfile and keyfile"),
        (
            ["--hubs", "1", "--certfile", "/c.pem", "--keyfile", "/k.pem"],
            "--cafile: a client certificate needs the province's CA",
        ),
        (["--hubs", "1", "--client-id", "a b"], "--client-id: 'a b' is not a usable client id"),
        (["--hubs", "1", "--username", "a b"], "--username: must be one word"),
        (["--hubs", "1", "--keepalive-s", "1"], "--keepalive-s: must be at least 5"),
        (["--hubs", "1", "--outage-s", "100000000"], "--outage-s: must be at most"),
    ],
)
def test_bad_input_is_refused_at_its_flag(
    capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert any(line.startswith(error) for line in err.splitlines()), err
    assert "Traceback" not in err


def test_a_password_mosquitto_cannot_hold_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    credentials = tmp_path / "bridge.toml"
    credentials.write_text('password = "two words"\n')
    code, _, err = run(
        capsys, "--hubs", "1", "--username", "u", "--credentials-file", str(credentials)
    )
    assert code == 2 and err.startswith("--credentials-file: must be one word")
    assert "two words" not in err
    credentials.write_text('password = "x"\n')
    code, _, err = run(capsys, "--hubs", "1", "--credentials-file", str(credentials))
    assert code == 2 and "--username: a password needs a username" in err
