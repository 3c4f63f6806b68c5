"""Where the pipeline's per-run metrics are pushed (``IBKR_PUSHGATEWAY_URL``;
:mod:`ibkr_assets.metrics`).
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MetricsSettings(BaseSettings):
    """The Pushgateway the pipeline's run metrics go to, if any."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    pushgateway_url: str | None = Field(
        None,
        description="Prometheus Pushgateway each finished run's metrics are pushed to "
        "(http://host:9091); unset = none (the textfile under <data root>/metrics is always "
        "written)",
    )

    @field_validator("pushgateway_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"IBKR_PUSHGATEWAY_URL must be an http:// or https:// URL, got {value!r}"
            )
        return value.rstrip("/")
