"""Where the Dagster instance keeps its runs (``IBKR_PG_``): SQLite under the Dagster home unless
these name a PostgreSQL server (:mod:`ibkr_assets.dagster_instance` checks them and builds the
URL; the password is the secret ``IBKR_PG_PASSWORD``, never one of these)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InstanceSettings(BaseSettings):
    """The PostgreSQL server of the Dagster instance, as one URL or as its parts; every process
    that opens the instance (webserver, daemon, code location, ``ibkr-agent``) needs the same."""

    model_config = SettingsConfigDict(env_prefix="IBKR_PG_", extra="ignore")

    url: str | None = Field(
        None,
        description="the Dagster instance on PostgreSQL: postgresql://USER@HOST:PORT/DATABASE "
        "(no password: IBKR_PG_PASSWORD); unset with IBKR_PG_HOST unset = SQLite under "
        "DAGSTER_HOME",
    )
    host: str | None = Field(
        None, description="or the server by parts: its host (with IBKR_PG_USER and IBKR_PG_DB)"
    )
    port: str | None = Field(None, description="the server's port; unset = 5432")
    user: str | None = Field(None, description="the database user of the instance")
    db: str | None = Field(None, description="the database holding the instance's tables")
