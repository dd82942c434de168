"""The hub configuration: the shipped example, every kind of mistake, defaults and secrets.

Invalid files are checked through the real ``check-config`` command, as an installer runs it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from core.events import KINDS
from settings import (
    PASSWORD_ENV,
    SIREN_RULE_KINDS,
    Config,
    load_config,
    parse_config,
)
from settings.kinds import (
    INPUT_KINDS,
    INPUT_REPORTS,
    MODBUS_REPORTS,
    RULE_KINDS,
    SUPERVISION_REPORTS,
    event_kinds,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "systemd" / "hub.example.toml"
SECRET = "correct-horse-battery-staple-7731"

HUB = """
[hub]
id = "gate-1"
commune = "phuong-1"
"""

PANIC = """
[[inputs]]
name = "panic-1"
kind = "panic"
pin = 17
"""

SIREN = """
[[outputs]]
name = "siren"
kind = "siren"
pin = 23
"""

BUS = """
[[buses]]
name = "bus-1"
port = "/dev/ttyUSB0"
"""

NODE = """
[[nodes]]
name = "smoke-1"
bus = "bus-1"
id = 5
"""

GAS = """
[[modbus]]
name = "gas-1"
port = "/dev/ttyUSB1"
unit = 1
register = 40
kind = "gas"
threshold = 50
"""


def check_config(
    path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``tuquan check-config`` exactly as an installer does."""
    child_env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tuquan", "check-config", str(path)],
        capture_output=True,
        text=True,
        env=child_env,
        cwd=cwd or REPO,
        timeout=60,
    )


def error_lines(stderr: str, path: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{path}: ")]


def errors_of(
    text: str, tmp_path: Path, env: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), base_dir=tmp_path, env=env or {})
    return info.value.errors


def parse(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> Config:
    return parse_config(tomllib.loads(text), base_dir=tmp_path, env=env or {})


# --- The shipped example ------------------------------------------------------------------


def test_example_passes_check_config() -> None:
    result = check_config(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == (
        f"{EXAMPLE}: valid (hub cho-an-dong-gate-1, commune phuong-an-dong)"
    )


def test_example_describes_the_guard_post() -> None:
    cfg = load_config(EXAMPLE, env={})
    panic = cfg.input("panic-1")
    assert (panic.kind, panic.pin, panic.hold_s, panic.hold_kind) == ("panic", 17, 3.0, "duress")
    assert (panic.pull_up, panic.active_high, panic.restore) == (True, None, False)
    tamper = cfg.input("tamper-1")
    assert (tamper.kind, tamper.pin, tamper.restore) == ("tamper", 27, True)
    assert cfg.input("silence-1").kind == "silence"
    assert cfg.input("silence-1").pin == 22
    assert (cfg.output("siren").kind, cfg.output("siren").pin) == ("siren", 23)
    assert (cfg.output("status-led").kind, cfg.output("status-led").pin) == ("led", 24)
    assert len(cfg.rules) == 1
    assert cfg.rules[0].output == "siren"
    assert "silent_panic" not in cfg.rules[0].when
    assert cfg.broker.password is None and cfg.broker.tls is None


# --- Invalid files: each one exits 2 and names the exact key -------------------------------


@dataclass
class Bad:
    """An invalid config file, the path check-config must name and a fragment of the message."""

    toml: str
    path: str
    fragment: str
    files: dict[str, str] = field(default_factory=dict)


BAD = {
    "unknown top-level table": Bad(
        HUB + '[mqtt]\nhost = "x"\n', "mqtt", "unknown key 'mqtt'; allowed: hub, broker"
    ),
    "unknown key in an input": Bad(
        HUB + PANIC + 'colour = "red"\n', "inputs[0].colour", "unknown key 'colour'"
    ),
    "misspelt key suggests the right one": Bad(
        HUB + "[broker]\nkeepalive = 30\n", "broker.keepalive", "did you mean 'keepalive_s'?"
    ),
    "unknown key in broker.tls": Bad(
        HUB + '[broker.tls]\nca = "ca.pem"\n', "broker.tls.ca", "unknown key 'ca'"
    ),
    "duplicate pin between inputs": Bad(
        HUB + PANIC + PANIC.replace("panic-1", "panic-2"),
        "inputs[1].pin",
        "GPIO 17 is already used by inputs[0]",
    ),
    "duplicate pin between an input and an output": Bad(
        HUB + PANIC + SIREN.replace("23", "17"),
        "outputs[0].pin",
        "GPIO 17 is already used by inputs[0]",
    ),
    "duplicate name between an input and an output": Bad(
        HUB + PANIC + SIREN.replace('"siren"\nkind', '"panic-1"\nkind'),
        "outputs[0].name",
        "name 'panic-1' is already used by inputs[0]",
    ),
    "broker host with a space": Bad(
        HUB + '[broker]\nhost = "mqtt broker"\n', "broker.host", "not a valid hostname"
    ),
    "broker host with a slash": Bad(
        HUB + '[broker]\nhost = "mqtt/broker"\n', "broker.host", "not a valid hostname"
    ),
    "broker host with MQTT wildcards": Bad(
        HUB + '[broker]\nhost = "mqtt#+"\n', "broker.host", "not a valid hostname"
    ),
    "broker host empty": Bad(HUB + '[broker]\nhost = ""\n', "broker.host", "must not be empty"),
    "broker host with a port": Bad(
        HUB + '[broker]\nhost = "mqtt.example:1883"\n', "broker.host", "port in broker.port"
    ),
    "broker host like a bad IPv4": Bad(
        HUB + '[broker]\nhost = "192.168.1.300"\n', "broker.host", "not a valid hostname"
    ),
    "port too high": Bad(
        HUB + "[broker]\nport = 70000\n", "broker.port", "must be at most 65535, not 70000"
    ),
    "port zero": Bad(HUB + "[broker]\nport = 0\n", "broker.port", "must be at least 1"),
    "keepalive too short": Bad(
        HUB + "[broker]\nkeepalive_s = 2\n", "broker.keepalive_s", "must be at least 5"
    ),
    "missing hub id": Bad('[hub]\ncommune = "phuong-1"\n', "hub.id", "required key is missing"),
    "missing hub table": Bad(PANIC, "hub", "required table is missing"),
    "hub id with capitals and a space": Bad(
        HUB.replace('"gate-1"', '"Gate 1"'), "hub.id", "'Gate 1' is not a valid id"
    ),
    "hub id with an MQTT wildcard": Bad(
        HUB.replace('"gate-1"', '"gate/+"'), "hub.id", "MQTT topic level"
    ),
    "hub id too long": Bad(HUB.replace('"gate-1"', f'"{"g" * 64}"'), "hub.id", "1 to 63"),
    "commune with a dot": Bad(
        HUB.replace('"phuong-1"', '"phuong.1"'), "hub.commune", "not a valid id"
    ),
    "bad input kind": Bad(
        HUB + PANIC.replace('"panic"', '"panik"'),
        "inputs[0].kind",
        "'panik' is not one of 'panic', 'silent_panic'",
    ),
    "bad output kind": Bad(
        HUB + SIREN.replace('kind = "siren"', 'kind = "horn"'), "outputs[0].kind", "'horn'"
    ),
    "pin out of range": Bad(
        HUB + PANIC.replace("17", "28"), "inputs[0].pin", "GPIO 28 does not exist"
    ),
    "pin as a string": Bad(
        HUB + PANIC.replace("17", '"17"'), "inputs[0].pin", "expected an integer"
    ),
    "bad input name": Bad(
        HUB + PANIC.replace('"panic-1"', '"Panic 1"'), "inputs[0].name", "not a valid name"
    ),
    "active_high with a pull resistor": Bad(
        HUB + PANIC + "active_high = true\n",
        "inputs[0].active_high",
        'only allowed with pull_up = "none"',
    ),
    "no pull resistor and no active_high": Bad(
        HUB + PANIC + 'pull_up = "none"\n',
        "inputs[0].active_high",
        'required when pull_up = "none"',
    ),
    "pull_up as an unknown word": Bad(
        HUB + PANIC + 'pull_up = "floating"\n', "inputs[0].pull_up", 'true, false or "none"'
    ),
    "hold_kind without hold_s": Bad(
        HUB + PANIC + 'hold_kind = "duress"\n', "inputs[0].hold_kind", "needs hold_s"
    ),
    "hold_kind silence": Bad(
        HUB + PANIC + 'hold_s = 3\nhold_kind = "silence"\n',
        "inputs[0].hold_kind",
        "'silence' is not one of",
    ),
    "negative bounce": Bad(HUB + PANIC + "bounce_s = -1\n", "inputs[0].bounce_s", "at least 0"),
    "rule with an unknown output": Bad(
        HUB + SIREN + '[[rules]]\nwhen = ["panic"]\noutput = "sirn"\n',
        "rules[0].output",
        "no output named 'sirn' (outputs: siren)",
    ),
    "rule naming an input": Bad(
        HUB + PANIC + SIREN + '[[rules]]\nwhen = ["panic"]\noutput = "panic-1"\n',
        "rules[0].output",
        "'panic-1' is an input, not an output",
    ),
    "rule on silence": Bad(
        HUB + SIREN + '[[rules]]\nwhen = ["panic", "silence"]\noutput = "siren"\n',
        "rules[0].when[1]",
        "'silence' is not one of",
    ),
    "rule on nothing": Bad(
        HUB + SIREN + '[[rules]]\nwhen = []\noutput = "siren"\n',
        "rules[0].when",
        "must name at least one event kind",
    ),
    "rule lasting zero seconds": Bad(
        HUB + SIREN + '[[rules]]\nwhen = ["fire"]\noutput = "siren"\nseconds = 0\n',
        "rules[0].seconds",
        "must be greater than 0",
    ),
    "receipt timeout zero": Bad(
        HUB + "[uplink]\nreceipt_timeout_s = 0\n", "uplink.receipt_timeout_s", "greater than 0"
    ),
    "receipts as a string": Bad(
        HUB + '[uplink]\nreceipts = "yes"\n', "uplink.receipts", "expected true or false"
    ),
    "outbox too small": Bad(
        HUB + "[outbox]\nmax_events = 10\n", "outbox.max_events", "must be at least 100"
    ),
    "missing credentials file": Bad(
        HUB + '[broker]\nusername = "u"\ncredentials_file = "nope.toml"\n',
        "broker.credentials_file",
        "file not found",
    ),
    "credentials file without a password": Bad(
        HUB + '[broker]\nusername = "u"\ncredentials_file = "creds.toml"\n',
        "broker.credentials_file",
        'must contain a non-empty string: password = "..."',
        files={"creds.toml": "password = 1234\n"},
    ),
    "password without username": Bad(
        HUB + '[broker]\ncredentials_file = "creds.toml"\n',
        "broker.username",
        "required when a password is given",
        files={"creds.toml": f'password = "{SECRET}"\n'},
    ),
    "password in the config file": Bad(
        HUB + f'[broker]\nusername = "u"\npassword = "{SECRET}"\n',
        "broker.password",
        "not allowed in the config file",
    ),
    "missing TLS CA file": Bad(
        HUB + '[broker.tls]\nca_file = "ca.pem"\n', "broker.tls.ca_file", "file not found"
    ),
    "TLS certificate without its key": Bad(
        HUB + '[broker.tls]\ncert_file = "hub.crt"\n',
        "broker.tls.key_file",
        "required when cert_file is set",
        files={"hub.crt": "x"},
    ),
    "TLS path is a folder": Bad(
        HUB + '[broker.tls]\nca_file = "certs"\n', "broker.tls.ca_file", "not a file"
    ),
    "node on a bus that does not exist": Bad(
        HUB + BUS + NODE + NODE.replace("smoke-1", "smoke-2").replace("bus-1", "bus-9"),
        "nodes[1].bus",
        "no bus named 'bus-9' (buses: bus-1)",
    ),
    "node without any bus": Bad(
        HUB + NODE, "nodes[0].bus", "no bus named 'bus-1': there are no [[buses]]"
    ),
    "two nodes with one id on a bus": Bad(
        HUB + BUS + NODE + NODE.replace("smoke-1", "smoke-2"),
        "nodes[1].id",
        "id 5 is already used on bus 'bus-1' by nodes[0]",
    ),
    "node named like an input": Bad(
        HUB + PANIC + BUS + NODE.replace("smoke-1", "panic-1"),
        "nodes[0].name",
        "name 'panic-1' is already used by inputs[0]",
    ),
    "Modbus detector named like a node": Bad(
        HUB + BUS + NODE + GAS.replace("gas-1", "smoke-1"),
        "modbus[0].name",
        "name 'smoke-1' is already used by nodes[0]",
    ),
    "node id zero": Bad(
        HUB + BUS + NODE.replace("id = 5", "id = 0"), "nodes[0].id", "use 1 to 65534"
    ),
    "node id reserved": Bad(
        HUB + BUS + NODE.replace("id = 5", "id = 65535"), "nodes[0].id", "65535 are reserved"
    ),
    "node id as a string": Bad(
        HUB + BUS + NODE.replace("id = 5", 'id = "5"'), "nodes[0].id", "expected an integer"
    ),
    "node heartbeat zero": Bad(
        HUB + BUS + NODE + "heartbeat_s = 0\n", "nodes[0].heartbeat_s", "greater than 0"
    ),
    "node supervision kind unknown": Bad(
        HUB + BUS + NODE + 'supervision_kind = "radio"\n',
        "nodes[0].supervision_kind",
        "'radio' is not one of 'supervision' or 'rf_supervision'",
    ),
    "misspelt node key": Bad(
        HUB + BUS + NODE + "heartbeat = 30\n", "nodes[0].heartbeat", "did you mean 'heartbeat_s'?"
    ),
    "bus port that is not a path": Bad(
        HUB + BUS.replace("/dev/ttyUSB0", "ttyUSB0"), "buses[0].port", "not a device path"
    ),
    "bus baud as a string": Bad(
        HUB + BUS + 'baud = "115200"\n', "buses[0].baud", "expected an integer"
    ),
    "two buses on one port": Bad(
        HUB + BUS + BUS.replace("bus-1", "bus-2"),
        "buses[1].port",
        "port '/dev/ttyUSB0' is already used by buses[0]",
    ),
    "two buses with one name": Bad(
        HUB + BUS + BUS.replace("ttyUSB0", "ttyUSB2"),
        "buses[1].name",
        "name 'bus-1' is already used by buses[0]",
    ),
    "Modbus on the bus's port": Bad(
        HUB + BUS + GAS.replace("ttyUSB1", "ttyUSB0"),
        "modbus[0].port",
        "port '/dev/ttyUSB0' is already used by buses[0], a sensor bus",
    ),
    "Modbus detectors on one line at two speeds": Bad(
        HUB
        + GAS
        + GAS.replace("gas-1", "gas-2").replace("unit = 1", "unit = 2")
        + "baud = 19200\n",
        "modbus[1].baud",
        "19200 differs from modbus[0].baud (9600) on the same port '/dev/ttyUSB1'",
    ),
    "Modbus restore above the threshold": Bad(
        HUB + GAS + "restore_below = 60\n",
        "modbus[0].restore_below",
        "must be at most threshold (50), not 60",
    ),
    "Modbus function 6": Bad(
        HUB + GAS + "function = 6\n", "modbus[0].function", "6 is not one of 3 or 4"
    ),
    "Modbus parity as a word": Bad(
        HUB + GAS + 'parity = "even"\n', "modbus[0].parity", "'even' is not one of 'N', 'E' or 'O'"
    ),
    "Modbus kind panic": Bad(
        HUB + GAS.replace('"gas"', '"panic"'), "modbus[0].kind", "'panic' is not one of 'smoke'"
    ),
    "Modbus unit out of range": Bad(
        HUB + GAS.replace("unit = 1", "unit = 248"), "modbus[0].unit", "at most 247"
    ),
    "Modbus without a register": Bad(
        HUB + GAS.replace("register = 40\n", ""), "modbus[0].register", "required key is missing"
    ),
    "Modbus misspelt register": Bad(
        HUB + GAS.replace("register = 40", "registr = 40"),
        "modbus[0].registr",
        "did you mean 'register'?",
    ),
    "Modbus scale zero": Bad(HUB + GAS + "scale = 0\n", "modbus[0].scale", "must not be 0"),
    "Modbus missed zero": Bad(HUB + GAS + "missed = 0\n", "modbus[0].missed", "at least 1"),
    "TOML syntax error": Bad(
        '[hub]\nid = "gate-1"\ncommune = phuong\n', "{file}:3:11", "TOML syntax error"
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=list(BAD))
def test_invalid_config_exits_2_naming_the_key(case: Bad, tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "hub.toml"
    path.write_text(case.toml)
    result = check_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = error_lines(result.stderr, case.path.format(file=path))
    assert any(case.fragment in line for line in lines), result.stderr
    assert SECRET not in result.stderr


def test_unreadable_file_is_one_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = check_config(missing)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{missing}: cannot read the file: No such file or directory",
        f"{missing}: 1 error(s)",
    ]


def test_a_file_not_in_utf8_is_one_error_at_its_line(tmp_path: Path) -> None:
    """A file saved as Latin-1 (a hub name with an accent): the line and column of the first
    byte that is not UTF-8, and what to do about it."""
    path = tmp_path / "hub.toml"
    path.write_bytes(b'[hub]\nid = "gate-1"\nname = "Ch\xe9 market"\ncommune = "phuong-1"\n')
    result = check_config(path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}:3:11: not UTF-8 text (byte 0xe9 cannot be read): save the file as UTF-8",
        f"{path}: 1 error(s)",
    ]
    with pytest.raises(ConfigError):
        load_config(path, env={})


def test_every_kind_the_config_names_is_an_event_kind(tmp_path: Path) -> None:
    """The kinds are defined once, in core.events.KINDS; the config only chooses among them."""
    for kinds in (INPUT_REPORTS, MODBUS_REPORTS, SUPERVISION_REPORTS, RULE_KINDS):
        assert kinds and all(kind in KINDS for kind in kinds), kinds
    assert set(SIREN_RULE_KINDS) <= set(RULE_KINDS)
    assert set(INPUT_KINDS) - set(KINDS) == {"silence"}  # the button that silences the sirens
    with pytest.raises(LookupError, match="panik"):
        event_kinds("panic", "panik")
    for kind in INPUT_KINDS:  # each is a valid input, reported as that kind
        cfg = parse(HUB + PANIC.replace('"panic"', f'"{kind}"'), tmp_path)
        assert cfg.inputs[0].kind == kind


def test_every_error_is_reported_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        """
[hub]
id = "Gate 1"
commune = "phuong-1"

[broker]
port = 0
colour = "red"

[[inputs]]
name = "panic-1"
kind = "panik"
pin = 17

[[inputs]]
name = "panic-2"
kind = "panic"
pin = 17
hold_kind = "duress"

[[outputs]]
name = "siren"
kind = "siren"
pin = 40

[[rules]]
when = ["panic"]
output = "sirn"
"""
    )
    expected = [
        "hub.id",
        "broker.port",
        "broker.colour",
        "inputs[0].kind",
        "inputs[1].hold_kind",
        "inputs[1].pin",
        "outputs[0].pin",
        "rules[0].output",
    ]
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert [p for p, _ in info.value.errors] == expected

    result = check_config(path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines[:-1]] == expected
    assert lines[-1] == f"{path}: 8 error(s)"


def test_errors_are_collected_across_valid_and_invalid_tables(tmp_path: Path) -> None:
    # A type error in one input does not hide a duplicate pin in two others.
    errors = errors_of(
        HUB
        + PANIC
        + 'bounce_s = "x"\n'
        + PANIC.replace("panic-1", "b")
        + SIREN.replace("23", "17"),
        tmp_path,
    )
    assert errors == [
        ("inputs[0].bounce_s", "expected a number"),
        ("inputs[1].pin", "GPIO 17 is already used by inputs[0]"),
        ("outputs[0].pin", "GPIO 17 is already used by inputs[0]"),
    ]


def test_serial_errors_are_reported_with_the_others_in_file_order(tmp_path: Path) -> None:
    errors = errors_of(
        HUB.replace('"gate-1"', '"Gate 1"')
        + PANIC
        + BUS
        + NODE.replace("bus-1", "bus-9")
        + NODE.replace("smoke-1", "panic-1")
        + GAS.replace("ttyUSB1", "ttyUSB0")
        + SIREN
        + '[[rules]]\nwhen = ["gas"]\noutput = "sirn"\n',
        tmp_path,
    )
    assert errors == [
        ("hub.id", errors[0][1]),
        ("rules[0].output", "no output named 'sirn' (outputs: siren)"),
        ("nodes[0].bus", "no bus named 'bus-9' (buses: bus-1)"),
        ("nodes[1].name", "name 'panic-1' is already used by inputs[0]"),
        (
            "modbus[0].port",
            "port '/dev/ttyUSB0' is already used by buses[0], a sensor bus: "
            "a Modbus line needs a port of its own",
        ),
    ]


# --- Secrets ------------------------------------------------------------------------------


def write_hub_with_credentials(tmp_path: Path, password: str = SECRET) -> Path:
    (tmp_path / "creds.toml").write_text(f'password = "{password}"\n')
    path = tmp_path / "hub.toml"
    path.write_text(HUB + '[broker]\nusername = "gate-1"\ncredentials_file = "creds.toml"\n')
    return path


def test_password_from_credentials_file(tmp_path: Path) -> None:
    cfg = load_config(write_hub_with_credentials(tmp_path), env={})
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == SECRET
    assert cfg.broker.credentials_file == tmp_path / "creds.toml"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({PASSWORD_ENV: "from-the-environment"}, "from-the-environment"),
        ({PASSWORD_ENV: ""}, SECRET),  # set but empty counts as unset
        ({}, SECRET),
    ],
)
def test_environment_password_overrides_the_file(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    cfg = load_config(write_hub_with_credentials(tmp_path), env=env)
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == expected


def test_environment_password_without_a_file(tmp_path: Path) -> None:
    cfg = parse(HUB + '[broker]\nusername = "u"\n', tmp_path, env={PASSWORD_ENV: SECRET})
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == SECRET


def test_load_config_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from-os-environ")
    cfg = load_config(write_hub_with_credentials(tmp_path))
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == "from-os-environ"


def test_secret_never_in_repr_str_or_redacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(write_hub_with_credentials(tmp_path), env={})
    redacted = cfg.redacted()
    assert redacted["broker"]["password"] == "**********"
    logging.getLogger("tuquan.test").warning("config %s %r %s", cfg, cfg, redacted)
    for text in (
        repr(cfg),
        str(cfg),
        repr(cfg.broker),
        str(cfg.broker),
        repr(cfg.broker.password),
        str(cfg.broker.password),
        json.dumps(redacted),
        cfg.model_dump_json(),
        caplog.text,
    ):
        assert SECRET not in text


def test_redacted_without_password_says_none(tmp_path: Path) -> None:
    assert parse(HUB, tmp_path).redacted()["broker"]["password"] is None


def test_secret_never_in_error_messages(tmp_path: Path) -> None:
    # A valid password next to an error elsewhere, and a password wrongly put in the TOML.
    path = write_hub_with_credentials(tmp_path)
    path.write_text(path.read_text() + "port = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={PASSWORD_ENV: SECRET})
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.errors)

    errors = errors_of(HUB + f'[broker]\nusername = "u"\npassword = "{SECRET}"\n', tmp_path)
    assert [p for p, _ in errors] == ["broker.password"]
    assert SECRET not in repr(errors)


@pytest.mark.parametrize(
    "content",
    [
        f'password = "{SECRET}',  # unterminated string
        f'pasword = "{SECRET}"\n',  # misspelt key
        f'password = "{SECRET}"\nuser = "{SECRET}"\n',
        f"password = [{SECRET!r}]\n",
    ],
)
def test_broken_credentials_file_never_quoted(tmp_path: Path, content: str) -> None:
    path = write_hub_with_credentials(tmp_path)
    (tmp_path / "creds.toml").write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert [p for p, _ in info.value.errors] == ["broker.credentials_file"]
    assert SECRET not in str(info.value)


def test_check_config_never_prints_the_secret(tmp_path: Path) -> None:
    path = write_hub_with_credentials(tmp_path)
    for env in ({}, {PASSWORD_ENV: SECRET}):
        result = check_config(path, env=env)
        assert result.returncode == 0, result.stderr
        assert SECRET not in result.stdout + result.stderr
    path.write_text(path.read_text() + "port = 0\n")
    result = check_config(path, env={PASSWORD_ENV: SECRET})
    assert result.returncode == 2
    assert SECRET not in result.stdout + result.stderr


# --- Defaults -----------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    cfg = parse(HUB, tmp_path)
    assert cfg.hub.name == ""
    b = cfg.broker
    assert (b.host, b.port, b.keepalive_s, b.client_id) == ("127.0.0.1", 1883, 30, None)
    assert (b.username, b.credentials_file, b.password, b.tls) == (None, None, None, None)
    assert cfg.client_id == "tuquan-phuong-1-gate-1"
    assert (cfg.uplink.receipts, cfg.uplink.receipt_timeout_s) == (True, 60.0)
    assert cfg.uplink.health_interval_s == 30.0
    assert (cfg.outbox.max_events, cfg.outbox.delivered_retention_s) == (100_000, 86_400.0)
    assert (cfg.inputs, cfg.outputs, cfg.rules) == ((), (), ())


def test_input_defaults_depend_on_name_and_kind(tmp_path: Path) -> None:
    text = HUB + PANIC
    for name, kind, pin in (
        ("lid", "tamper", 27),
        ("back-door", "door", 5),
        ("smoke-1", "smoke", 6),
    ):
        text += f'[[inputs]]\nname = "{name}"\nkind = "{kind}"\npin = {pin}\n'
    cfg = parse(
        text + '[[inputs]]\nname = "x"\nkind = "door"\npin = 7\nrestore = false\n', tmp_path
    )
    panic = cfg.input("panic-1")
    assert (panic.zone, panic.restore, panic.pull_up, panic.active_high) == (
        "panic-1",
        False,
        True,
        None,
    )
    assert (panic.bounce_s, panic.hold_s, panic.hold_kind) == (0.05, None, None)
    assert [(i.name, i.zone, i.restore) for i in cfg.inputs[1:]] == [
        ("lid", "lid", True),
        ("back-door", "back-door", True),
        ("smoke-1", "smoke-1", False),
        ("x", "x", False),
    ]


def test_floating_input_with_active_high(tmp_path: Path) -> None:
    cfg = parse(HUB + PANIC + 'pull_up = "none"\nactive_high = true\n', tmp_path)
    assert (cfg.input("panic-1").pull_up, cfg.input("panic-1").active_high) == (None, True)


def test_one_default_rule_per_siren(tmp_path: Path) -> None:
    outputs = SIREN + SIREN.replace('"siren"\nkind', '"siren-2"\nkind').replace("23", "25")
    outputs += '[[outputs]]\nname = "buzz"\nkind = "buzzer"\npin = 26\n'
    cfg = parse(HUB + outputs, tmp_path)
    assert [(r.output, r.when, r.seconds) for r in cfg.rules] == [
        ("siren", SIREN_RULE_KINDS, 180.0),
        ("siren-2", SIREN_RULE_KINDS, 180.0),
    ]
    assert SIREN_RULE_KINDS == ("panic", "duress", "fire", "smoke", "heat", "gas", "tamper")


def test_explicit_rules_replace_the_default(tmp_path: Path) -> None:
    assert parse("rules = []\n" + HUB + SIREN, tmp_path).rules == ()
    cfg = parse(
        HUB + SIREN + '[[rules]]\nwhen = ["fire"]\noutput = "siren"\nseconds = 30\n', tmp_path
    )
    assert [(r.output, r.when, r.seconds) for r in cfg.rules] == [("siren", ("fire",), 30.0)]


def test_bus_node_and_modbus_defaults(tmp_path: Path) -> None:
    cfg = parse(HUB + BUS + NODE + GAS, tmp_path)
    bus = cfg.bus("bus-1")
    assert (bus.port, bus.baud, bus.rs485) == ("/dev/ttyUSB0", 115_200, False)
    node = cfg.node("smoke-1")
    assert (node.bus, node.id, node.zone) == ("bus-1", 5, "smoke-1")
    assert (node.heartbeat_s, node.missed, node.supervision_kind) == (30.0, 8, "supervision")
    assert node.window_s == 240.0
    [gas] = cfg.modbus
    assert (gas.port, gas.baud, gas.parity, gas.stopbits) == ("/dev/ttyUSB1", 9600, "N", 1)
    assert (gas.unit, gas.register_address, gas.function, gas.signed) == (1, 40, 3, False)
    assert (gas.kind, gas.threshold, gas.restore_below, gas.scale) == ("gas", 50.0, 50.0, 1.0)
    assert (gas.zone, gas.poll_s, gas.timeout_s, gas.missed) == ("gas-1", 2.0, 0.5, 3)
    with pytest.raises(KeyError):
        cfg.bus("bus-2")
    with pytest.raises(KeyError):
        cfg.node("panic-1")


def test_buses_nodes_and_modbus_as_written(tmp_path: Path) -> None:
    text = (
        HUB
        + BUS.replace("/dev/ttyUSB0", "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0")
        + "baud = 57600\nrs485 = true\n"
        + NODE
        + 'zone = "Kitchen, 2nd floor"\nheartbeat_s = 12\nmissed = 4\n'
        + NODE.replace("smoke-1", "fob-1").replace("id = 5", "id = 6")
        + 'supervision_kind = "rf_supervision"\n'
        + GAS
        + 'parity = "E"\nstopbits = 2\nfunction = 4\nscale = 0.1\nrestore_below = 30.5\n'
        + GAS.replace("gas-1", "heat-1")
        .replace("unit = 1", "unit = 2")
        .replace('"gas"', '"heat"')
        .replace("threshold = 50", "threshold = -5")
        + 'parity = "E"\nstopbits = 2\nsigned = true\n'
    )
    cfg = parse(text, tmp_path)
    assert cfg.bus("bus-1").rs485 is True and cfg.bus("bus-1").baud == 57600
    smoke, fob = cfg.nodes
    assert (smoke.zone, smoke.window_s) == ("Kitchen, 2nd floor", 48.0)
    assert (fob.id, fob.supervision_kind) == (6, "rf_supervision")
    gas, heat = cfg.modbus
    assert (gas.function, gas.scale, gas.restore_below, gas.threshold) == (4, 0.1, 30.5, 50.0)
    assert (heat.signed, heat.threshold, heat.restore_below) == (True, -5.0, -5.0)


def test_rules_can_sound_the_siren_for_gas(tmp_path: Path) -> None:
    cfg = parse(
        HUB + SIREN + GAS + '[[rules]]\nwhen = ["gas", "smoke"]\noutput = "siren"\n', tmp_path
    )
    assert cfg.rules[0].when == ("gas", "smoke")


def test_the_same_node_id_on_two_buses_is_fine(tmp_path: Path) -> None:
    text = HUB + BUS + BUS.replace("bus-1", "bus-2").replace("USB0", "USB2") + NODE
    cfg = parse(text + NODE.replace("smoke-1", "smoke-2").replace("bus-1", "bus-2"), tmp_path)
    assert [(n.bus, n.id) for n in cfg.nodes] == [("bus-1", 5), ("bus-2", 5)]


def test_modbus_detectors_share_a_line_with_the_same_settings(tmp_path: Path) -> None:
    second = GAS.replace("gas-1", "gas-2").replace("unit = 1", "unit = 2")
    cfg = parse(HUB + GAS + "baud = 9600\n" + second, tmp_path)
    assert [m.unit for m in cfg.modbus] == [1, 2]


def test_built_directly_the_config_checks_buses_too() -> None:
    data: dict[str, Any] = tomllib.loads(HUB + BUS + NODE.replace("bus-1", "bus-9"))
    with pytest.raises(ValidationError, match="no bus named 'bus-9'"):
        Config.model_validate(data)


def test_relative_paths_start_at_the_config_folder(tmp_path: Path) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    for name in ("ca.pem", "hub.crt", "hub.key"):
        (conf / name).write_text("x")
    path = conf / "hub.toml"
    path.write_text(
        HUB + '[broker.tls]\nca_file = "ca.pem"\ncert_file = "hub.crt"\nkey_file = "hub.key"\n'
    )
    result = check_config(path, cwd=tmp_path)  # a different working directory
    assert result.returncode == 0, result.stderr
    tls = load_config(path, env={}).broker.tls
    assert tls is not None
    assert (tls.ca_file, tls.cert_file, tls.key_file, tls.insecure) == (
        conf / "ca.pem",
        conf / "hub.crt",
        conf / "hub.key",
        False,
    )


@pytest.mark.parametrize("host", ["mqtt.example", "localhost", "10.0.0.5", "::1", "fe80::1%eth0"])
def test_valid_broker_hosts(tmp_path: Path, host: str) -> None:
    assert parse(HUB + f'[broker]\nhost = "{host}"\n', tmp_path).broker.host == host


# --- The objects the hub uses ------------------------------------------------------------


def test_config_is_frozen_and_hashable(tmp_path: Path) -> None:
    cfg = parse(HUB + PANIC + SIREN, tmp_path)
    with pytest.raises(ValidationError):
        cfg.hub.id = "other"
    with pytest.raises(ValidationError):
        cfg.inputs[0].pin = 4
    assert hash(cfg) == hash(parse(HUB + PANIC + SIREN, tmp_path))


def test_lookup_by_name(tmp_path: Path) -> None:
    cfg = parse(HUB + PANIC + SIREN, tmp_path)
    assert cfg.input("panic-1").pin == 17
    assert cfg.output("siren").pin == 23
    with pytest.raises(KeyError):
        cfg.input("siren")
    with pytest.raises(KeyError):
        cfg.output("panic-1")


def test_built_directly_the_config_still_checks_across_tables() -> None:
    data: dict[str, Any] = tomllib.loads(HUB + PANIC + SIREN.replace("23", "17"))
    with pytest.raises(ValidationError, match="GPIO 17 is already used by inputs"):
        Config.model_validate(data)
