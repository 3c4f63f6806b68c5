"""Who started an in-process run, where its Dagster instance lives and how long its runs and
staging payloads are kept; how much paper evidence a live account needs (``IBKR_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Who may start a run ``ibkr-agent run`` executes in-process (``IBKR_RUN_TRIGGER``).
IN_PROCESS_TRIGGERS = ("cli", "mcp")


class PromotionSettings(BaseSettings):
    """How much paper evidence a live account needs."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    promotion_sessions: int = Field(
        10, ge=1, description="green paper sessions needed before a live account is traded"
    )


class RunSettings(BaseSettings):
    """Who started an in-process run, where its Dagster instance lives, how long runs and staging
    payloads are kept."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    run_trigger: str = Field(
        "cli", description="who started `ibkr-agent run`: cli, or mcp (the MCP server's launcher)"
    )
    dagster_home: Path | None = Field(
        None,
        validation_alias=AliasChoices("DAGSTER_HOME", "dagster_home"),
        description="Dagster instance of `ibkr-agent run`, `demo` and `promote`; unset = "
        "<data root>/.dagster",
    )

    retention_days: int = Field(
        30,
        ge=0,
        description="days a finished Dagster run and its event log are kept (ibkr_assets/"
        "housekeeping.py: the latest materialisation of each asset and the runs of the last "
        "IBKR_PROMOTION_SESSIONS sessions are kept whatever their age); 0 = forever",
    )
    staging_retention_days: int = Field(
        14,
        ge=0,
        description="days the raw payloads under <data root>/staging are kept (the newest "
        "session's always); 0 = forever",
    )

    @field_validator("run_trigger")
    @classmethod
    def _trigger(cls, value: str) -> str:
        if value not in IN_PROCESS_TRIGGERS:
            raise ValueError(f"expected one of {', '.join(IN_PROCESS_TRIGGERS)}")
        return value
