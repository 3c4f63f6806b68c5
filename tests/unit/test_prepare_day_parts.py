"""The replay's day inputs from panels computed once for every replayed session
(``prepare_days``: :class:`~ibkr_assets.quant.backtest.replay.DayParts`) against each session
computed alone (``prepare_day`` without them: the daily job's single-day feature matrix): the
same feature matrix, alpha, risk model and overlay headlines, bit for bit, on a seeded world with
news, statements and social chatter."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.partitions import sessions_between
from ibkr_assets.quant.backtest import ReplayData, ReplaySettings, signal_panel, technical_windows
from ibkr_assets.quant.backtest.day_workers import DayWorkers, prepare_days
from ibkr_assets.quant.backtest.replay import DayParts, prepare_day, universe_closes
from ibkr_assets.quant.evidence import EvidenceSettings
from tests.replay_fixtures import load_small_replay


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[ReplayData, ReplaySettings]:
    sessions = sessions_between(date(2024, 6, 10), date(2024, 6, 21))
    data, settings, problems = load_small_replay(
        tmp_path_factory.mktemp("parts"), 40, sessions, EvidenceSettings(sessions=60)
    )
    assert not problems
    assert data.social is not None
    return data, settings


def test_prepare_days_equal_each_day_computed_alone(world):
    data, settings = world
    panel = signal_panel(data, settings)
    technical = technical_windows(data, settings)
    closes = universe_closes(data)
    days = list(prepare_days(data, settings, panel, workers=0))
    assert len(days) == len(data.sessions)
    for i, day in enumerate(days):
        alone = prepare_day(data, i, technical[i], settings, panel, closes)
        pd.testing.assert_frame_equal(day.features, alone.features, check_exact=True)
        pd.testing.assert_frame_equal(day.alpha, alone.alpha, check_exact=True)
        pd.testing.assert_frame_equal(day.headlines, alone.headlines, check_exact=True)
        pd.testing.assert_frame_equal(day.quotes, alone.quotes, check_exact=True)
        assert day.model.symbols == alone.model.symbols
        assert np.array_equal(day.model.scenarios, alone.model.scenarios, equal_nan=True)
        assert day.model.shrinkage == alone.model.shrinkage
    # the compared columns hold what could differ: known statements, news, chatter, quotes
    features = pd.concat([d.features for d in days])
    assert features["piotroski"].notna().any()
    assert (features["headlines_24h"] > 0).any()
    assert features["sentiment_z"].ne(0).any()
    assert features["social_spike_z"].notna().any()
    assert features["price_source"].eq("mid").any()
    assert any(len(d.headlines) for d in days)


def test_day_parts_name_a_symbol_outside_the_universe(world):
    data, settings = world
    parts = DayParts.of(data, settings)
    with pytest.raises(ValueError, match="not in the universe"):
        parts.known(0, pd.Index(["NOT_A_SYMBOL"]))


def test_day_workers_prepare_in_another_process_what_this_one_would(world):
    """The worker started before the data exists (as the backtest starts it before the load)
    gets it by hand-over and yields the in-process days, bit for bit, in order."""
    data, settings = world
    panel = signal_panel(data, settings)
    here = list(prepare_days(data, settings, panel, workers=0))
    with DayWorkers(1) as workers:
        days_for = workers.prepare(data, settings)
        there = list(days_for(panel))
        with pytest.raises(ValueError, match="already prepare a replay"):
            workers.prepare(data, settings)
    assert [d.session for d in there] == [d.session for d in here]
    for a, b in zip(here, there, strict=True):
        pd.testing.assert_frame_equal(a.features, b.features, check_exact=True)
        pd.testing.assert_frame_equal(a.alpha, b.alpha, check_exact=True)
        pd.testing.assert_frame_equal(a.cost_inputs, b.cost_inputs, check_exact=True)
        assert np.array_equal(a.model.loadings, b.model.loadings)


def test_day_workers_never_handed_data_stop_cleanly():
    """A load that fails leaves the started workers without data: leaving the block ends them
    (no hang, no error of their own)."""
    with pytest.raises(RuntimeError, match="the load failed"), DayWorkers(1):
        raise RuntimeError("the load failed")
