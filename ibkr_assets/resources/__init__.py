"""Dagster resources: IB broker, storage, pipeline settings, fundamentals, sentiment, alerts,
the decision-stage limits, and the DuckDB IO manager.

Resource keys (what an asset names as a parameter):

=================  ==========================================================================
``ib``             IBResource — the broker (sim by default; ``IBKR_BACKEND=tws`` for TWS)
``storage``        StorageResource — the data root (``IBKR_DATA_DIR``) and atomic writers
``pipeline``       PipelineConfig — watch-list, mover thresholds, alpha weights (``IBKR_*``)
``fundamentals``   SimFundamentalsResource, or FMPFundamentalsResource when
                   ``IBKR_FUNDAMENTALS=fmp`` (key from ``FMP_API_KEY``)
``sentiment``      SentimentResource — FinBERT-style model (``IBKR_SENTIMENT_MODEL``) or lexicon
``alerts``         AlertResource — log / Slack / email
``decide``         DecideConfig — limits of stages 4–9
``io_manager``     WarehouseIOManager (DuckDB, pandas) on ``<data root>/warehouse.duckdb``
=================  ==========================================================================
"""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibkr_assets.config import PipelineConfig
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.resources.fundamentals import (
    FMPFundamentalsResource,
    FundamentalsResource,
    SimFundamentalsResource,
)
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.sentiment import SentimentResource
from ibkr_assets.resources.storage import StorageResource, WarehouseIOManager


class _SourceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    fundamentals: Literal["sim", "fmp"] = "sim"


def fundamentals_source() -> Literal["sim", "fmp"]:
    """Where the pipeline's fundamentals come from (``IBKR_FUNDAMENTALS``): the simulator or
    Financial Modeling Prep."""
    return _SourceSettings().fundamentals


def fundamentals_resource(ib: IBResource) -> FundamentalsResource:
    """Simulated fundamentals (of the market ``ib`` simulates), or FMP when
    ``IBKR_FUNDAMENTALS=fmp`` (key read at run time)."""
    if fundamentals_source() == "fmp":
        return FMPFundamentalsResource(api_key=dg.EnvVar("FMP_API_KEY"))
    return SimFundamentalsResource(sim_seed=ib.sim_seed, sim_symbols=ib.sim_symbols)


def build_resources(data_dir: str | None = None) -> dict[str, Any]:
    """The resources of the code location, configured from the environment at run time;
    ``data_dir`` overrides ``IBKR_DATA_DIR`` (tests, the demo). A malformed setting does not
    stop the code location loading: the resource carries the problem and a run using it fails
    at start with it (see :class:`~ibkr_assets.errors.SettingsResource`)."""
    ib = IBResource.from_env_deferred()
    if data_dir is not None:  # a new resource: Dagster re-creates resources from their fields
        fields = {name: getattr(ib, name) for name in IBResource.model_fields}
        ib = IBResource(**{**fields, "data_dir": str(data_dir)})
    storage = StorageResource(data_dir=ib.data_dir)
    return {
        "ib": ib,
        "storage": storage,
        "pipeline": PipelineConfig.from_env_deferred(),
        "fundamentals": fundamentals_resource(ib),
        "sentiment": SentimentResource.from_env(),
        "alerts": AlertResource.from_env(data_dir=ib.data_dir),
        "decide": DecideConfig.from_env_deferred(),
        "io_manager": WarehouseIOManager(database=str(storage.warehouse_path)),
    }
