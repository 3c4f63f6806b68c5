"""How to reach IB and what may be sent there, read from ``IBKR_*`` environment variables.

The pipeline's IB resource and the MCP server both build their broker from these, so one set of
environment variables points every process at the same account and the same order guard
(:mod:`ibkr_assets.broker.guard`). Account-wide switches (read-only, live opt-in, kill switch,
allow-list, price-distance and quote-age limits) are fields of :class:`BrokerSettings`; the caps and
rate limits of each sender (the pipeline, the MCP server) are an :class:`OrderLimits`.

These classes are sections of the one settings tree (:mod:`ibkr_assets.settings`), which reads
them once per process; the broker core cannot import the tree, so they are declared here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BackendName = Literal["sim", "tws", "webapi"]

_INSTANT = TypeAdapter(datetime)


def _path_text(value: object) -> object:
    """A path given as a ``Path`` kept as its text (Dagster config holds strings, not paths)."""
    return str(value) if isinstance(value, Path) else value


def _iso_instant(value: object) -> object:
    """An instant (a ``datetime``, or any text pydantic reads as one) as ISO-8601 text."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = _INSTANT.validate_python(value)  # refuses text that is no instant
    return value.isoformat() if isinstance(value, datetime) else value


def comma_list(value: object) -> object:
    """A list as written in the environment: comma-separated (``AAPL,MSFT``)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


#: A list of text from the environment, comma-separated.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(comma_list)]


class BrokerConnection(BaseModel):
    """Where the broker is and which world it opens: the fields the pipeline's IB resource shows
    in Dagster's configuration, declared once for :class:`BrokerSettings` and the resource.
    Every type is one Dagster config accepts (text, numbers, booleans)."""

    backend: BackendName = Field(
        "sim",
        description="sim (the in-process simulator), tws (ib_async against TWS, IB Gateway or "
        "the simulated gateway) or webapi (the Client Portal Web API at IBKR_WEBAPI_URL)",
    )
    host: str = Field("127.0.0.1", description="TWS / IB Gateway host")
    port: int = Field(4002, description="7497 TWS paper, 7496 TWS live, 4002 Gateway paper")
    client_id: int = Field(1, description="API clientId; unique per connection")
    account: str | None = Field(
        None, description="account to trade; unset = the connection's primary account"
    )
    readonly: bool = Field(False, description="connect read-only: no order can be sent")
    allow_live: bool = Field(False, description="explicit opt-in to use a non-paper account")
    data_dir: Annotated[str, BeforeValidator(_path_text)] = Field(
        "data",
        description="data root: staging, features, reports, decision journal, DuckDB warehouse, "
        "paper account",
    )
    sim_seed: int = Field(7, description="seed of the simulated market")
    sim_symbols: int = Field(
        700,
        ge=1,
        le=5000,  # ibkr_sim.universe.MAX_STOCKS: the core cannot import it, a test keeps them equal
        description="number of simulated US stocks",
    )
    sim_edge: Literal["default", "none"] = Field(
        "default",
        description="how the simulated market's observables predict returns: default (realistic "
        "daily ICs of 0.01-0.03 for news tone, quality and momentum) or none (no edge at all)",
    )
    sim_now: Annotated[str | None, BeforeValidator(_iso_instant)] = Field(
        None, description="pin the simulator's clock (ISO-8601 time, UTC when no offset)"
    )
    # -- the webapi backend: the Client Portal gateway (or ibkr-sim webapi) -----------------
    webapi_url: str = Field(
        "https://localhost:5000/v1/api",
        description="base URL of the Client Portal Web API gateway (webapi backend)",
    )
    webapi_verify: bool = Field(
        True,
        description="verify the gateway's TLS certificate; false only on a trusted machine "
        "(IBKR's gateway ships a self-signed one: prefer IBKR_WEBAPI_CA_FILE)",
    )
    webapi_ca_file: Annotated[str | None, BeforeValidator(_path_text)] = Field(
        None,
        description="certificate file (PEM) to trust for the gateway, e.g. "
        "<data root>/sim/webapi/cert.pem of ibkr-sim webapi",
    )

    @property
    def sim_clock(self) -> datetime | None:
        """``sim_now`` as an instant, or None for the wall clock."""
        return datetime.fromisoformat(self.sim_now) if self.sim_now else None


class BrokerSettings(BrokerConnection, BaseSettings):
    """Connection settings. Paper trading is the default; a live account needs ``allow_live``."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    timeout: float = Field(20.0, description="seconds to wait for an answer to an IB request")
    # Pacing of the tws backend, kept under IB's documented limits (50 messages/s per client,
    # 100 market-data lines, 50 simultaneous historical requests, historical-data pacing).
    pacing: bool = Field(
        True,
        description="pace requests client-side under IB's limits; false only against a gateway "
        "that does not enforce them (ibkr-sim gateway --pacing off)",
    )
    max_msg_rate: int = Field(
        50, ge=0, description="API messages per second, IB's rate (error 100 beyond); 0 = off"
    )
    msg_burst: int = Field(
        40,
        ge=1,
        description="messages sent at once after a pause (IB allows 50; the rest absorbs network "
        "jitter)",
    )
    max_market_data_lines: int = Field(90, ge=1, description="simultaneous snapshots (IB: 100)")
    max_historical_requests: int = Field(40, ge=1, description="simultaneous (IB: 50)")
    connect_attempts: int = Field(
        5, ge=1, description="connection attempts (with backoff) before a run fails at start"
    )
    reconnect_seconds: float = Field(
        60.0,
        gt=0,
        description="after a dropped connection, seconds of reconnecting (with backoff) before "
        "every request fails; with the start's attempts a gateway that stays down fails a run "
        "in under 2 minutes",
    )
    market_data_type: Literal["live", "frozen", "delayed", "delayed-frozen"] = Field(
        "live",
        description="market data asked for first (IB reqMarketDataType); live and frozen fall "
        "back to delayed and delayed-frozen where IB has no subscription (10089, 354)",
    )
    # -- the order guard: account-wide switches, for every sender --------------------------
    kill_switch: bool = Field(
        False,
        validation_alias=AliasChoices("IBKR_KILL_SWITCH", "IBKR_MCP_KILL_SWITCH", "kill_switch"),
        description="on = no new or modified order is sent (cancels still go through)",
    )
    kill_switch_file: Path | None = Field(
        None,
        validation_alias=AliasChoices(
            "IBKR_KILL_SWITCH_FILE", "IBKR_MCP_KILL_SWITCH_FILE", "kill_switch_file"
        ),
        description="while this file exists the kill switch is on (default <data root>/KILL)",
    )
    allow_symbols: CommaList = Field(
        default_factory=list,
        validation_alias=AliasChoices(
            "IBKR_ALLOW_SYMBOLS", "IBKR_MCP_ALLOW_SYMBOLS", "allow_symbols"
        ),
        description="comma-separated allow-list of resolved contracts: SYMBOL (its stock/ETF) or "
        "SYMBOL:SECTYPE (e.g. AAPL:OPT for AAPL's options); empty = any",
    )
    max_price_distance: float = Field(
        0.20,
        gt=0,
        description="a limit or stop price further than this fraction from the quote's midpoint "
        "is refused (0.20 = 20%)",
    )
    max_quote_age_s: float = Field(
        60.0, gt=0, description="a marketable order needs a quote at most this many seconds old"
    )
    require_live_quotes: bool = Field(
        False, description="a marketable order needs live (not delayed) market data"
    )
    max_delayed_quote_age_s: float = Field(
        1260.0,
        gt=0,
        description="a marketable order on delayed data (IB's 15-20 minutes: a paper account "
        "without a subscription) needs a quote at most this many seconds old",
    )

    @field_validator("allow_symbols", mode="after")
    @classmethod
    def _upper_symbols(cls, value: list[str]) -> list[str]:
        return [v.upper() for v in value]

    @property
    def kill_file(self) -> Path:
        """The kill-switch file: while it exists no new or modified order is sent."""
        return self.kill_switch_file or Path(self.data_dir) / "KILL"


class OrderLimits(BaseModel):
    """Caps and rate limits of one sender (``principal``) of orders to an account.

    Each process that can send orders states who it is and its limits; the order guard counts
    every order sent per account, principal and UTC day in a file under the data root, so the
    limits hold across restarts and across processes. Money is in the account's base currency.
    """

    model_config = ConfigDict(frozen=True)

    principal: str = Field(description="who sends: 'pipeline', 'mcp', ...; counters are per name")
    max_quantity: float = Field(
        gt=0, description="shares / contracts per order (a currency order: by value alone)"
    )
    max_notional: float = Field(gt=0, description="order value at the market, per order")
    max_nlv_share: float = Field(gt=0, le=1, description="order value / net liquidation")
    orders_per_minute: int = Field(ge=1, description="orders placed or modified per 60 s")
    orders_per_day: int = Field(ge=1, description="orders placed or modified per UTC day")
    max_daily_notional: float = Field(gt=0, description="order value sent per UTC day")
    allow_live: bool = Field(
        False, description="this sender may trade a live account (besides IBKR_ALLOW_LIVE)"
    )
    setting_prefix: str = Field("", description="environment prefix, named in refusals")


class PipelineOrderLimits(BaseSettings):
    """The daily pipeline's caps, from ``IBKR_PIPELINE_*``: wide enough for the optimiser's own
    book (12% of NAV per name, a full rebalance in one ticket), tight enough to stop a runaway."""

    model_config = SettingsConfigDict(env_prefix="IBKR_PIPELINE_", extra="ignore")

    max_quantity: float = Field(
        100_000, gt=0, description="shares per order (a currency order: by value alone)"
    )
    max_notional: float = Field(250_000, gt=0, description="order value per order")
    max_nlv_share: float = Field(0.15, gt=0, le=1, description="order value / net liquidation")
    orders_per_minute: int = Field(120, ge=1, description="orders per 60 s")
    orders_per_day: int = Field(400, ge=1, description="orders per UTC day")
    max_daily_notional: float = Field(2_000_000, gt=0, description="order value per UTC day")
    allow_live: bool = Field(True, description="live still needs IBKR_ALLOW_LIVE and promotion")

    def limits(self) -> OrderLimits:
        """These settings as the guard's limits of principal ``pipeline``."""
        return OrderLimits(
            principal="pipeline", setting_prefix="IBKR_PIPELINE_", **self.model_dump()
        )
