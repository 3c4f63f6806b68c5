"""A small simulated world loaded for the backtest replay, shared by the unit and pipeline tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from ibkr_assets.assets.backtest import replay_settings
from ibkr_assets.assets.replay_data import load_replay_data
from ibkr_assets.assets.signals import evidence_settings
from ibkr_assets.config import PipelineConfig
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.quant.backtest import ReplayData, ReplaySettings
from ibkr_assets.quant.evidence import EvidenceSettings
from ibkr_assets.quant.sentiment import LexiconScorer
from ibkr_assets.resources import social_resource
from ibkr_assets.resources.fundamentals import SimFundamentalsResource
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.settings import load_settings


def load_small_replay(
    root: Path, symbols: int, sessions: Sequence[date], evidence: EvidenceSettings | None = None
) -> tuple[ReplayData, ReplaySettings, dict[str, str]]:
    """The replay's data for every stock of a ``symbols``-stock simulated world over
    ``sessions`` (the environment's settings, as the daily job reads them, but ``evidence``;
    lexicon sentiment; the configured social source), and the symbols it could not load."""
    broker = IBResource(data_dir=str(root), sim_symbols=symbols).get_broker()
    environment = load_settings()
    pipeline = PipelineConfig.from_settings(environment)  # as the daily job reads it
    reading = evidence or evidence_settings(pipeline)
    settings = replay_settings(pipeline, DecideConfig(), reading)
    data, problems = load_replay_data(
        broker,
        StorageResource(data_dir=str(root)),
        SimFundamentalsResource(sim_symbols=symbols),
        LexiconScorer(),
        settings,
        [s.symbol for s in broker.market.universe.stocks],
        sessions,
        social=social_resource(environment),
    )
    return data, settings, problems
