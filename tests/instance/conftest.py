"""A throwaway PostgreSQL server for the tests of the Dagster instance on PostgreSQL.

pytest-postgresql's :class:`PostgreSQLExecutor` runs the server from the PostgreSQL binaries
(``pg_ctl`` on ``PATH``, else the newest Debian ``/usr/lib/postgresql/*/bin``; ``.ci/run``
installs Debian's ``postgresql`` when neither exists) in a fresh temporary cluster, on a free
loopback port, stopped and deleted when the module's tests end.

PostgreSQL refuses to run as root, and CI runs as root: then, as a real deployment does, the
server runs as the unprivileged ``postgres`` user Debian's package creates (``pg_ctl`` through
``runuser``), in a directory that user owns. This is also why the fixture builds the executor
itself rather than using the ``postgresql_proc`` factory: the factory puts the cluster under
pytest's temporary root, which only root may enter.

Connections from this machine's loopback need the password (``scram-sha-256``); only the Unix
socket in the cluster's directory trusts its local users, for the fixture's own setup.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pytest_postgresql.executors import PostgreSQLExecutor

#: The unprivileged user the server runs as under root (Debian's package creates it).
SERVER_USER = "postgres"
#: The database superuser and the Dagster instance's database.
ROLE = DATABASE = "dagster"
#: Seconds for pg_ctl to start or stop the server.
START_S = 60


@dataclass(frozen=True)
class Server:
    """A running PostgreSQL server: its loopback port, the instance database's URL without the
    password, and the file holding the password (what ``IBKR_PG_PASSWORD_FILE`` names)."""

    port: int
    url: str
    password_file: Path
    directory: Path

    def connect(self) -> psycopg.Connection:
        """A connection to the instance database through the loopback, with the password."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=ROLE,
            dbname=DATABASE,
            password=self.password_file.read_text().strip(),
            autocommit=True,
        )

    def admin(self) -> psycopg.Connection:
        """The superuser's connection through the Unix socket (trusted: no password)."""
        return _admin_connection(self.directory, self.port, DATABASE)


def pg_ctl() -> str:
    """``pg_ctl``: on ``PATH``, else the newest of Debian's ``/usr/lib/postgresql/N/bin``."""
    found = shutil.which("pg_ctl")
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    debian = max(candidates, key=lambda p: int(Path(p).parts[-3]), default=None)
    if found or debian:
        return str(found or debian)
    pytest.fail(
        "no pg_ctl on PATH nor under /usr/lib/postgresql/*/bin: install PostgreSQL's server "
        "binaries (Debian: apt-get install postgresql; .ci/run does)"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(directory: Path, executable: str) -> str:
    """Under root: ``directory`` given to :data:`SERVER_USER`, and a ``pg_ctl`` in it running
    ``executable`` as that user; otherwise ``executable`` itself."""
    if os.geteuid() != 0:
        return executable
    shutil.chown(directory, SERVER_USER, SERVER_USER)
    wrapper = directory / "pg_ctl"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"# {executable} as {SERVER_USER}: PostgreSQL refuses to run as root\n"
        "cd / || exit 1\n"
        f'exec runuser -u {SERVER_USER} -- {executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def _admin_connection(directory: Path, port: int, dbname: str) -> psycopg.Connection:
    """The superuser's connection to ``dbname`` through the Unix socket in ``directory``, once
    the server accepts connections (the port opens while it is still starting up)."""
    deadline = time.monotonic() + START_S
    while True:
        try:
            return psycopg.connect(
                host=str(directory), port=port, user=ROLE, dbname=dbname, autocommit=True
            )
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    """A fresh PostgreSQL server with the database ``dagster``, owned by the password-protected
    role ``dagster``; stopped and deleted after the module."""
    directory = Path(tempfile.mkdtemp(prefix="ibkr-postgres-"))
    executable = _as_server_user(directory, pg_ctl())
    (directory / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = _free_port()
    server = PostgreSQLExecutor(
        executable=executable,
        host="127.0.0.1",
        port=port,
        datadir=str(directory / "data"),
        unixsocketdir=str(directory),
        logfile=str(directory / "server.log"),
        startparams="-w",
        dbname=DATABASE,
        user=ROLE,
        timeout=START_S,
        postgres_options=f"-c hba_file={directory / 'pg_hba.conf'}",
    )
    password_file = directory / "pg_password"
    password_file.write_text(f"pw-{os.urandom(12).hex()}\n")
    try:
        server.start()
        with _admin_connection(directory, port, "postgres") as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}")
            admin.execute(
                psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    psycopg.sql.Identifier(ROLE),
                    psycopg.sql.Literal(password_file.read_text().strip()),
                )
            )
        yield Server(
            port=port,
            url=f"postgresql://{ROLE}@127.0.0.1:{port}/{DATABASE}",
            password_file=password_file,
            directory=directory,
        )
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
