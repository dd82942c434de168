"""``tuquan console user ...`` and ``tuquan console token ...`` as a script runs them: a
subprocess, the password on standard input, the accounts in the data dir's store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from console_kit import PASSWORD, live_console

from commune.audit import AuditLog
from commune.db import Db
from console.accounts import Accounts

REPO = Path(__file__).resolve().parents[1]


def tuquan(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TUQUAN_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "tuquan", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


def test_user_add_passwd_remove(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = tuquan(
        "console",
        "user",
        "add",
        "nguyen.van.a",
        "--role",
        "operator",
        "--data-dir",
        str(data),
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    with Db(data / "receiver.sqlite3") as db:
        accounts = Accounts(db)
        user = accounts.get_user("nguyen.van.a")
        assert user is not None and user.role == "operator"
        assert accounts.verify("nguyen.van.a", PASSWORD)
        stored = db.read_one("SELECT password_hash FROM console_users")
        assert stored is not None and stored[0].startswith("$argon2id$")

    again = tuquan(
        "console",
        "--data-dir",
        str(data),
        "user",
        "add",
        "nguyen.van.a",
        "--role",
        "viewer",
        stdin="other\n",
    )
    assert again.returncode == 1 and "already exists" in again.stderr

    changed = tuquan(
        "console",
        "user",
        "passwd",
        "nguyen.van.a",
        "--role",
        "admin",
        "--data-dir",
        str(data),
        stdin="mật khẩu mới\r\n",
    )
    assert changed.returncode == 0, changed.stderr
    listed = tuquan("console", "user", "list", "--data-dir", str(data))
    assert listed.stdout.split("\t")[:2] == ["nguyen.van.a", "admin"]
    with Db(data / "receiver.sqlite3") as db:
        accounts = Accounts(db)
        assert accounts.verify("nguyen.van.a", "mật khẩu mới")
        assert not accounts.verify("nguyen.van.a", PASSWORD)
        actions = [(r.actor, r.action) for r in reversed(AuditLog(db).recent(10))]
        assert actions == [("cli", "user_added"), ("cli", "password_changed")]

    removed = tuquan("console", "user", "remove", "nguyen.van.a", "--data-dir", str(data))
    assert removed.returncode == 0
    with Db(data / "receiver.sqlite3") as db:
        assert Accounts(db).get_user("nguyen.van.a") is None
    assert tuquan("console", "user", "remove", "nobody", "--data-dir", str(data)).returncode == 1


def test_an_empty_password_or_a_bad_name_or_role_is_refused(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    empty = tuquan(
        "console", "user", "add", "op", "--role", "operator", "--data-dir", data, stdin="\n"
    )
    assert empty.returncode == 1 and "empty" in empty.stderr
    nothing = tuquan("console", "user", "add", "op", "--role", "operator", "--data-dir", data)
    assert nothing.returncode == 1 and "empty" in nothing.stderr
    bad_name = tuquan(
        "console", "user", "add", "../root", "--role", "operator", "--data-dir", data, stdin="pw\n"
    )
    assert bad_name.returncode == 1 and "not a valid user name" in bad_name.stderr
    bad_role = tuquan(
        "console", "user", "add", "op", "--role", "god", "--data-dir", data, stdin="pw\n"
    )
    assert bad_role.returncode == 2
    no_role = tuquan("console", "user", "add", "op", "--data-dir", data, stdin="pw\n")
    assert no_role.returncode == 2


def test_a_user_made_by_the_cli_logs_in(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = tuquan(
        "console",
        "user",
        "add",
        "op1",
        "--role",
        "operator",
        "--data-dir",
        str(data),
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    with live_console(tmp_path) as (live, desk):
        client = live.client()
        try:
            assert client.login("op1").status_code == 303
            assert client.get("/").status_code == 200
        finally:
            client.close()


def test_tokens_add_list_remove(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    made = tuquan("console", "token", "add", "province", "--role", "viewer", "--data-dir", data)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("tqc_") and len(token) > 40
    assert "only this once" in made.stderr
    listed = tuquan("console", "token", "list", "--data-dir", data)
    assert listed.stdout.split("\t")[:2] == ["province", "viewer"]
    assert token not in listed.stdout
    with Db(Path(data) / "receiver.sqlite3") as db:
        accounts = Accounts(db)
        found = accounts.token(token)
        assert found is not None and found.role == "viewer"
        assert token not in str(db.read("SELECT * FROM console_tokens")[0][2])
    assert (
        tuquan(
            "console", "token", "add", "province", "--role", "admin", "--data-dir", data
        ).returncode
        == 1
    )
    assert tuquan("console", "token", "remove", "province", "--data-dir", data).returncode == 0
    with Db(Path(data) / "receiver.sqlite3") as db:
        assert Accounts(db).token(token) is None
