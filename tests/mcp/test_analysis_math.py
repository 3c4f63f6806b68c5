"""The analysis tools' numbers are quant's: each field of ``stock_analysis`` against fixed
inputs and an independent implementation (numpy, a plain-Python Wilder recursion), the drawdown
in the backtest's sign, and portfolio concentration from quant's one function."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.broker.models import AccountSummary, Bar, Contract, ContractDetails, Position
from ibkr_assets.quant.performance import summarise
from ibkr_assets.quant.risk_metrics import concentration
from mcp_server.analysis import _health, analyse_bars, bars_frame


def _wilder_atr(high: list[float], low: list[float], close: list[float], n: int = 14) -> float:
    """Wilder's ATR: the first value the mean of n true ranges, then (ATR*(n-1) + TR) / n."""
    tr = [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
        for i in range(1, len(close))
    ]
    atr = sum(tr[:n]) / n
    for x in tr[n:]:
        atr = (atr * (n - 1) + x) / n
    return atr


def _wilder_rsi(close: list[float], n: int = 14) -> float:
    """Wilder's RSI: gains and losses averaged like the ATR, 100 * gain / (gain + loss)."""
    moves = [b - a for a, b in pairwise(close)]
    gain = sum(max(m, 0.0) for m in moves[:n]) / n
    loss = sum(max(-m, 0.0) for m in moves[:n]) / n
    for m in moves[n:]:
        gain = (gain * (n - 1) + max(m, 0.0)) / n
        loss = (loss * (n - 1) + max(-m, 0.0)) / n
    return 100 * gain / (gain + loss)


@pytest.fixture
def bars() -> tuple[pd.DataFrame, pd.Series]:
    """260 sessions of a stock with a 1.3 beta to its benchmark, and the benchmark's closes."""
    rng = np.random.default_rng(11)
    idx = pd.bdate_range("2025-01-02", periods=260, name="date")
    market = rng.normal(0.0003, 0.01, len(idx))
    r = 1.3 * market + rng.normal(0, 0.008, len(idx))
    close = 80 * np.cumprod(1 + r)
    spread = close * rng.uniform(0.005, 0.02, len(idx))
    frame = pd.DataFrame(
        {
            "open": close * (1 + rng.normal(0, 0.003, len(idx))),
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(1e5, 1e6, len(idx)).astype("float64"),
        },
        index=idx,
    )
    bench = pd.Series(400 * np.cumprod(1 + market), index=idx)
    return frame, bench


def test_every_field_against_an_independent_implementation(bars):
    frame, bench = bars
    a = analyse_bars("XYZ", frame, "SPY", bench)
    c = frame["close"].to_numpy()
    h, lo = frame["high"].tolist(), frame["low"].tolist()
    log_r = np.diff(np.log(c))
    np.testing.assert_allclose(a.volatility, np.std(log_r, ddof=1) * math.sqrt(252), rtol=1e-12)
    simple = pd.DataFrame({"s": frame["close"], "m": bench}).pct_change().dropna()
    np.testing.assert_allclose(a.beta, np.polyfit(simple["m"], simple["s"], 1)[0], rtol=1e-10)
    np.testing.assert_allclose(a.atr14, _wilder_atr(h, lo, c.tolist()), rtol=1e-10)
    np.testing.assert_allclose(a.atr_pct, a.atr14 / c[-1], rtol=1e-12)
    np.testing.assert_allclose(a.rsi14, _wilder_rsi(c.tolist()), rtol=1e-10)
    peak = np.maximum.accumulate(c)
    np.testing.assert_allclose(a.max_drawdown, np.max(1 - c / peak), rtol=1e-12)
    np.testing.assert_allclose(a.return_1m, c[-1] / c[-22] - 1, rtol=1e-12)
    np.testing.assert_allclose(a.return_3m, c[-1] / c[-64] - 1, rtol=1e-12)
    np.testing.assert_allclose([a.sma50, a.sma200], [c[-50:].mean(), c[-200:].mean()])
    expected = (
        "up" if c[-1] > a.sma50 > a.sma200 else "down" if c[-1] < a.sma50 < a.sma200 else "sideways"
    )
    assert (a.trend, a.bars, a.last_close, a.benchmark) == (expected, 260, c[-1], "SPY")


def test_drawdown_has_the_backtests_sign(bars):
    """The tool and the backtest report the same positive fraction for the same path."""
    frame, bench = bars
    path = pd.Series([100.0, 120.0, 90.0, 130.0, 117.0])
    frame = frame.iloc[-5:].assign(close=path.to_numpy())
    a = analyse_bars("XYZ", frame, "SPY", bench)
    assert a.max_drawdown == pytest.approx(1 - 90 / 120) and a.max_drawdown > 0
    backtest = summarise(path.pct_change().dropna())
    assert backtest.max_drawdown == pytest.approx(a.max_drawdown)
    rising = frame.assign(close=[1.0, 2.0, 3.0, 4.0, 5.0])
    assert analyse_bars("XYZ", rising, "SPY", bench).max_drawdown == 0.0


def test_concentration_shares_of_net_liquidation():
    """What portfolio_health reports: market values over net liquidation (signs ignored), the
    compliance gate's measure; the HHI of the shares of gross exposure."""
    values = pd.Series({"1": 50.0, "2": -30.0, "3": 20.0})
    c = concentration(values, nav=200.0)
    np.testing.assert_allclose(
        [c.max_abs_weight, c.top_weight, c.hhi, c.effective_n],
        [50 / 200, 100 / 200, 0.25 + 0.09 + 0.04, 1 / 0.38],
    )
    assert concentration(values, top=2, nav=200.0).top_weight == pytest.approx(80 / 200)
    # the same book as fractions of NAV gives the same numbers: one measure
    same = concentration(values / 200.0)
    assert (same.max_abs_weight, same.top_weight) == pytest.approx((c.max_abs_weight, 0.5))
    empty = concentration(pd.Series([], dtype="float64"), nav=200.0)
    assert (empty.max_abs_weight, empty.top_weight, empty.hhi) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="nav must be a positive net liquidation, got 0"):
        concentration(values, nav=0.0)


def test_bars_frame_orders_and_dedupes():
    t = datetime(2026, 1, 5, 21, tzinfo=UTC)
    bars = [
        Bar(time=t, open=2, high=3, low=1, close=2.5, volume=10, session=date(2026, 1, 6)),
        Bar(time=t, open=1, high=2, low=0.5, close=1.5, volume=5, session=date(2026, 1, 5)),
    ]
    frame = bars_frame(bars)
    assert list(frame["close"]) == [1.5, 2.5]
    assert frame.index.is_monotonic_increasing
    dup = bars_frame([*bars, bars[0].model_copy(update={"close": 9.0})])
    assert list(dup["close"]) == [1.5, 9.0]  # the later bar of a date wins
    empty = bars_frame([])
    assert empty.empty and list(empty.columns) == ["open", "high", "low", "close", "volume"]


class _Sectors:
    """A broker stand-in answering contract details only (what the health report asks)."""

    def contract_details(self, contract: Contract) -> ContractDetails:
        return ContractDetails(contract=contract, sector="Technology")


def _account(net_liquidation: float) -> AccountSummary:
    return AccountSummary(
        account_id="DU1",
        net_liquidation=net_liquidation,
        total_cash=-60_000.0,
        gross_position_value=50_000.0,
        equity_with_loan=net_liquidation,
        init_margin_req=25_000.0,
        maint_margin_req=12_500.0,
        available_funds=net_liquidation - 25_000.0,
        excess_liquidity=net_liquidation - 12_500.0,
        buying_power=0.0,
        cushion=-1.0,
        leverage=5.0,
        time=datetime(2026, 11, 20, 15, tzinfo=UTC),
    )


def _position(conid: int, symbol: str, value: float) -> Position:
    contract = Contract(conid=conid, symbol=symbol, sec_type="STK")
    return Position(
        account_id="DU1", contract=contract, quantity=100, avg_cost=1.0, market_value=value
    )


def test_an_account_in_deficit_is_reported_with_the_deficit_first():
    """A margin emergency is when the report matters most: no refusal, no share of a negative
    net liquidation, the deficit named first and the concentration of gross exposure kept."""
    rows = [_position(1, "AAPL", 40_000.0), _position(2, "MSFT", 10_000.0)]
    health = _health(_Sectors(), _account(-10_000.0), rows)  # type: ignore[arg-type]
    assert health.largest_weight is None and health.top5_weight is None
    assert health.cash_share is None and health.sectors[0].weight is None
    assert health.hhi == pytest.approx(0.8**2 + 0.2**2)
    assert health.warnings[0].startswith("net liquidation is -10,000.00 USD")
    assert "leverage 5.00x" in health.warnings
    solvent = _health(_Sectors(), _account(100_000.0), rows)  # type: ignore[arg-type]
    assert solvent.largest_weight == pytest.approx(0.4) and solvent.cash_share == -0.6
    assert solvent.warnings[0] == "largest position is 40% of net liquidation"
