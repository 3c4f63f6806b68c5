"""Dagster resources: IB broker, storage, pipeline settings, fundamentals, sentiment, alerts,
the decision-stage limits, and the DuckDB IO manager.

Every resource is built from the settings tree (:mod:`ibkr_assets.settings`) by
:func:`build_resources`; no resource holds a secret: each reads the secrets it uses when it uses
them (:mod:`ibkr_assets.settings.secret`: a variable, the file ``<NAME>_FILE`` names, or Vault).

Resource keys (what an asset names as a parameter):

=================  ==========================================================================
``ib``             IBResource — the broker (sim by default; ``IBKR_BACKEND=tws`` for TWS)
``storage``        StorageResource — the data root (``IBKR_DATA_DIR``) and atomic writers
``pipeline``       PipelineConfig — watch-list, mover thresholds, alpha weights (``IBKR_*``)
``fundamentals``   SimFundamentalsResource, or FMPFundamentalsResource when
                   ``IBKR_FUNDAMENTALS=fmp`` (key from ``FMP_API_KEY``)
``social``         SimSocialResource, or the Reddit (PRAW) / StockTwits source, or none
                   (``IBKR_SOCIAL_SOURCE``; Reddit's credentials from ``REDDIT_CLIENT_*``)
``sentiment``      SentimentResource — FinBERT-style model (``IBKR_SENTIMENT_MODEL``) or lexicon
``alerts``         AlertResource — log / Slack / email
``decide``         DecideConfig — limits of stages 4–9
``io_manager``     WarehouseIOManager (DuckDB, pandas) on ``<data root>/warehouse.duckdb``
=================  ==========================================================================
"""

from __future__ import annotations

from typing import Any, Literal

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
from ibkr_assets.resources.social import (
    NoSocialResource,
    RedditSocialResource,
    SimSocialResource,
    SocialResource,
    StocktwitsSocialResource,
)
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.resources.warehouse_io import WarehouseIOManager
from ibkr_assets.settings import Settings, load_settings


def fundamentals_source() -> Literal["sim", "fmp"]:
    """Where the pipeline's fundamentals come from (``IBKR_FUNDAMENTALS``): the simulator or
    Financial Modeling Prep."""
    return load_settings().fundamentals.fundamentals


def fundamentals_resource(settings: Settings) -> FundamentalsResource:
    """Simulated fundamentals (of the market the ``broker`` section simulates), or FMP when
    ``IBKR_FUNDAMENTALS=fmp`` (key ``FMP_API_KEY``, read at each fetch)."""
    if settings.fundamentals.fundamentals == "fmp":
        return FMPFundamentalsResource()
    broker = settings.broker
    return SimFundamentalsResource(
        sim_seed=broker.sim_seed, sim_symbols=broker.sim_symbols, sim_edge=broker.sim_edge
    )


def social_source() -> str:
    """Where the pipeline's social chatter comes from (``IBKR_SOCIAL_SOURCE``)."""
    return load_settings().social.source


def social_resource(settings: Settings) -> SocialResource:
    """The ``social`` section's source: the simulated world's chatter (of the market the
    ``broker`` section simulates), Reddit through PRAW (credentials read at each fetch),
    StockTwits' public streams, or none."""
    social = settings.social
    common = {"history_sessions": social.history_sessions}
    if social.source == "none":
        return NoSocialResource(**common)
    if social.source == "stocktwits":
        return StocktwitsSocialResource(**common, max_requests=social.max_requests)
    if social.source == "reddit":
        return RedditSocialResource(
            **common,
            max_requests=social.max_requests,
            user_agent=social.reddit_user_agent,
            subreddits=list(social.subreddits),
        )
    broker = settings.broker
    return SimSocialResource(
        **common, sim_seed=broker.sim_seed, sim_symbols=broker.sim_symbols, sim_edge=broker.sim_edge
    )


def build_resources(
    data_dir: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """The resources of the code location, built from ``settings`` (default: this process's,
    :func:`~ibkr_assets.settings.load_settings`); ``data_dir`` overrides ``IBKR_DATA_DIR``
    (tests, benchmarks). A malformed setting does not stop the code location loading: the
    resource carries the problem and a run using it fails at start with it (see
    :class:`~ibkr_assets.errors.SettingsResource`)."""
    settings = settings or load_settings()
    if data_dir is not None:
        settings = settings.updated(broker={"data_dir": str(data_dir)})
    storage = StorageResource(data_dir=settings.broker.data_dir)
    return {
        "ib": IBResource.from_settings(settings),
        "storage": storage,
        "pipeline": PipelineConfig.from_settings(settings),
        "fundamentals": fundamentals_resource(settings),
        "social": social_resource(settings),
        "sentiment": SentimentResource.from_settings(settings),
        "alerts": AlertResource.from_settings(settings),
        "decide": DecideConfig.from_settings(settings),
        "io_manager": WarehouseIOManager(database=str(storage.warehouse_path)),
    }
