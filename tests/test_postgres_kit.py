"""The test kit's PostgreSQL: a cluster of the test's own from Debian's server package, on a
free loopback port, run as the ``postgres`` user. A committed row survives the server being
stopped at once (no checkpoint, as after a crash) and started again."""

from __future__ import annotations

import pytest

from testkit.postgres import Postgres, missing_reason

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))


def test_a_commit_survives_an_immediate_stop_and_the_cluster_is_its_own() -> None:
    import psycopg

    server = Postgres()
    try:
        server.start()
        with psycopg.connect(server.url, autocommit=True) as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
            assert conn.execute("SHOW port").fetchone() == (str(server.port),)
            conn.execute("CREATE TABLE events (id text PRIMARY KEY)")
            conn.execute("INSERT INTO events VALUES ('e1') ON CONFLICT DO NOTHING")
            conn.execute("INSERT INTO events VALUES ('e1') ON CONFLICT DO NOTHING")
        server.stop("immediate")  # like a crash: recovery replays the WAL at the next start
        server.start()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT id FROM events").fetchall() == [("e1",)]
    finally:
        server.stop("immediate")
        server.remove()
    assert not server.root.exists()
