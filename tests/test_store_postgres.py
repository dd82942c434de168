"""The event store on PostgreSQL (a real server, a database of the test's own): the same
contract as the SQLite file — each id once across any number of writers, rows read back in the
order they committed, bad rows refused for good and a lost server retried — plus what only a
server has: reconnecting after it restarts, and other connections' commits seen."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from commune.config import parse_receiver_config
from commune.db import open_db, postgres_ddl, shown_location
from commune.pg import PostgresDb, translate, with_defaults
from commune.store import INSERT_SQL, EventStore, ReceivedEvent, event_row
from commune.storing import Outcome, Pending, is_transient, store_pending
from core.errors import ConfigError
from core.events import Event, utc_now_iso
from core.signing import SigningKey
from testkit.hubs import COMMUNE, HUB
from testkit.postgres import Postgres
from testkit.waiting import wait_until


def received(seq: int, *, hub: str = HUB, kind: str = "panic", **data: Any) -> ReceivedEvent:
    event = Event(kind=kind, zone="guard-post", source="panic-1", seq=seq, data=data)
    return ReceivedEvent.from_event(
        event, hub=hub, commune=COMMUNE, payload="{}", received_at=utc_now_iso()
    )


def test_each_id_once_and_rows_back_in_store_order(pg_url: str) -> None:
    a, b, c = received(1), received(2), received(3)
    with EventStore(pg_url) as store:
        assert store.db.dialect == "postgresql"
        assert store.store_batch([a, b, a]) == [True, True, False]
        assert store.store_batch([b, c]) == [False, True]
        assert store.count() == 3
        assert [row["seq"] for _, row in store.rows_after(0, 10)] == [1, 2, 3]
        first = store.rows_after(0, 1)[0][0]
        assert [row["seq"] for _, row in store.rows_after(first, 10)] == [2, 3]
        got = store.get(b.id)
        assert got is not None and got["clock_synced"] is False and got["data"] == {}
        assert "rowid" not in got
        assert [r["id"] for r in store.recent(2)] == [c.id, b.id]
    with EventStore(pg_url) as again:  # the schema is there: opening twice changes nothing
        assert again.ids() == sorted([a.id, b.id, c.id])


def test_two_writers_one_record_in_commit_order(pg_url: str) -> None:
    """Two stores (two receivers) write the same ids at once: each id once, and a reader
    following rowid never passes a row that commits after it (the events lock)."""
    events = [received(n) for n in range(1, 401)]
    stores = [EventStore(pg_url), EventStore(pg_url)]
    new: list[list[bool]] = [[], []]

    def write(i: int) -> None:
        for start in range(0, len(events), 20):
            new[i].extend(stores[i].store_batch(events[start : start + 20]))

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    seen: list[int] = []
    position = 0
    while any(t.is_alive() for t in threads) or position < stores[0].count():
        for rowid, _row in stores[0].rows_after(position, 1000):
            seen.append(rowid)
            position = rowid
        if not any(t.is_alive() for t in threads) and position >= _max_rowid(stores[0]):
            break
    for t in threads:
        t.join()
    assert sum(new[0]) + sum(new[1]) == 400
    assert stores[0].count() == 400
    # The follower saw every row, once, in rowid order: none committed behind its position.
    assert len(seen) == 400 and seen == sorted(seen)
    for store in stores:
        store.close()


def test_a_follower_never_passes_a_row_that_commits_later(pg_url: str) -> None:
    """Receiver A holds its transaction open with a row in it; receiver B stores meanwhile.
    B's row must not be visible before A's (it would have a higher rowid, and a reader that
    moved its position past it would never see A's): B waits for A's commit."""
    a, b, reader = EventStore(pg_url), EventStore(pg_url), EventStore(pg_url)
    first, second = received(1), received(2)
    inside, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with a.db.tx(notify=False) as conn:
            a.db.events_write_lock(conn)
            conn.execute(INSERT_SQL, event_row(first))
            inside.set()
            release.wait(30)

    slow = threading.Thread(target=slow_writer)
    slow.start()
    assert inside.wait(30)
    fast = threading.Thread(target=b.store_batch, args=([second],))
    fast.start()
    fast.join(0.5)  # time for B to commit, if anything let it
    seen = [row["id"] for _, row in reader.rows_after(0, 10)]
    position = max((rowid for rowid, _ in reader.rows_after(0, 10)), default=0)
    release.set()
    slow.join()
    fast.join()
    seen += [row["id"] for _, row in reader.rows_after(position, 10)]
    assert sorted(seen) == sorted([first.id, second.id])
    for store in (a, b, reader):
        store.close()


def _max_rowid(store: EventStore) -> int:
    return int(store.db.read_one("SELECT coalesce(max(rowid), 0) FROM events")[0])


def test_a_bad_row_is_quarantined_not_retried(pg_url: str) -> None:
    """PostgreSQL refuses what SQLite takes (a NUL in text, a number beyond 64 bits): that is
    the message's fault, so it goes to the quarantine and the rest of the batch is stored."""
    nul = ReceivedEvent.from_event(
        Event(kind="panic", zone="a\x00b", source="panic-1", seq=5),
        hub=HUB,
        commune=COMMUNE,
        payload="{}",
        received_at=utc_now_iso(),
    )
    good = received(6)
    stopping = threading.Event()
    with EventStore(pg_url) as store:
        pending = [Pending("t/1", b"raw\x00bytes", nul), Pending("t/2", b"{}", good)]
        assert store_pending(store, pending, stopping) == [Outcome.QUARANTINED, Outcome.NEW]
        assert store.ids() == [good.id]
        [kept] = store.quarantined()
        assert kept["payload"] == b"raw\x00bytes" and kept["topic"] == "t/1"
        assert "DataError" in kept["reason"] or "NUL" in kept["reason"]
        assert store.quarantine("t/1", b"raw\x00bytes", "again", utc_now_iso()) is False
        assert store.quarantined()[0]["times"] == 2
        with pytest.raises(psycopg.DataError) as refused:
            store.store_batch([received(10**30)])
        assert not is_transient(refused.value)


def test_keys_and_feed_position_and_other_connections_commits(pg_url: str) -> None:
    with EventStore(pg_url) as store, EventStore(pg_url) as other:
        version = store.data_version()
        assert store.data_version() == version  # nothing happened
        store.enrol_hub_key("hub-2", "k", "fp3", utc_now_iso())
        assert store.data_version() == version  # its own commits are not another's
        assert other.enrol_hub_key(HUB, "key-text", "fp1", utc_now_iso()) is True
        wait_until(lambda: store.data_version() != version, timeout=10)
        assert [k.fingerprint for k in store.hub_keys()] == ["fp3", "fp1"]
        assert other.enrol_hub_key(HUB, "key-text", "fp1", utc_now_iso()) is False
        assert other.enrol_hub_key(HUB, "key-2", "fp2", utc_now_iso()) is True
        assert [k.fingerprint for k in store.hub_keys()] == ["fp3", "fp1", "fp2"]
        assert other.revoke_hub_keys(HUB, utc_now_iso(), "fp1") == 1
        assert store.feed_position() == 0
        store.set_feed_position(7)
        assert other.feed_position() == 7


def test_the_server_restarting_is_transient_and_the_store_reconnects(pg_server: Postgres) -> None:
    """A server that goes away mid-stream: the batch fails as transient (retried with
    backoff, unacknowledged meanwhile), and once the server is back it is stored, once."""
    server = Postgres()
    try:
        server.start()
        url = server.create_database("events")
        stopping = threading.Event()
        with EventStore(url) as store:
            assert store.store_batch([received(1)]) == [True]
            server.stop("immediate")
            with pytest.raises(psycopg.OperationalError) as lost:
                store.store_batch([received(2)])
            assert is_transient(lost.value)
            restart = threading.Timer(1.0, server.start)
            restart.start()
            try:
                outcomes = store_pending(store, [Pending("t", b"{}", received(3))], stopping)
            finally:
                restart.join()
            assert outcomes == [Outcome.NEW]
            assert sorted(r["seq"] for r in (store.get(i) for i in store.ids()) if r) == [1, 3]
    finally:
        server.stop("immediate")
        server.remove()


def test_schema_made_by_many_at_once(pg_url: str) -> None:
    """Receivers and consoles starting together: CREATE ... IF NOT EXISTS races on
    PostgreSQL without the schema lock."""
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            EventStore(pg_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_migrations_apply_once(pg_url: str) -> None:
    db = open_db(pg_url)
    try:
        assert isinstance(db, PostgresDb)
        step = ["CREATE TABLE extra (id BIGINT PRIMARY KEY)"]
        assert db.migrate("0001-extra", step) is True
        assert db.migrate("0001-extra", step) is False
        assert db.has_table("extra") and db.columns("extra") == {"id"}
        assert [r[0] for r in db.read("SELECT name FROM schema_migrations")] == ["0001-extra"]
    finally:
        db.close()


def test_dialect_translation() -> None:
    assert translate("SELECT ? WHERE x LIKE 'a%'") == "SELECT %s WHERE x LIKE 'a%%'"
    assert translate("SELECT :a, :b", True) == "SELECT %(a)s, %(b)s"
    ddl = postgres_ddl(
        "CREATE TABLE IF NOT EXISTS t (\n id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        " n INTEGER NOT NULL, r REAL, b BLOB\n) WITHOUT ROWID",
        rowid=True,
    )
    assert "GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" in ddl
    assert "n BIGINT NOT NULL" in ddl and "DOUBLE PRECISION" in ddl and "BYTEA" in ddl
    assert "rowid BIGINT GENERATED ALWAYS AS IDENTITY" in ddl and "WITHOUT" not in ddl
    url = with_defaults("postgresql://app@db1:5432,db2:5432/tuquan", "tuquan-receiver")
    assert "target_session_attrs=read-write" in url and "connect_timeout=" in url
    kept = with_defaults("postgresql://a@h/d?target_session_attrs=any", "x")
    assert "target_session_attrs=any" in kept
    assert shown_location("postgresql://app:s3cret@db1/tuquan") == "postgresql://app:***@db1/tuquan"


# -- the command line and the config on a PostgreSQL store ---------------------------------

TUQUAN = [sys.executable, "-m", "tuquan"]
REPO = Path(__file__).resolve().parent.parent


def tuquan_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TUQUAN, *args], input=stdin, capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_keys_users_and_watch_work_on_a_postgresql_store(pg_url: str, tmp_path: Path) -> None:
    hub_key = SigningKey.generate().public.text
    done = tuquan_cli("keys", "trust", HUB, hub_key, "--store", pg_url)
    assert done.returncode == 0, done.stderr
    done = tuquan_cli(
        "console",
        "user",
        "add",
        "op1",
        "--role",
        "operator",
        "--store",
        pg_url,
        stdin="a long enough password\n",
    )
    assert done.returncode == 0, done.stderr
    assert "op1\toperator" in tuquan_cli("console", "user", "list", "--store", pg_url).stdout
    with EventStore(pg_url) as store:
        assert [k.hub for k in store.hub_keys()] == [HUB]
        store.store_batch([received(1)])
    done = tuquan_cli("watch", "--once", "--store", pg_url, "--operator", "op1")
    assert done.returncode == 0, done.stderr
    assert HUB in done.stdout and "panic" in done.stdout
    # A server that is not there: one line, exit 2, nothing made.
    gone = "postgresql://postgres@127.0.0.1:1/none"
    done = tuquan_cli("watch", "--once", "--store", gone, "--operator", "op1")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "cannot open" in done.stderr


@pytest.mark.parametrize(
    ("store", "says"),
    [
        ("postgresql://app:s3cret@db1/tuquan", "password in it"),
        ("postgresql://db1/tuquan?sslmode=nonsense-but-parsed&bogus_option=1", "libpq"),
        ("mysql://db1/tuquan", "file path or a postgresql:// URL"),
        ("   ", "empty"),
    ],
)
def test_the_store_setting_names_its_field(store: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_receiver_config(
            {"receiver": {"commune": "c", "store": store}}, base_dir=tmp_path, env={}
        )
    text = str(refused.value)
    assert "receiver.store" in text and says in text
    assert "s3cret" not in text


def test_a_relative_store_path_starts_at_the_config_folder(tmp_path: Path) -> None:
    cfg = parse_receiver_config(
        {"receiver": {"commune": "c", "store": "data/events.sqlite3"}}, base_dir=tmp_path, env={}
    )
    assert cfg.receiver.store == str(tmp_path / "data" / "events.sqlite3")
    url = "postgresql://tuquan@db1:5432,db2:5432/tuquan?target_session_attrs=read-write"
    cfg = parse_receiver_config(
        {"receiver": {"commune": "c", "store": url}}, base_dir=tmp_path, env={}
    )
    assert cfg.receiver.store == url
