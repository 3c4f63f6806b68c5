"""What the MCP tool server may do (``IBKR_MCP_``): trading on or off, its own caps and rate
limits in the order guard, and TLS off loopback. The bearer token needed off loopback is the
secret ``IBKR_MCP_TOKEN`` (:data:`~ibkr_assets.settings.secret.MCP_TOKEN`), read at each
request the server authenticates."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibkr_assets.broker.settings import CommaList, OrderLimits


class MCPSettings(BaseSettings):
    """What the tool server may do. Trading is off unless ``IBKR_MCP_TRADING=on``.

    The broker connection itself is the ``broker`` section's (backend, host, port, clientId,
    account), so the server and the pipeline point at the same account; these settings cover
    what only the tool server has: whether trading tools exist at all, its own per-order caps and
    rate limits in the order guard, and the TLS files to serve HTTPS with."""

    model_config = SettingsConfigDict(env_prefix="IBKR_MCP_", extra="ignore")

    trading: bool = Field(False, description="on = register the tools that send orders")
    tls_cert: Path | None = Field(None, description="TLS certificate (PEM) to serve HTTPS")
    tls_key: Path | None = Field(None, description="the TLS certificate's private key (PEM)")
    data_dir: Path = Field(
        Path("data"),
        validation_alias=AliasChoices("IBKR_DATA_DIR", "data_dir"),
        description="the pipeline's data root (reports, decision_log, features)",
    )
    # The MCP server's own caps and rate limits in the order guard (ibkr_assets.broker.guard);
    # account-wide switches (IBKR_READONLY, IBKR_KILL_SWITCH, IBKR_ALLOW_SYMBOLS, price and
    # quote limits) are the broker settings', shared with the pipeline.
    max_quantity: float = Field(
        1_000, gt=0, description="max shares/contracts per order (currency: by value alone)"
    )
    max_notional: float = Field(50_000, gt=0, description="max order value, account currency")
    max_nlv_share: float = Field(
        0.10, gt=0, le=1, description="max order value as a share of net liquidation"
    )
    orders_per_minute: int = Field(5, ge=1, description="orders placed/modified per minute")
    orders_per_day: int = Field(50, ge=1, description="orders placed/modified per UTC day")
    max_daily_notional: float = Field(
        250_000, gt=0, description="order value placed/modified per UTC day, account currency"
    )
    allow_live: bool = Field(False, description="allow orders on a live (non-paper) account")
    token_ttl_s: float = Field(120.0, gt=0, description="confirmation-token lifetime, seconds")
    agent_cli: str = Field("ibkr-agent", description="the pipeline CLI run_daily_pipeline starts")
    client_id: int | None = Field(
        None,
        ge=0,
        description="IB clientId of the MCP server; default IBKR_CLIENT_ID + 1, so the server "
        "and a pipeline run on the default settings never share one (IB answers 326)",
    )
    pipeline_client_id: int | None = Field(
        None, ge=0, description="IB clientId of a launched run; default the server's + 1000"
    )
    pipeline_interval_min: float = Field(
        10.0, ge=0, description="minutes between two launches of run_daily_pipeline"
    )
    warehouse_wait_s: float = Field(
        5.0, ge=0, description="how long feature_row waits for the warehouse lock, seconds"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="server log level (tokens are never logged)"
    )
    user: str = Field("mcp-client", description="who is recorded in the audit log")
    allowed_hosts: CommaList = Field(
        default_factory=list,
        description="extra Host header values accepted, comma-separated (host:port or host:*)",
    )
    allowed_origins: CommaList = Field(
        default_factory=list, description="extra Origin header values accepted, comma-separated"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("HTTPS needs both IBKR_MCP_TLS_CERT and IBKR_MCP_TLS_KEY (PEM files)")
        for name, path in (
            ("IBKR_MCP_TLS_CERT", self.tls_cert),
            ("IBKR_MCP_TLS_KEY", self.tls_key),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: {path} is not a readable file")
        return self

    @property
    def tls(self) -> bool:
        """True when the server serves HTTPS (certificate and key set)."""
        return self.tls_cert is not None

    def order_limits(self) -> OrderLimits:
        """The MCP server's caps as the order guard's limits of principal ``mcp``."""
        caps = self.model_dump(include=set(OrderLimits.model_fields))
        return OrderLimits(principal="mcp", setting_prefix="IBKR_MCP_", **caps)

    @property
    def audit_path(self) -> Path:
        """Where each order placed through MCP is recorded, next to the pipeline's journal."""
        return self.data_dir / "decision_log" / "mcp_orders.jsonl"
