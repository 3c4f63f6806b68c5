"""The simulated world's social chatter (:mod:`ibkr_sim.market.social`): deterministic per seed,
the same in the default and edge-free worlds, bigger for large caps, bursting on news and jump
sessions, and linked to future returns only through ``Edge.social_attention_drift``.

Measured on seed 7 (daily IC of the post-spike and mention-anomaly z-scores of
:mod:`ibkr_assets.quant.social` against the next session's return, t-statistic): default edge
0.007 (t=9) and 0.017 (t=24); ``Edge.none()``: within noise.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.social import robust_zscores
from ibkr_sim.market import SimMarket
from ibkr_sim.market.calendar import schedule, session_slice
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.paths import panel
from ibkr_sim.universe import MAX_STOCKS
from tests.unit.test_market_edge import NONE_SE, _daily_ic

SEED = 7
#: the spike signal's daily IC the default is sized for (Edge.social_attention_drift)
SPIKE_BAND = (0.005, 0.015)


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


def _ics(edge: Edge, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    log_close = np.log(panel(SEED, edge).close[:, :MAX_STOCKS])
    nxt = np.full_like(log_close, np.nan)
    nxt[:-1] = np.diff(log_close, axis=0)  # row t: the return of session t + 1
    return {name: _daily_ic(z[100:], nxt[100:]) for name, z in scores.items()}


@pytest.mark.slow
def test_default_edge_gives_the_spike_signal_a_small_ic_and_none_gives_none() -> None:
    chatter = panel(SEED, Edge()).chatter  # the same in both worlds
    scores = {
        name: robust_zscores(pd.DataFrame(counts)).to_numpy()
        for name, counts in (("post spike", chatter.posts), ("mention anomaly", chatter.mentions))
    }
    default = _ics(Edge(), scores)
    spike = default["post spike"]
    mean, se = spike.mean(), spike.std(ddof=1) / np.sqrt(len(spike))
    print(f"post spike IC {mean:+.4f} (t={mean / se:+.1f})")
    assert SPIKE_BAND[0] <= mean <= SPIKE_BAND[1] and mean / se > 4
    anomaly = default["mention anomaly"]
    print(f"mention anomaly IC {anomaly.mean():+.4f}")
    assert 0.005 <= anomaly.mean() <= 0.03
    for name, ic in _ics(Edge.none(), scores).items():
        mean, se = ic.mean(), ic.std(ddof=1) / np.sqrt(len(ic))
        print(f"{name} without edge: IC {mean:+.4f} (se {se:.4f})")
        assert abs(mean) < NONE_SE * se, f"{name}: IC {mean:.4f} without edge"
