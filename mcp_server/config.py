"""Settings of the MCP server: one pydantic-settings class read from ``IBKR_MCP_*`` variables.

The broker connection itself is configured by the ``IBKR_*`` variables of
:class:`ibkr_assets.broker.settings.BrokerSettings` (backend, host, port, clientId, account), so the
server and the pipeline always point at the same account. These settings cover what only the tool
server has: whether trading tools exist at all, the per-order caps and rate limits, the kill switch
and the bearer token needed to listen on anything but loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class MCPSettings(BaseSettings):
    """What the tool server may do. Trading is off unless ``IBKR_MCP_TRADING=on``."""

    model_config = SettingsConfigDict(env_prefix="IBKR_MCP_", extra="ignore")

    trading: bool = Field(False, description="on = register the tools that send orders")
    token: SecretStr | None = Field(None, description="bearer token; required off loopback")
    data_dir: Path = Field(
        Path("data"),
        validation_alias=AliasChoices("IBKR_DATA_DIR", "data_dir"),
        description="the pipeline's data root (reports, decision_log, features)",
    )
    max_quantity: float = Field(1_000, gt=0, description="max shares/contracts per order")
    max_notional: float = Field(50_000, gt=0, description="max order value, account currency")
    max_nlv_share: float = Field(
        0.10, gt=0, le=1, description="max order value as a share of net liquidation"
    )
    allow_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated allow-list; empty = any symbol"
    )
    orders_per_minute: int = Field(5, ge=1, description="orders placed/modified per minute")
    orders_per_day: int = Field(50, ge=1, description="orders placed/modified per UTC day")
    kill_switch: bool = Field(False, description="on = every trading tool refuses")
    kill_switch_file: Path | None = Field(
        None, description="if this file exists every trading tool refuses (default <data>/KILL)"
    )
    allow_live: bool = Field(False, description="allow orders on a live (non-paper) account")
    token_ttl_s: float = Field(120.0, gt=0, description="confirmation-token lifetime, seconds")
    agent_cli: str = Field("ibkr-agent", description="the pipeline CLI run_daily_pipeline starts")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="server log level (tokens are never logged)"
    )
    user: str = Field("mcp-client", description="who is recorded in the audit log")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="extra Host header values accepted (host:port or host:*)"
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="extra Origin header values accepted"
    )

    @field_validator("allow_symbols", "allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allow_symbols", mode="after")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [v.upper() for v in value]

    @property
    def kill_file(self) -> Path:
        """The kill-switch file: its existence stops every trading tool."""
        return self.kill_switch_file or self.data_dir / "KILL"

    @property
    def audit_path(self) -> Path:
        """Where each order placed through MCP is recorded, next to the pipeline's journal."""
        return self.data_dir / "decision_log" / "mcp_orders.jsonl"
