"""Worlds above the 807 real tickers (#19 item 4): generated stocks, flagged and kept apart from
real ones, served by the simulated market like listed stocks, and the listed stocks unchanged."""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

import numpy as np
import pytest

from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.settings import load_settings
from ibkr_sim.market import fundamentals, intraday, paths
from ibkr_sim.market.calendar import session_slice
from ibkr_sim.market.sim_market import SimMarket
from ibkr_sim.universe import (
    LISTED_STOCKS,
    MAX_STOCKS,
    Universe,
    generated_symbol,
)
from ibkr_spec.errors import IBError

SEED = 7
#: a world one block of generated stocks deep: cheap to draw
SMALL_WIDE = LISTED_STOCKS + 100
AT = datetime(2024, 6, 3, 15, 0, tzinfo=UTC)  # 11:00 New York, the session open


@pytest.fixture(scope="module")
def largest() -> Universe:
    return Universe(SEED, MAX_STOCKS)


def test_generated_stocks_are_flagged_and_named_as_such(largest: Universe) -> None:
    listed, generated = largest.stocks[:LISTED_STOCKS], largest.stocks[LISTED_STOCKS:]
    assert len(generated) == MAX_STOCKS - LISTED_STOCKS
    assert not any(s.generated for s in listed)
    assert all(s.generated for s in generated)
    assert generated[0].name == "Generated Stock 0808 (simulated)"
    assert generated[-1].name == f"Generated Stock {MAX_STOCKS} (simulated)"
    assert all("(simulated)" in s.name for s in generated)


def test_generated_symbols_cannot_be_real_tickers(largest: Universe) -> None:
    """Six capital letters (no NYSE/Nasdaq root has more than five), letters only (what IBKR's
    /trsrv/stocks accepts), unique, and found by lookup as themselves."""
    symbols = [s.symbol for s in largest.stocks[LISTED_STOCKS:]]
    assert symbols[0] == generated_symbol(LISTED_STOCKS + 1) == "SIMAAA"
    assert symbols[1] == "SIMAAB"
    assert all(len(s) == 6 and s.isalpha() and s.isupper() for s in symbols)
    assert max(len(s.symbol) for s in largest.stocks[:LISTED_STOCKS]) <= 5
    assert len(set(symbols) | {s.symbol for s in largest.stocks[:LISTED_STOCKS]}) == MAX_STOCKS
    assert len({s.conid for s in largest.all()}) == MAX_STOCKS + len(largest.others)
    assert largest.lookup(symbols[-1]).name == f"Generated Stock {MAX_STOCKS} (simulated)"
    with pytest.raises(ValueError, match="no generated stock of rank 807"):
        generated_symbol(LISTED_STOCKS)


def test_listed_stocks_do_not_depend_on_the_world_size(largest: Universe) -> None:
    small = Universe(SEED, 700)
    assert largest.stocks[:700] == small.stocks
    np.testing.assert_array_equal(largest.start_prices[:700], small.start_prices)
    assert Universe(SEED, SMALL_WIDE).stocks == largest.stocks[:SMALL_WIDE]


def test_sectors_follow_the_real_universe_and_caps_continue_the_power_law(
    largest: Universe,
) -> None:
    listed, generated = largest.stocks[:LISTED_STOCKS], largest.stocks[LISTED_STOCKS:]
    real = Counter(s.sector for s in listed)
    drawn = Counter(s.sector for s in generated)
    assert set(drawn) == set(real)
    for sector, count in real.items():  # 4,193 draws: a share's sd is under 0.8 pp
        assert abs(drawn[sector] / len(generated) - count / len(listed)) < 0.03, sector
    assert Counter(s.primary_exchange for s in generated).keys() == {"NYSE", "NASDAQ"}
    caps = np.array([s.shares_outstanding for s in largest.stocks]) * largest.start_prices
    rank = np.arange(1, MAX_STOCKS + 1)
    law = 3.0e12 * rank**-0.9  # rank 5,000: $1.4bn
    tail = slice(MAX_STOCKS - 500, MAX_STOCKS)
    assert 0.9 < np.median(caps[tail] / law[tail]) < 1.1
    assert all(s.lot_size in (100, 40, 10, 1) and s.adv > 0 for s in generated)


def test_the_world_size_is_bounded_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"holds 1 to 5000 stocks .* got 5001"):
        Universe(SEED, MAX_STOCKS + 1)
    bound = next(
        m.le for m in BrokerSettings.model_fields["sim_symbols"].metadata if hasattr(m, "le")
    )
    assert bound == MAX_STOCKS  # the broker core states it without importing the simulator
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", str(MAX_STOCKS + 1))
    assert "IBKR_SIM_SYMBOLS='5001'" in load_settings().problems["broker"]
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", str(MAX_STOCKS))
    assert load_settings().broker.sim_symbols == MAX_STOCKS


@pytest.fixture(scope="module")
def wide() -> Iterator[SimMarket]:
    """A world one block of generated stocks deep. It widens this process's panel (as the
    largest world a process opens does); the width is restored afterwards, so the tests of other
    modules, which slice the listed stocks' rows of per-stock arrays, see the listed world."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "_generated_blocks", paths.generated_blocks())
        yield SimMarket(seed=SEED, n_stocks=SMALL_WIDE)


def test_listed_columns_are_the_same_in_a_wider_panel(wide: SimMarket) -> None:
    """The listed stocks and macro instruments keep their numbers and columns when generated
    blocks are appended: daily panel, chatter, a session's minute paths and the statements."""
    blocks = paths.generated_blocks()
    assert blocks == 1
    narrow, wider = paths._panel(SEED, wide.edge, 0), paths._panel(SEED, wide.edge, blocks)
    C = narrow.close.shape[1]
    assert wider.close.shape[1] == C + paths.GENERATED_BLOCK
    for name in ("open", "high", "low", "close", "volume", "sigma", "news_count", "news_tone"):
        np.testing.assert_array_equal(getattr(wider, name)[:, :C], getattr(narrow, name))
    for name in ("start_price", "tick", "adv"):
        np.testing.assert_array_equal(getattr(wider, name)[:C], getattr(narrow, name))
    for name in ("posts", "mentions", "attention"):
        np.testing.assert_array_equal(
            getattr(wider.chatter, name)[:, :LISTED_STOCKS], getattr(narrow.chatter, name)
        )
    j = 1300
    day, wider_day = (
        intraday._intraday(SEED, wide.edge, j, 0),
        intraday._intraday(SEED, wide.edge, j, 1),
    )
    np.testing.assert_array_equal(wider_day.path[:C], day.path)
    np.testing.assert_array_equal(wider_day.cum_volume[:C], day.cum_volume)
    st, wider_st = fundamentals._statements(SEED, 0), fundamentals._statements(SEED, 1)
    np.testing.assert_array_equal(wider_st.report_date[:LISTED_STOCKS], st.report_date)
    for name, values in st.items.items():
        np.testing.assert_array_equal(wider_st.items[name][:LISTED_STOCKS], values)


def test_a_generated_stock_has_everything_a_listed_one_has(wide: SimMarket) -> None:
    stock = wide.universe.stocks[-1]
    assert stock.generated
    bars = wide.daily_bars(stock.conid, date(2019, 1, 1), date(2024, 6, 28))
    assert len(bars) > 1000 and (bars["volume"] > 0).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    returns = np.log(bars["close"]).diff().dropna()
    assert 0.01 < returns.std() < 0.05  # a mid cap's daily volatility
    assert len(wide.fundamentals(stock.conid, date(2024, 6, 3))) >= 8
    assert np.isfinite(wide.forward_eps(stock.conid, date(2024, 6, 3)))
    chatter = wide.social_chatter(stock.conid, date(2024, 1, 1), date(2024, 6, 28))
    assert chatter["mentions"].sum() > 0
    assert wide.news(stock.conid, datetime(2023, 6, 1, tzinfo=UTC), AT)
    snap = wide.snapshot(stock.conid, AT)
    assert snap.bid < snap.ask and snap.volume > 0
    with pytest.raises(IBError):
        wide.fundamentals(wide.universe.lookup("SPY").conid, date(2024, 6, 3))


def test_chatter_and_statements_are_drawn_without_prices(
    wide: SimMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that serves only chatter and fundamentals (the pipeline's simulated sources
    behind a simulated gateway, whose process holds the prices) draws them without the price
    panel: the panel's counts, listed and generated stocks alike, in the order asked."""
    picks = [len(wide.universe.stocks) - 1, 0, LISTED_STOCKS, 5, LISTED_STOCKS - 1]
    cols = np.array([paths.stock_column(i) for i in picks], dtype=np.int64)
    rows = session_slice(date(2024, 1, 2), date(2024, 6, 28))
    held = paths.panel(SEED, wide.edge).chatter
    expected = (held.posts[rows][:, cols], held.mentions[rows][:, cols])

    def no_prices(*args: object) -> None:
        raise AssertionError("the price panel was drawn to serve chatter")

    monkeypatch.setattr(paths, "_panel_chatter", weakref.WeakValueDictionary())  # none held
    monkeypatch.setattr(paths, "_panel", no_prices)
    monkeypatch.setattr(paths, "_listed_panel", no_prices)
    drawn = paths.chatter_counts(SEED, cols, rows)
    for got, want in zip(drawn, expected, strict=True):
        assert got.shape == (rows.stop - rows.start, len(picks))
        np.testing.assert_array_equal(got, want)
    assert (drawn[1] > 0).any(axis=0).all()  # every stock is talked about
    fundamentals._statements.cache_clear()
    stocks = [wide.universe.stocks[i].conid for i in picks]
    statements, refused = wide.fundamentals_many(stocks, date(2024, 6, 3))
    assert not refused and set(statements["conid"]) == set(stocks)
    assert np.isfinite(wide.forward_eps_many(stocks, date(2024, 6, 3))).all()


def test_generated_stocks_have_their_own_paths_and_scan_like_the_others(wide: SimMarket) -> None:
    generated = wide.universe.stocks[LISTED_STOCKS:]
    closes = wide.daily_close_panel(
        [s.conid for s in generated], date(2024, 1, 1), date(2024, 6, 28)
    )
    returns = np.log(closes).diff().dropna()
    assert returns.corr().to_numpy()[np.triu_indices(len(generated), 1)].max() < 0.95
    scanned = {row.conid for code in wide.SCANNER_CODES for row in wide.scan(code, AT, limit=50)}
    assert scanned & {s.conid for s in generated}  # they move and trade like real ones
