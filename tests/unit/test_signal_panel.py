"""The replay's vectorised signal panel (every evidence session at once) against the daily job's
one-session path: each session's feature matrix (``day_features`` without the pre-open quote),
its normalised signals (``signal_matrix``) and their rank ICs and covariance
(``session_evidence``), on two seeded simulated worlds, for sessions with news, without news
and before the first statement."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.partitions import sessions_between
from ibkr_assets.quant.alpha import SIGNALS, signal_matrix
from ibkr_assets.quant.backtest import ReplayData, ReplaySettings, signal_panel, technical_windows
from ibkr_assets.quant.backtest.replay import day_features, universe_closes
from ibkr_assets.quant.evidence import EvidenceSettings, session_evidence
from tests.replay_fixtures import load_small_replay

#: the unit tests' world (tests/unit/test_backtest.py) and a wider one with a longer warm-up
WORLDS = {
    "small": (40, sessions_between(date(2024, 6, 10), date(2024, 6, 25)), 60),
    "wide": (90, sessions_between(date(2024, 3, 1), date(2024, 3, 8)), 120),
}


@pytest.fixture(scope="module", params=sorted(WORLDS))
def world(request, tmp_path_factory) -> tuple[ReplayData, ReplaySettings]:
    symbols, sessions, warmup = WORLDS[request.param]
    evidence = EvidenceSettings(sessions=warmup, t_threshold=1.0)
    data, settings, problems = load_small_replay(
        tmp_path_factory.mktemp(request.param), symbols, sessions, evidence
    )
    assert not problems
    return data, settings


def _one_session(
    data: ReplayData, settings: ReplaySettings, k: int
) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Evidence session ``k``'s feature matrix, rank ICs and covariance, the daily job's way."""
    session, at = data.evidence_sessions[k]
    technical = technical_windows(data, settings, [session])[0]
    features, _, _ = day_features(data, session, at, technical, settings, preopen=False)
    returns = universe_closes(data).pct_change(fill_method=None)
    ic, cov = session_evidence(signal_matrix(features), returns.loc[pd.Timestamp(session)])
    return features, ic, cov


def _assert_rows_equal(data: ReplayData, settings: ReplaySettings, ks: list[int]) -> list:
    panel = signal_panel(data, settings)
    assert len(panel.ic) == len(data.evidence_sessions)
    matrices = []
    for k in ks:
        features, ic, cov = _one_session(data, settings, k)
        row = panel.ic.index.get_loc(pd.Timestamp(data.evidence_sessions[k][0]))
        np.testing.assert_allclose(panel.ic.iloc[row], ic[list(SIGNALS)], rtol=0, atol=1e-12)
        np.testing.assert_allclose(panel.cov[row], cov, rtol=0, atol=1e-12)
        matrices.append(features)
    return matrices


def test_panel_rows_equal_the_one_session_path(world):
    data, settings = world
    n = len(data.evidence_sessions)
    ks = [0, 1, n // 3, n // 2, n - 2, n - 1]
    matrices = _assert_rows_equal(data, settings, ks)
    # sessions with news, and measured ICs for the sentiment and technical signals
    assert all(int(m["headlines_24h"].sum()) > 0 for m in matrices)
    assert all(m["piotroski"].notna().any() for m in matrices)


def test_panel_rows_without_news_and_before_the_first_statement(world):
    data, settings = world
    sessions = data.evidence_sessions
    _, at = sessions[len(sessions) // 2]
    # no headline in the day before one session's run time; no statement known before the
    # third session's run time (every filing moved after it)
    news = data.headlines.loc[
        ~data.headlines["time"].between(at - pd.Timedelta(hours=30), at + pd.Timedelta(hours=1))
    ]
    filed = pd.to_datetime(data.statements["report_date"])
    late = sessions[2][0]
    statements = data.statements.assign(
        report_date=filed.where(filed > pd.Timestamp(late), pd.Timestamp(late))
    )
    changed = replace(data, headlines=news, statements=statements)
    ks = [0, 2, 3, len(sessions) // 2]
    first, _, _, quiet_day = _assert_rows_equal(changed, settings, ks)
    assert first["piotroski"].isna().all() and first["revenue_growth_flag"].isna().all()
    assert int(quiet_day["headlines_24h"].sum()) == 0
    assert (quiet_day["sentiment_z"] == 0).all()
    assert quiet_day["piotroski"].notna().any()
