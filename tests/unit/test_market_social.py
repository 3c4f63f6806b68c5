"""The simulated world's social chatter (:mod:`ibkr_sim.market.social`): deterministic per seed,
the same in the default and edge-free worlds, bigger for large caps, bursting on news and jump
sessions, and linked to future returns only through ``Edge.social_attention_drift``.

Measured on seed 7, 2019-2028, as the evidence measures them (the feature matrix's
post-spike and mention-anomaly z-scores, normalised by the alpha stage, rank IC against the next
session's return): default edge 0.0068 (t=9.6) and 0.0177 (t=24.4); ``Edge.none()``: -0.0008
(t=-1.1) and -0.0005 (t=-0.7).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.alpha import signal_matrix
from ibkr_assets.quant.evidence import rank_ic
from ibkr_assets.quant.social import social_panel
from ibkr_sim.market import SimMarket
from ibkr_sim.market.calendar import schedule, session_slice
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.paths import panel
from ibkr_sim.market.social import draw_chatter, draw_counts
from ibkr_sim.universe import LISTED_STOCKS
from tests.unit.test_market_edge import NONE_SE

SEED = 7
#: the social signals' daily ICs the default is sized for (Edge.social_attention_drift)
BANDS = {"social_spike_z": (0.005, 0.015), "social_volume_z": (0.01, 0.03)}
SOCIAL_SIGNALS = ("social_spike_z", "social_volume_z")


def test_chatter_is_the_same_in_both_worlds_and_bigger_for_large_caps() -> None:
    default, none = panel(SEED, Edge()).chatter, panel(SEED, Edge.none()).chatter
    assert np.array_equal(default.posts, none.posts)
    assert np.array_equal(default.mentions, none.mentions)
    assert default.posts.min() >= 0 and default.mentions.min() >= 0
    top, small = default.posts[:, :20].mean(), default.posts[:, 500:].mean()
    assert top > 20 * small, (top, small)
    assert default.mentions.mean() > 10 * default.posts.mean()  # StockTwits-like > Reddit-like


def test_chatter_bursts_on_news_and_jump_sessions_and_mondays() -> None:
    p = panel(SEED, Edge())
    posts = p.chatter.posts.astype(float)[:, :100]  # names with posts most days
    posts /= posts.mean(axis=0)  # each stock's own level
    news, jump = p.news_count[:, :100] > 0, p.jump[:, :100]
    quiet = posts[~news].mean()
    assert posts[jump].mean() > 4 * quiet
    assert posts[news & ~jump].mean() > 1.5 * quiet
    monday = pd.DatetimeIndex(schedule()[0]).dayofweek == 0
    assert posts[monday].mean() > 1.1 * posts[~monday].mean()


def test_sim_market_serves_a_stocks_counts_and_refuses_an_etf() -> None:
    m = SimMarket(SEED, 50)
    aapl = m.universe.lookup("AAPL").conid
    got = m.social_chatter(aapl, date(2024, 3, 1), date(2024, 3, 8))
    assert list(got.columns) == ["session", "posts", "mentions"]
    assert len(got) == 6 and got["session"].iloc[0] == pd.Timestamp("2024-03-01")
    rows = session_slice(date(2024, 3, 1), date(2024, 3, 8))
    chatter = panel(SEED, Edge()).chatter  # AAPL is the universe's first stock
    assert got["posts"].tolist() == chatter.posts[rows, 0].tolist()
    assert got["mentions"].tolist() == chatter.mentions[rows, 0].tolist()
    with pytest.raises(ValueError, match="no social chatter about SPY"):
        m.social_chatter(m.universe.lookup("SPY").conid, date(2024, 3, 1), date(2024, 3, 8))


def test_counts_drawn_alone_are_the_chatters_first_sessions() -> None:
    """What a process serving only the counts draws (no attention, no mentions after the last
    session asked for) is the chatter's numbers, for any number of sessions."""
    rng = np.random.default_rng(3)
    T, N = 300, 40
    news = rng.poisson(0.4, (T, N)).astype(np.int8)
    jump = rng.random((T, N)) < 0.01
    shock_z = rng.standard_t(4, (T, N))
    days = schedule()[0][:T]
    whole = draw_chatter(SEED, days, news, jump, shock_z, (2,), 900)
    for sessions in (0, 1, 123, T):
        posts, mentions = draw_counts(SEED, days, news, jump, shock_z, sessions, (2,), 900)
        assert posts.shape == mentions.shape == (sessions, N)
        np.testing.assert_array_equal(posts, whole.posts[:sessions])
        np.testing.assert_array_equal(mentions, whole.mentions[:sessions])


def _evidence_ics(edge: Edge, scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each session's rank IC of the social signals against the next session's return, as the
    evidence measures it: the day's z-scores normalised by the alpha stage
    (:func:`~ibkr_assets.quant.alpha.signal_matrix`, prescaled) and ranked by
    :func:`~ibkr_assets.quant.evidence.rank_ic`; the first 100 sessions (no scores yet) left
    out."""
    log_close = np.log(panel(SEED, edge).close[:, :LISTED_STOCKS])
    nxt = np.full_like(log_close, np.nan)
    nxt[:-1] = np.diff(log_close, axis=0)  # row t: the return of session t + 1
    symbols = scores["social_spike_z"].columns
    rows = {}
    for t in range(100, len(nxt) - 1):
        day = pd.DataFrame({s: scores[s].iloc[t].to_numpy() for s in SOCIAL_SIGNALS}, symbols)
        rows[t] = rank_ic(signal_matrix(day, SOCIAL_SIGNALS), pd.Series(nxt[t], symbols))
    return pd.DataFrame.from_dict(rows, orient="index")


@pytest.mark.slow
def test_default_edge_gives_the_social_signals_a_small_ic_and_none_gives_none() -> None:
    """The feature matrix's social scores (:func:`~ibkr_assets.quant.social.social_panel` of
    the simulated counts, the replay's code) carry the IC
    :attr:`Edge.social_attention_drift` is sized for, and none without the edge."""
    chatter = panel(SEED, Edge()).chatter  # the same in both worlds
    days = pd.DatetimeIndex(schedule()[0])
    symbols = [f"S{i:03d}" for i in range(chatter.posts.shape[1])]
    counts = pd.DataFrame(
        {
            "symbol": np.tile(symbols, len(days)),
            "session": np.repeat(days, len(symbols)),
            "posts": chatter.posts.ravel().astype(float),
            "mentions": chatter.mentions.ravel().astype(float),
        }
    )
    scores = social_panel(counts, symbols)
    for edge, bands in ((Edge(), BANDS), (Edge.none(), None)):
        ics = _evidence_ics(edge, scores)
        for name in SOCIAL_SIGNALS:
            mean = ics[name].mean()
            se = ics[name].std(ddof=1) / np.sqrt(ics[name].count())
            print(f"{name} ({'default' if bands else 'none'}): IC {mean:+.4f} (t={mean / se:+.1f})")
            if bands:
                low, high = bands[name]
                assert low <= mean <= high and mean / se > 4, f"{name}: IC {mean:.4f}"
            else:
                assert abs(mean) < NONE_SE * se, f"{name}: IC {mean:.4f} without edge"
