"""The commune receiver's config file: read and reported as the hub's is.

Invalid files go through the real ``tuquan receive --config`` command, as an operator runs it:
each exits 2 before connecting anywhere, with the key and what is allowed, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from commune.config import load_receiver_config
from settings import PASSWORD_ENV

REPO = Path(__file__).resolve().parent.parent
SECRET = "receiver-password-4410"

RECEIVER = b"""
[receiver]
commune = "phuong-1"
"""


def receive(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``tuquan receive --config`` with a data folder of its own and no password in the env."""
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    return subprocess.run(
        [sys.executable, "-m", "tuquan", "receive", "--config", str(config)]
        + ["--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


# -- valid files ------------------------------------------------------------------------------


def test_a_receiver_file_with_a_broker_like_a_hubs(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt.toml").write_text(f'password = "{SECRET}"\n')
    path = tmp_path / "receiver.toml"
    path.write_bytes(
        RECEIVER
        + b'share_group = "police"\n'
        + b'[broker]\nhost = "mqtt.commune.example"\nport = 8883\n'
        + b'username = "receiver-phuong-1"\ncredentials_file = "secrets/mqtt.toml"\n'
    )
    cfg = load_receiver_config(path, env={})
    assert (cfg.receiver.commune, cfg.receiver.share_group, cfg.receiver.client_id) == (
        "phuong-1",
        "police",
        None,
    )
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.username) == (
        "mqtt.commune.example",
        8883,
        "receiver-phuong-1",
    )
    # Relative to the config file's folder, not to where the command runs.
    assert cfg.broker.credentials_file == tmp_path / "secrets" / "mqtt.toml"
    assert cfg.broker.password is not None and cfg.broker.password.get_secret_value() == SECRET
    assert SECRET not in repr(cfg)


def test_without_a_broker_table_the_password_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "receiver.toml"
    path.write_bytes(RECEIVER + b'[broker]\nusername = "r"\n')
    cfg = load_receiver_config(path, env={PASSWORD_ENV: SECRET})
    assert cfg.broker.password is not None and cfg.broker.password.get_secret_value() == SECRET
    path.write_bytes(RECEIVER)
    cfg = load_receiver_config(path, env={})
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.password) == ("127.0.0.1", 1883, None)


def test_a_receiver_of_every_commune_or_of_a_list(tmp_path: Path) -> None:
    path = tmp_path / "receiver.toml"
    path.write_text('[receiver]\ncommune = "+"\nshare_group = "p"\nsession_expiry_s = 20\n')
    cfg = load_receiver_config(path, env={})
    assert cfg.receiver.scope.every and cfg.receiver.session_expiry_s == 20
    path.write_text('[receiver]\ncommunes = ["phuong-1", "xa-2"]\n')
    cfg = load_receiver_config(path, env={})
    assert cfg.receiver.scope.communes == ("phuong-1", "xa-2")
    assert (cfg.receiver.commune, cfg.receiver.session_expiry_s) == (None, None)


# -- invalid files: every one exits 2 and names the key ---------------------------------------


@dataclass(frozen=True)
class Bad:
    content: bytes
    path: str  # "{file}" stands for the config file's path
    fragment: str


BAD = {
    "no [receiver] table": Bad(
        b'[broker]\nhost = "localhost"\n', "receiver", "required table is missing"
    ),
    "a receiver key misspelt": Bad(
        b'[receiver]\ncomune = "phuong-1"\n', "receiver.comune", "did you mean 'commune'?"
    ),
    "a broker key misspelt": Bad(
        RECEIVER + b'[broker]\nhots = "localhost"\n', "broker.hots", "did you mean 'host'?"
    ),
    "a hub's table in a receiver's file": Bad(
        RECEIVER + b'[hub]\nid = "gate-1"\n', "hub", "unknown key 'hub'; did you mean 'hubs'?"
    ),
    "a commune with capitals and a dot": Bad(
        b'[receiver]\ncommune = "Phuong.1"\n',
        "receiver.commune",
        "'Phuong.1' is not a valid id: use 1 to 63 lowercase letters, digits, '-' or '_', "
        "starting with a letter or digit",
    ),
    "commune and communes both": Bad(
        RECEIVER + b'communes = ["phuong-2"]\n',
        "receiver.communes",
        "give commune or communes, not both",
    ),
    "'+' in a list of communes": Bad(
        b'[receiver]\ncommunes = ["phuong-1", "+"]\n',
        "receiver.communes",
        "'+' (every commune) stands alone, not in a list of communes",
    ),
    "a commune named twice": Bad(
        b'[receiver]\ncommunes = ["phuong-1", "phuong-1"]\n',
        "receiver.communes",
        "commune 'phuong-1' is named twice",
    ),
    "no commune at all": Bad(
        b'[receiver]\nshare_group = "police"\n', "receiver", "name the commune(s)"
    ),
    "a negative session expiry": Bad(
        RECEIVER + b"session_expiry_s = -1\n", "receiver.session_expiry_s", "at least 0"
    ),
    "a share group with a space": Bad(
        RECEIVER + b'share_group = "police 1"\n',
        "receiver.share_group",
        "use 1 to 64 letters, digits, '-' or '_'",
    ),
    "a file saved as Latin-1": Bad(
        b'[receiver]\ncommune = "ph\xfbong"\n', "{file}:2:14", "not UTF-8 text"
    ),
    "a TOML syntax error": Bad(RECEIVER + b"[broker\n", "{file}:4:8", "TOML syntax error"),
}


@pytest.mark.parametrize("case", BAD.values(), ids=list(BAD))
def test_an_invalid_receiver_config_exits_2_naming_the_key(case: Bad, tmp_path: Path) -> None:
    path = tmp_path / "receiver.toml"
    path.write_bytes(case.content)
    result = receive(path, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    where = case.path.format(file=path)
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{where}: ")]
    assert any(case.fragment in line for line in lines), result.stderr
    assert "pattern" not in result.stderr  # the rule in words, not a regular expression
    assert not (tmp_path / "data").exists(), "it stopped before opening its store"


def test_every_error_of_a_receiver_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "receiver.toml"
    path.write_bytes(b'[receiver]\ncommune = "A"\nshare = "x"\n[broker]\nport = 0\n')
    result = receive(path, tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "receiver.commune: 'A' is not a valid id: use 1 to 63 lowercase letters, digits, '-' or "
        "'_', starting with a letter or digit (it is an MQTT topic level)",
        "receiver.share: unknown key 'share'; did you mean 'share_group'?",
        "broker.port: must be at least 1, not 0",
        f"{path}: 3 error(s)",
    ]
