"""How to reach IB: one settings class read from ``IBKR_*`` environment variables.

The pipeline's IB resource and the MCP server both build their broker from these, so one set of
environment variables points every process at the same account.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

BackendName = Literal["sim", "tws", "webapi"]


class BrokerSettings(BaseSettings):
    """Connection settings. Paper trading is the default; a live account needs ``allow_live``."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    backend: BackendName = Field("sim", description="sim (in-process), tws (ib_async), webapi")
    host: str = Field("127.0.0.1", description="TWS / IB Gateway host")
    port: int = Field(4002, description="7497 TWS paper, 7496 TWS live, 4002 Gateway paper")
    client_id: int = Field(1, description="API clientId; unique per connection")
    account: str | None = Field(None, description="account id; None = the primary account")
    readonly: bool = Field(False, description="connect read-only: no order can be sent")
    allow_live: bool = Field(False, description="explicit opt-in to use a non-paper account")
    timeout: float = Field(20.0, description="seconds to wait for a request")
    data_dir: Path = Field(Path("data"), description="data root (IBKR_DATA_DIR)")
    sim_seed: int = Field(7, description="seed of the simulated market")
    sim_symbols: int = Field(700, description="number of simulated US stocks")
    sim_now: datetime | None = Field(None, description="pin the simulator's clock (UTC)")
    # Pacing of the tws backend, kept under IB's documented limits (50 messages/s per client,
    # 100 market-data lines, 50 simultaneous historical requests, historical-data pacing).
    pacing: bool = Field(
        True,
        description="pace requests client-side under IB's limits; false only against a gateway "
        "that does not enforce them (ibkr-sim gateway --pacing off)",
    )
    max_msg_rate: int = Field(45, ge=0, description="API messages per second (IB: 50); 0 = off")
    max_market_data_lines: int = Field(90, ge=1, description="simultaneous snapshots (IB: 100)")
    max_historical_requests: int = Field(40, ge=1, description="simultaneous (IB: 50)")
    connect_attempts: int = Field(5, ge=1, description="connection attempts before giving up")
