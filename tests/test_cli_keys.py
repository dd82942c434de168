"""``tuquan keys``: keys made 0600 and shown, hubs enrolled and revoked in a real receiver store,
the commune key trusted and forgotten at a hub, bad keys refused with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from commune.locations import DB_FILENAME
from commune.store import EventStore
from commune.trust import COMMUNE_KEY_FILE
from core.signing import PublicKey, SigningKey
from gateway.trust import HUB_KEY_FILE, read_commune_key
from tuquan.cli import main as tuquan


def shown(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[PublicKey, str]:
    """Run ``keys show``; (the public key of its first line, the fingerprint of its second)."""
    capsys.readouterr()
    assert tuquan(["keys", "show", *args]) == 0
    key_line, fingerprint_line = capsys.readouterr().out.splitlines()
    return PublicKey.from_text(key_line), fingerprint_line.split()[1]


def test_init_show_and_force_rotate_the_hub_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_dir = tmp_path / "hub"
    assert tuquan(["keys", "show", "--data-dir", str(hub_dir)]) == 1
    assert "keys init" in capsys.readouterr().err

    assert tuquan(["keys", "init", "--data-dir", str(hub_dir)]) == 0
    path = hub_dir / HUB_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    key, fingerprint = shown(capsys, "--data-dir", str(hub_dir))
    assert key == SigningKey.load(path).public and fingerprint == key.fingerprint

    assert tuquan(["keys", "init", "--data-dir", str(hub_dir)]) == 0  # kept
    assert shown(capsys, "--data-dir", str(hub_dir))[0] == key
    assert tuquan(["keys", "init", "--data-dir", str(hub_dir), "--force"]) == 0
    rotated, _ = shown(capsys, "--data-dir", str(hub_dir))
    assert rotated != key and path.stat().st_mode & 0o777 == 0o600


def test_receiver_key_trust_and_revoke_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_dir, rx_dir = str(tmp_path / "hub"), str(tmp_path / "rx")
    assert tuquan(["keys", "init", "--receiver", "--data-dir", rx_dir]) == 0
    assert (tmp_path / "rx" / COMMUNE_KEY_FILE).stat().st_mode & 0o777 == 0o600
    commune, _ = shown(capsys, "--receiver", "--data-dir", rx_dir)
    assert tuquan(["keys", "init", "--data-dir", hub_dir]) == 0
    hub_key, _ = shown(capsys, "--data-dir", hub_dir)

    # Each side trusts the other.
    assert tuquan(["keys", "trust", "hub-1", hub_key.text, "--data-dir", rx_dir]) == 0
    assert tuquan(["keys", "trust", "--commune", commune.text, "--data-dir", hub_dir]) == 0
    assert read_commune_key(tmp_path / "hub") == commune
    with EventStore(tmp_path / "rx" / DB_FILENAME) as store:
        [record] = store.hub_keys()
    assert (record.hub, record.fingerprint, record.revoked_at) == (
        "hub-1",
        hub_key.fingerprint,
        None,
    )
    assert PublicKey.from_text(record.key) == hub_key

    # Enrolling the active key again changes nothing; a new key is added as the active one.
    assert tuquan(["keys", "trust", "hub-1", hub_key.text, "--data-dir", rx_dir]) == 0
    new_key = SigningKey.generate().public
    assert tuquan(["keys", "trust", "hub-1", new_key.text, "--data-dir", rx_dir]) == 0
    with EventStore(tmp_path / "rx" / DB_FILENAME) as store:
        assert [k.fingerprint for k in store.hub_keys()] == [
            hub_key.fingerprint,
            new_key.fingerprint,
        ]

    assert tuquan(["keys", "revoke", "hub-1", "--data-dir", rx_dir]) == 0
    with EventStore(tmp_path / "rx" / DB_FILENAME) as store:
        assert all(k.revoked_at is not None for k in store.hub_keys())
    assert tuquan(["keys", "revoke", "hub-1", "--data-dir", rx_dir]) == 1  # nothing left
    assert tuquan(["keys", "revoke", "hub-9", "--data-dir", rx_dir]) == 1

    assert tuquan(["keys", "revoke", "--commune", "--data-dir", hub_dir]) == 0
    assert read_commune_key(tmp_path / "hub") is None
    assert tuquan(["keys", "revoke", "--commune", "--data-dir", hub_dir]) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["trust", "hub-1", "not-a-key"],
        ["trust", "hub-1", "ed25519:AAAA"],  # 3 bytes, not 32
        ["trust", "Hub One", SigningKey.generate().public.text],  # not a hub id
        ["trust", "--commune", "ed25519:!!!"],
        ["trust", "hub-1"],  # no key
        ["revoke"],  # no hub
    ],
)
def test_bad_keys_and_usage_exit_2_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert tuquan(["keys", *args, "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("tuquan keys: ")
    assert not (tmp_path / "commune.pub").exists()
    if (tmp_path / DB_FILENAME).exists():
        with EventStore(tmp_path / DB_FILENAME) as store:
            assert store.hub_keys() == []


def test_an_unreadable_key_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / HUB_KEY_FILE).write_text("not a PEM key\n")
    assert tuquan(["keys", "show", "--data-dir", str(tmp_path)]) == 2
    assert "not a PEM private key" in capsys.readouterr().err
