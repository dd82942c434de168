"""A PostgreSQL cluster of the test's own: Debian's server binaries, a data directory in a
temporary folder, a free loopback port, run as the ``postgres`` user when the tests run as root.

Nothing is installed or changed on the machine's own clusters: ``initdb`` makes a fresh one
(``trust`` authentication, loopback only, the socket in the data folder), ``pg_ctl`` starts and
stops it. ``missing_reason()`` says why it cannot run here (no server package, no postgres user).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from testkit.broker import HOST, free_port

DEBIAN_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"


def server_bin() -> Path | None:
    """The newest installed server's ``bin`` folder (``/usr/lib/postgresql/<major>/bin``)."""
    if not DEBIAN_ROOT.is_dir():
        return None
    majors = sorted(
        (p for p in DEBIAN_ROOT.iterdir() if (p / "bin" / "initdb").exists()),
        key=lambda p: int(p.name) if p.name.isdigit() else 0,
    )
    return majors[-1] / "bin" if majors else None


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if server_bin() is None:
        return "PostgreSQL's server is not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"running as root without a {SERVICE_USER!r} user to run the server as"
    return None


class Postgres:
    """One cluster, started with ``start()``, in a folder of its own under the system's
    temporary folder (the tests' ``tmp_path`` is private to root, where the ``postgres`` user
    cannot reach); ``remove()`` deletes it."""

    def __init__(self, *, port: int | None = None) -> None:
        found = server_bin()
        assert found is not None, missing_reason()
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix="tuquan-pg-"))
        self.data = self.root / "data"
        self.port = port or free_port()
        self.host = HOST

    @property
    def url(self) -> str:
        """A libpq URL for the ``postgres`` database as the superuser."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{SERVICE_USER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database (C collation, as docs/province.md asks); its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8 LOCALE "C.UTF-8"'
            )
        return self.url_for(name)

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement as the superuser; its rows (none for a command)."""
        import psycopg

        with psycopg.connect(self.url_for(database), autocommit=True) as conn:
            cur = conn.execute(statement)
            return list(cur.fetchall()) if cur.description else []

    def _run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()}")
        return done

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVICE_USER, SERVICE_USER)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SERVICE_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self.init()
        options = (
            f"-p {self.port} -c listen_addresses={self.host} -k {self.data} -c fsync=on "
            "-c synchronous_commit=on"
        )
        done = self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            check=False,
        )

    def kill(self) -> None:
        """SIGKILL the server's postmaster, as a machine that died would leave it; its
        backends exit when they notice (a few hundred milliseconds)."""
        import signal

        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return

    def promote(self) -> None:
        """Make this standby a primary (``pg_ctl promote``, waiting until it is)."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote"])

    def make_synchronous(self, *standbys: str) -> None:
        """Commits on this primary wait for the first of ``standbys`` (application names)."""
        names = ", ".join(f'"{n}"' for n in standbys)
        value = f"FIRST 1 ({names})" if standbys else ""
        self.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{value}'")
        self.sql("SELECT pg_reload_conf()")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def streaming_standby(primary: Postgres, name: str = "standby1") -> Postgres:
    """A standby of ``primary`` (``pg_basebackup -R``), streaming as application ``name``;
    not started."""
    standby = Postgres()
    if os.geteuid() == 0:
        shutil.chown(standby.root, SERVICE_USER, SERVICE_USER)
    source = f"host={primary.host} port={primary.port} user={SERVICE_USER} application_name={name}"
    standby._run(
        [
            str(standby.bin / "pg_basebackup"),
            "-d",
            source,
            "-D",
            str(standby.data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",  # a spread checkpoint would take minutes of an idle server
            "--no-sync",
        ]
    )
    return standby


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A started cluster for the ``with`` block, stopped and removed after it."""
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.stop("immediate")
        server.remove()
