"""Where alerts go (``IBKR_ALERT_``); the fields the alerts resource also shows are declared once,
in :class:`AlertFields`. Its secrets (``SLACK_WEBHOOK_URL``, ``SLACK_BOT_TOKEN``,
``IBKR_SMTP_PASSWORD``) are read by :mod:`ibkr_assets.settings.secret` at each alert sent."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Channel = Literal["log", "slack", "email"]


class AlertFields(BaseModel):
    """Where alerts go, as the alerts resource shows them in its configuration."""

    channel: Channel = Field("log", description="log, slack or email")
    log_path: str | None = Field(
        None, description="JSON-lines file of every alert; unset = <data root>/alerts/alerts.jsonl"
    )
    slack_route: Literal["webhook", "bot"] = Field(
        "webhook",
        description="with channel slack: webhook (SLACK_WEBHOOK_URL) or bot (SLACK_BOT_TOKEN)",
    )
    slack_channel: str = Field(
        "#trading-alerts", description="Slack channel of the bot-token route"
    )
    smtp_host: str = Field("localhost", description="SMTP server")
    smtp_port: int = Field(25, description="SMTP port (587 for STARTTLS submission)")
    smtp_user: str | None = Field(
        None, description="SMTP login user (password from IBKR_SMTP_PASSWORD); unset = no login"
    )
    smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS")
    email_from: str = Field("ibkr-agent@localhost", description="sender of alert emails")
    email_to: list[str] = Field(
        default_factory=list, description='recipients of alert emails, as JSON (["a@b.c"])'
    )
    order_poll_seconds: float = Field(
        300.0, ge=0, description="seconds between asking IB about a session's open orders"
    )


class AlertSettings(AlertFields, BaseSettings):
    """Alert settings from ``IBKR_ALERT_*``."""

    model_config = SettingsConfigDict(env_prefix="IBKR_ALERT_", extra="ignore")

    sensor_interval_seconds: int = Field(
        60, ge=1, description="least seconds between two evaluations of an alert sensor"
    )
