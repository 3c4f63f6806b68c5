"""Which storage the project's ``dagster.yaml`` gives an instance, by the environment, and the
PostgreSQL password read at each connection (rotation without reopening the instance)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster_postgres.utils import DagsterPostgresException

from ibkr_assets.dagster_instance import postgres_url
from ibkr_assets.errors import ConfigurationError
from tests.instance.conftest import ROLE, Server

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]


def _home(tmp_path: Path) -> Path:
    home = tmp_path / ".dagster"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


def test_nothing_set_is_the_embedded_sqlite_instance(tmp_path: Path) -> None:
    assert postgres_url() is None
    home = _home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert (home / "history" / "runs.db").is_file()


def test_the_server_by_url_or_by_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBKR_PG_URL", "postgresql://dagster@db.internal:6543/instance")
    url = postgres_url()
    assert url is not None
    assert url.render_as_string() == "postgresql+psycopg2://dagster@db.internal:6543/instance"
    monkeypatch.delenv("IBKR_PG_URL")
    monkeypatch.setenv("IBKR_PG_HOST", "postgres")
    monkeypatch.setenv("IBKR_PG_USER", "dagster")
    monkeypatch.setenv("IBKR_PG_DB", "dagster")
    url = postgres_url()
    assert url is not None
    assert url.render_as_string() == "postgresql+psycopg2://dagster@postgres:5432/dagster"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"IBKR_PG_URL": "postgresql://dagster:hunter2-secret@db/instance"},
            r"IBKR_PG_URL holds a password: remove it .* IBKR_PG_PASSWORD_FILE",
        ),
        (
            {"IBKR_PG_URL": "postgresql://dagster@db/x", "IBKR_PG_HOST": "db"},
            r"IBKR_PG_URL and IBKR_PG_HOST are both set",
        ),
        ({"IBKR_PG_URL": "mysql://dagster@db/x"}, r"names a 'mysql' database"),
        ({"IBKR_PG_URL": "postgresql+psycopg://dagster@db/x"}, r"needs psycopg2"),
        ({"IBKR_PG_URL": "postgresql://db/x"}, r"has no username"),
        ({"IBKR_PG_URL": "not a url"}, r"IBKR_PG_URL is not a URL"),
        ({"IBKR_PG_HOST": "db"}, r"not IBKR_PG_USER, IBKR_PG_DB"),
        (
            {"IBKR_PG_HOST": "db", "IBKR_PG_USER": "u", "IBKR_PG_DB": "d", "IBKR_PG_PORT": "x"},
            r"IBKR_PG_PORT='x' is not a TCP port",
        ),
    ],
)
def test_a_malformed_server_is_named_never_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message) as raised:
        postgres_url()
    assert "hunter2" not in str(raised.value)
    # the instance refuses to open, with the same message
    with pytest.raises(ConfigurationError, match=message):
        dg.DagsterInstance.from_config(str(_home(tmp_path)))


def test_a_rotated_password_takes_effect_without_reopening_the_instance(
    postgres: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBKR_PG_URL", postgres.url)
    monkeypatch.setenv("IBKR_PG_PASSWORD_FILE", str(postgres.password_file))
    original = postgres.password_file.read_text()
    with dg.DagsterInstance.from_config(str(_home(tmp_path))) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_runs() == []
        try:
            with postgres.admin() as conn:  # the operator rotates: server first, then file
                conn.execute(
                    psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        psycopg.sql.Identifier(ROLE), psycopg.sql.Literal("rotated-password-2")
                    )
                )
            with pytest.raises(DagsterPostgresException) as refused:
                instance.get_runs()  # the file still holds the old one
            assert "password authentication failed" in str(refused.value.__cause__)
            postgres.password_file.write_text("rotated-password-2\n")
            assert instance.get_runs() == []  # the same instance, the new password
        finally:
            postgres.password_file.write_text(original)
            with postgres.admin() as conn:
                conn.execute(
                    psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        psycopg.sql.Identifier(ROLE), psycopg.sql.Literal(original.strip())
                    )
                )
