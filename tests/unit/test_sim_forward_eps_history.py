"""The simulator's forward EPS over many sessions at once (what a backtest's load asks for) is
the one-stock, one-day figure, also on days when some stocks have fewer than the eight quarters
the vectorised windows need (the statements start 2015Q4; 2017Q3's reports land 30-45 days
after the quarter, so on 2017-11-06 some stocks have eight quarters and some seven)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from ibkr_sim.market.sim_market import SimMarket

DAYS = [date(2017, 6, 1), date(2017, 11, 6), date(2021, 2, 16), date(2024, 6, 3)]


@pytest.fixture(scope="module")
def small() -> SimMarket:
    return SimMarket(seed=7, n_stocks=40)


def test_history_is_each_day_one_by_one(small):
    conids = [s.conid for s in small.universe.stocks]
    history = small.forward_eps_history(conids, DAYS)
    assert history.shape == (len(DAYS), len(conids))
    one_by_one = [[small.forward_eps(c, day) for c in conids] for day in DAYS]
    np.testing.assert_array_equal(history, np.array(one_by_one))
    assert small.forward_eps_many(conids, DAYS[1]) == one_by_one[1]


def test_some_stocks_lack_eight_quarters_on_the_mixed_day(small):
    """The mixed day really mixes (else the test above would not cover the per-stock fallback)."""
    reported = [len(small.fundamentals(s.conid, DAYS[1])) for s in small.universe.stocks]
    assert min(reported) < 8 <= max(reported)
