"""The Dagster instance's storage, chosen by the environment: SQLite under the Dagster home (the
default, embedded) or a PostgreSQL server (``dagster-postgres``).

``dagster.yaml`` names :class:`Instance` as its ``instance_class`` and configures no
``storage:``; Dagster then asks that class for the default storages of the home it opens
(:meth:`Instance.config_defaults`), in every process that opens the instance (``ibkr-agent``,
the webserver, the daemon, the code location, each run's worker). So one ``dagster.yaml``, copied
unchanged into any home, serves both:

* nothing set: Dagster's own SQLite storages under the home (runs, event logs, schedules);
* ``IBKR_PG_URL=postgresql://USER@HOST:PORT/DATABASE``, or its parts ``IBKR_PG_HOST`` with
  ``IBKR_PG_USER``, ``IBKR_PG_DB`` and ``IBKR_PG_PORT`` (default 5432; the form
  ``ops/docker-compose.yml`` gives): runs, event logs, schedules and sensor ticks on that server
  (:class:`PostgresStorage`); Dagster creates its tables there on first use. Compute logs and
  local artifacts stay under the home.

The password is never in the URL (refused there), ``dagster.yaml`` or an instance reference a
run is handed: it is the secret ``IBKR_PG_PASSWORD`` (its variable, ``IBKR_PG_PASSWORD_FILE`` or
Vault: :mod:`ibkr_assets.settings.secret`), read again for each new connection —
dagster-postgres opens one per storage operation (SQLAlchemy's ``NullPool``) — so a rotated
password takes effect without a restart. Unset, libpq finds one itself (``~/.pgpass``,
``PGPASSFILE``) or the server trusts the client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import dagster as dg
import yaml

# Dagster's extension points for a custom instance class (dagster-cloud's agent uses the same):
# the default storages of a home, and a configurable class's serialised reference.
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.auth import PgTokenProvider
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ibkr_assets.errors import ConfigurationError
from ibkr_assets.settings import load_settings
from ibkr_assets.settings.secret import PG_PASSWORD

#: The server as one URL, without its password.
URL_VARIABLE = "IBKR_PG_URL"
#: The server as parts (``ops/docker-compose.yml``): host, port, user, database.
HOST_VARIABLE, PORT_VARIABLE, USER_VARIABLE, DB_VARIABLE = (
    "IBKR_PG_HOST",
    "IBKR_PG_PORT",
    "IBKR_PG_USER",
    "IBKR_PG_DB",
)
#: SQLAlchemy's dialect and driver: dagster-postgres's SQL is psycopg2's (SQLAlchemy 2.1 reads a
#: plain ``postgresql://`` as psycopg 3, on which Dagster's ``NOTIFY run_events, %s`` fails).
DRIVER = "postgresql+psycopg2"
#: PostgreSQL's port when ``IBKR_PG_PORT`` is unset.
DEFAULT_PORT = 5432
_URL_FORM = "postgresql://USER@HOST:PORT/DATABASE"


def _variable(name: str) -> str | None:
    """The variable's value (``IBKR_PG_HOST``: the instance section's ``host``), None when unset
    or blank."""
    section = load_settings().instance
    value = getattr(section, name.removeprefix("IBKR_PG_").lower()) or ""
    return value.strip() or None


def postgres_url() -> URL | None:
    """The PostgreSQL server the environment names (see the module docstring), as a URL without
    a password; None when it names none (the instance is on SQLite). Raises
    :class:`~ibkr_assets.errors.ConfigurationError` naming the variable at fault, never
    echoing ``IBKR_PG_URL`` (it might hold a password)."""
    text = _variable(URL_VARIABLE)
    parts = {
        name: value
        for name in (HOST_VARIABLE, PORT_VARIABLE, USER_VARIABLE, DB_VARIABLE)
        if (value := _variable(name)) is not None
    }
    if text is not None:
        if parts:
            raise ConfigurationError(
                f"{URL_VARIABLE} and {', '.join(parts)} are both set: name the PostgreSQL server "
                f"one way, {URL_VARIABLE}={_URL_FORM} or {HOST_VARIABLE} and its parts"
            )
        return _checked_url(text)
    if not parts:
        return None
    missing = [v for v in (HOST_VARIABLE, USER_VARIABLE, DB_VARIABLE) if v not in parts]
    if missing:
        raise ConfigurationError(
            f"{', '.join(parts)} set but not {', '.join(missing)}: a PostgreSQL instance needs "
            f"{HOST_VARIABLE}, {USER_VARIABLE} and {DB_VARIABLE} ({PORT_VARIABLE} defaults to "
            f"{DEFAULT_PORT}); unset them all for the SQLite instance under DAGSTER_HOME"
        )
    port = parts.get(PORT_VARIABLE, str(DEFAULT_PORT))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"{PORT_VARIABLE}={port!r} is not a TCP port (1-65535)")
    return URL.create(
        DRIVER,
        username=parts[USER_VARIABLE],
        host=parts[HOST_VARIABLE],
        port=int(port),
        database=parts[DB_VARIABLE],
    )


def _checked_url(text: str) -> URL:
    """``IBKR_PG_URL`` parsed: a ``postgresql`` URL with a user, host and database and no
    password."""
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigurationError(f"{URL_VARIABLE} is not a URL; write {_URL_FORM}") from None
    if url.get_backend_name() != "postgresql":
        raise ConfigurationError(
            f"{URL_VARIABLE} names a {url.get_backend_name()!r} database; write {_URL_FORM}"
        )
    if url.drivername not in ("postgresql", DRIVER):
        raise ConfigurationError(
            f"{URL_VARIABLE} names the driver {url.get_driver_name()!r}; dagster-postgres needs "
            f"psycopg2: write {_URL_FORM}"
        )
    if url.password is not None:
        raise ConfigurationError(
            f"{URL_VARIABLE} holds a password: remove it from the URL and set "
            f"{PG_PASSWORD.variable} or {PG_PASSWORD.file_variable} (or store it in Vault)"
        )
    missing = [part for part in ("username", "host", "database") if not getattr(url, part)]
    if missing:
        raise ConfigurationError(f"{URL_VARIABLE} has no {' or '.join(missing)}; write {_URL_FORM}")
    return url.set(drivername=DRIVER)


class SecretPassword(PgTokenProvider):
    """The secret ``IBKR_PG_PASSWORD`` as each new connection's password, read at each one
    (dagster-postgres hands it to libpq through SQLAlchemy's ``do_connect`` event); never
    cached."""

    def get_token(self) -> str:
        """The password now."""
        return PG_PASSWORD.required().get_secret_value()

    def _fetch_token(self) -> tuple[str, float]:
        """The password and the time it was read (s since the epoch)."""
        return self.get_token(), time.time()


class PostgresStorage(DagsterPostgresStorage):
    """dagster-postgres's runs, event-log and schedule storages on the server
    :func:`postgres_url` names, the password from :class:`SecretPassword` when the secret is
    set. Its serialised configuration is empty: each process reads the server from its own
    environment."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        """Nothing to configure in ``dagster.yaml``: the environment says it all."""
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PostgresStorage:
        """The storages on the server this process's environment names."""
        url = postgres_url()
        if url is None:
            raise ConfigurationError(
                f"this Dagster instance is on PostgreSQL but neither {URL_VARIABLE} nor "
                f"{HOST_VARIABLE} is set in this process: give every Dagster process "
                "(webserver, daemon, code location, ibkr-agent) the same environment"
            )
        password = SecretPassword() if PG_PASSWORD.read() is not None else None
        return cls(
            url.render_as_string(hide_password=False), inst_data=inst_data, token_provider=password
        )


class Instance(dg.DagsterInstance):
    """The Dagster instance of ``dagster.yaml``: Dagster's own, its default storage chosen by
    the environment (the module docstring)."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """No settings of its own in ``dagster.yaml``."""
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        """Dagster's defaults for the home ``base_dir``, the storages on PostgreSQL when the
        environment names a server (wrapped as Dagster wraps a ``storage: custom:`` one)."""
        defaults = dict(InstanceRef.config_defaults(base_dir))
        if postgres_url() is None:
            return defaults
        storage = ConfigurableClassData(__name__, PostgresStorage.__name__, "{}\n")
        wrapped = yaml.dump(
            {
                "module_name": storage.module_name,
                "class_name": storage.class_name,
                "config_yaml": storage.config_yaml,
            },
            default_flow_style=False,
        )
        legacy = "dagster._core.storage.legacy_storage"
        defaults.update(
            storage=storage,
            run_storage=ConfigurableClassData(legacy, "LegacyRunStorage", wrapped),
            event_log_storage=ConfigurableClassData(legacy, "LegacyEventLogStorage", wrapped),
            schedule_storage=ConfigurableClassData(legacy, "LegacyScheduleStorage", wrapped),
        )
        return defaults
