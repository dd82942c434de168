"""``[forward.dc09]`` as an operator writes it in the receiver's TOML file: absurd values refused,
each at its key; the key read from the environment or a file, never from the file itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from dc09_kit import KEY

from commune.config import load_receiver_config
from commune.dc09.config import derived_account
from core.errors import ConfigError

HEAD = """
[receiver]
commune = "phuong-1"

[forward.dc09]
host = "127.0.0.1"
port = 9000
"""


def load(tmp_path: Path, lines: str = "", env: dict[str, str] | None = None):
    path = tmp_path / "receiver.toml"
    head = HEAD
    for key in ("host", "port"):  # a line that sets them again replaces the head's
        if lines.startswith(f"{key} ="):
            head = "\n".join(line for line in head.split("\n") if not line.startswith(f"{key} ="))
    path.write_text(head + lines, encoding="utf-8")
    return load_receiver_config(path, env=env or {})


def errors(tmp_path: Path, lines: str, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, lines, env)
    return {
        path.removesuffix(".int").removesuffix(".float"): msg for path, msg in caught.value.errors
    }


def test_no_forward_table_means_no_forwarder(tmp_path: Path) -> None:
    path = tmp_path / "receiver.toml"
    path.write_text('[receiver]\ncommune = "phuong-1"\n', encoding="utf-8")
    assert load_receiver_config(path, env={}).forward.dc09 is None


def test_the_defaults_forward_alarms_and_troubles_unencrypted(tmp_path: Path) -> None:
    config = load(tmp_path).forward.dc09
    assert config is not None
    assert config.priorities == (0, 1)
    assert config.key is None and config.key_bytes() is None
    assert (config.line_prefix, config.receiver_number) == ("0", None)
    assert (config.ack_timeout_s, config.link_test_s, config.retry_max_s) == (10, 60, 60)


def test_accounts_and_zones_are_read_and_accounts_upper_cased(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        'receiver_number = "a1"\nline_prefix = "F"\n'
        '[forward.dc09.accounts]\ncho-an-dong = "12ab"\n[forward.dc09.zones]\npanic-1 = 7\n',
    ).forward.dc09
    assert config is not None
    assert config.accounts == {"cho-an-dong": "12AB"}
    assert config.receiver_number == "A1" and config.line_prefix == "F"
    assert config.zones == {"panic-1": 7}
    assert config.account_for("cho-an-dong") == "12AB"


def test_a_hub_without_an_account_gets_a_stable_one_of_its_own(tmp_path: Path) -> None:
    config = load(tmp_path, 'default_account_prefix = "99"\n').forward.dc09
    assert config is not None
    first = config.account_for("chung-cu-b")
    assert first == derived_account("99", "chung-cu-b") == config.account_for("chung-cu-b")
    assert first.startswith("99") and len(first) == 16 and int(first, 16) >= 0
    assert config.account_for("chung-cu-c") != first


@pytest.mark.parametrize(
    ("lines", "key"),
    [
        ("port = 0\n", "port"),
        ("port = 65536\n", "port"),
        ('port = "9000"\n', "port"),
        ('host = "tcp://arc.example"\n', "host"),
        ("ack_timeout_s = nan\n", "ack_timeout_s"),
        ("ack_timeout_s = inf\n", "ack_timeout_s"),
        ("ack_timeout_s = 0\n", "ack_timeout_s"),
        ("connect_timeout_s = -1\n", "connect_timeout_s"),
        ("link_test_s = nan\n", "link_test_s"),
        ("link_test_s = 0.5\n", "link_test_s"),
        ("link_test_s = 1e30\n", "link_test_s"),
        ("retry_max_s = nan\n", "retry_max_s"),
        ("retry_max_s = 0\n", "retry_max_s"),
        ("priorities = []\n", "priorities"),
        ("priorities = [4]\n", "priorities[0]"),
        ('line_prefix = "G"\n', "line_prefix"),
        ('receiver_number = "1234567"\n', "receiver_number"),
        ('default_account_prefix = "123456789"\n', "default_account_prefix"),
        ('link_test_account = "12"\n', "link_test_account"),
        ('[forward.dc09.accounts]\ncho-an-dong = "12G4"\n', "accounts.cho-an-dong"),
        ('[forward.dc09.accounts]\ncho-an-dong = "12"\n', "accounts.cho-an-dong"),
        ('[forward.dc09.accounts]\ncho-an-dong = "1234567890ABCDEF0"\n', "accounts.cho-an-dong"),
        ("[forward.dc09.accounts]\ncho-an-dong = 1234\n", "accounts.cho-an-dong"),
        ('[forward.dc09.accounts]\nCho-An-Dong = "1234"\n', "accounts.Cho-An-Dong.[key]"),
        ("[forward.dc09.zones]\npanic-1 = 1000\n", "zones.panic-1"),
        ("[forward.dc09.zones]\npanic-1 = -1\n", "zones.panic-1"),
        ("colour = 1\n", "colour"),
    ],
)
def test_an_absurd_value_is_refused_at_its_key(tmp_path: Path, lines: str, key: str) -> None:
    found = errors(tmp_path, lines)
    assert list(found) == [f"forward.dc09.{key}"], found


def test_the_key_comes_from_the_environment(tmp_path: Path) -> None:
    config = load(tmp_path, 'key_env = "TUQUAN_DC09_KEY"\n', {"TUQUAN_DC09_KEY": KEY}).forward.dc09
    assert config is not None and config.key_bytes() == KEY.encode()
    assert KEY not in repr(config)


def test_the_key_comes_from_a_file_and_hex_encoding_takes_two_digits_a_byte(tmp_path: Path) -> None:
    (tmp_path / "dc09.key").write_text(" 00112233445566778899AABBCCDDEEFF\n", encoding="utf-8")
    config = load(tmp_path, 'key_file = "dc09.key"\nkey_encoding = "hex"\n').forward.dc09
    assert config is not None and config.key_bytes() == bytes.fromhex(
        "00112233445566778899AABBCCDDEEFF"
    )


@pytest.mark.parametrize(
    ("key", "encoding"),
    [
        ("A1B2C3D4E5F6071", "text"),  # 15 characters
        ("A1B2C3D4E5F607189", "text"),
        ("A1B2C3D4E5F6071Z", "text"),  # not hex
        (KEY, "hex"),  # 16 hex digits are only 64 bits
        ("00112233445566778899AABBCCDDEEF", "hex"),
    ],
)
def test_a_key_of_the_wrong_length_or_not_hex_is_refused_without_quoting_it(
    tmp_path: Path, key: str, encoding: str
) -> None:
    found = errors(
        tmp_path,
        f'key_env = "TUQUAN_DC09_KEY"\nkey_encoding = "{encoding}"\n',
        {"TUQUAN_DC09_KEY": key},
    )
    assert list(found) == ["forward.dc09.key"]
    assert "128, 192 or 256 bits" in found["forward.dc09.key"]
    assert key not in found["forward.dc09.key"]


def test_a_missing_key_variable_or_file_and_a_key_in_the_file_are_refused(tmp_path: Path) -> None:
    found = errors(tmp_path, 'key_env = "TUQUAN_DC09_KEY"\n')
    assert "TUQUAN_DC09_KEY" in found["forward.dc09.key"]
    found = errors(tmp_path, 'key_file = "absent.key"\n')
    assert "file not found" in found["forward.dc09.key_file"]
    (tmp_path / "empty.key").write_text("\n", encoding="utf-8")
    assert "empty" in errors(tmp_path, 'key_file = "empty.key"\n')["forward.dc09.key"]
    found = errors(tmp_path, f'key = "{KEY}"\n')
    assert "not allowed in the config file" in found["forward.dc09.key"]
    assert KEY not in found["forward.dc09.key"]
