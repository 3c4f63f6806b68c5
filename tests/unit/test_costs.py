"""The cost model (ibkr_assets.quant.costs): IB's commission through the injected callable,
half spread and square-root impact against hand computations, amortisation, the band."""

import math

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.costs import (
    IMPACT_FIT_RANGE,
    CostModel,
    CostRates,
    cost_rates,
    impact_quadratic,
    order_cost,
)
from ibkr_spec.commissions import stock_commission

MODEL = CostModel(commission=stock_commission)


def test_order_cost_adds_commission_half_spread_and_square_root_impact():
    # 1,000 shares at $50 (value $50,000), 2 cents half spread, ADV 1,000,000 shares, σ 2 %
    cost = order_cost(MODEL, 1_000, 50.0, 0.02, 1_000_000, 0.02)
    # IB: 0.0035 x 1,000 = 3.50 (> 0.35 minimum, < 1 % cap) + fees 0.0032 x 1,000 = 3.20
    assert cost.commission == pytest.approx(6.70)
    assert cost.spread == pytest.approx(20.0)  # 1,000 x 0.02
    # 0.3 x 0.02 x sqrt(0.001) x 50,000
    assert cost.impact == pytest.approx(0.3 * 0.02 * math.sqrt(1e-3) * 50_000)
    assert cost.total == pytest.approx(6.70 + 20.0 + cost.impact)


def test_commission_tiers_and_sales_fees_come_from_the_injected_schedule():
    calls = []

    def schedule(shares, value, sell, month_shares):
        calls.append((shares, value, sell, month_shares))
        return stock_commission(shares, value, sell, month_shares)

    model = CostModel(commission=schedule)
    first = order_cost(model, 10_000, 20.0, 0.0, 1e6, 0.0, month_shares=0)
    volume = order_cost(model, 10_000, 20.0, 0.0, 1e6, 0.0, month_shares=5_000_000)
    sale = order_cost(model, 10_000, 20.0, 0.0, 1e6, 0.0, month_shares=0, sell=True)
    assert calls == [
        (10_000, 200_000.0, False, 0),
        (10_000, 200_000.0, False, 5_000_000),
        (10_000, 200_000.0, True, 0),
    ]
    assert first.commission - volume.commission == pytest.approx((0.0035 - 0.0015) * 10_000)
    # SEC fee 27.80 per million of proceeds and FINRA TAF 0.000166 a share
    assert sale.commission - first.commission == pytest.approx(200_000 * 27.8e-6 + 1.66)
    tiny = order_cost(MODEL, 1, 20.0, 0.0, 1e6, 0.0)
    assert tiny.commission == pytest.approx(0.20 + 0.0032)  # the 1 % cap under the minimum


def test_impact_grows_with_the_share_of_adv():
    small = order_cost(MODEL, 1_000, 100.0, 0.0, 1e6, 0.02).impact
    large = order_cost(MODEL, 100_000, 100.0, 0.0, 1e6, 0.02).impact
    # per dollar, impact grows with sqrt(participation): 100x the order, 10x the rate
    assert (large / 100_000) / (small / 1_000) == pytest.approx(10.0)
    assert order_cost(MODEL, 0, 100.0, 0.05, 1e6, 0.02).total == 0.0


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"price": -1.0}, "price=-1.0"),
        ({"adv_shares": 0.0}, "adv_shares=0.0"),
        ({"daily_vol": float("nan")}, "daily_vol=nan"),
    ],
)
def test_order_cost_refuses_bad_inputs_naming_them(kwargs, named):
    args = {
        "shares": 100,
        "price": 10.0,
        "half_spread": 0.01,
        "adv_shares": 1e5,
        "daily_vol": 0.02,
        **kwargs,
    }
    with pytest.raises(ValueError, match=named):
        order_cost(MODEL, **args)


def test_cost_rates_match_order_cost_per_unit_of_weight_amortised():
    nav = 1_000_000.0
    index = pd.Index(["AAA", "BBB"])
    price = pd.Series([50.0, 400.0], index=index)
    half = pd.Series([0.02, 0.50], index=index)
    adv = pd.Series([5e7, 2e8], index=index)  # USD a day
    vol = pd.Series([0.02, 0.03], index=index)
    model = CostModel(commission=stock_commission, holding_period_sessions=10)
    rates = cost_rates(model, price, half, adv, vol, nav)
    for sym in index:
        # the reference order: 1 % of NAV; its cost per unit of weight, over 10 sessions
        value = 0.01 * nav
        shares = value / price[sym]
        one = order_cost(model, shares, price[sym], half[sym], adv[sym] / price[sym], vol[sym])
        linear = (one.commission + one.spread) / value
        assert rates.buy[sym] == pytest.approx(linear / 10)
        sell = order_cost(
            model, shares, price[sym], half[sym], adv[sym] / price[sym], vol[sym], sell=True
        )
        assert rates.sell[sym] == pytest.approx((sell.commission + sell.spread) / value / 10)
        assert rates.sell[sym] > rates.buy[sym]  # sales pay the regulatory fees
        # impact: rate x |Δw|^1.5 is order_cost's impact as a fraction of NAV
        assert rates.impact[sym] * 0.01**1.5 * 10 == pytest.approx(one.impact / nav)
    assert rates.band == model.no_trade_band
    # a longer holding period makes every rate proportionally cheaper
    patient = cost_rates(model.model_copy(update={"holding_period_sessions": 20}), price, half,
                         adv, vol, nav)  # fmt: skip
    np.testing.assert_allclose(patient.buy * 2, rates.buy)
    np.testing.assert_allclose(patient.impact * 2, rates.impact)


def test_cost_rates_name_the_symbols_with_unusable_inputs():
    index = pd.Index(["AAA", "BBB", "CCC"])
    price = pd.Series([10.0, 20.0, 30.0], index=index)
    ones = pd.Series(1.0, index=index)
    with pytest.raises(ValueError, match=r"BBB: adv_dollars; CCC: half_spread"):
        cost_rates(
            MODEL,
            price,
            ones.drop("CCC"),
            pd.Series([1e6, 0.0, 1e6], index=index),
            ones * 0.02,
            1e6,
        )


def test_the_no_trade_band_is_validated_and_free_rates_are_zero():
    with pytest.raises(ValueError, match="no_trade_band"):
        CostModel(commission=stock_commission, no_trade_band=-0.001)
    free = CostRates.free(["AAA", "BBB"])
    assert free.band == 0.0 and not free.buy.any() and not free.impact.any()


def test_impact_quadratic_is_the_least_squares_fit_of_the_power_law():
    a, b = impact_quadratic()
    x = np.linspace(0.0, IMPACT_FIT_RANGE, 20_001)
    fitted, *_ = np.linalg.lstsq(np.column_stack([x, x**2]), x**1.5, rcond=None)
    np.testing.assert_allclose([a, b], fitted, rtol=1e-4)
    for size in (0.05, 0.08, 0.12):  # within 2 % where impact matters
        assert a * size + b * size**2 == pytest.approx(size**1.5, rel=0.02)
    assert a * 0.005 + b * 0.005**2 > 0.005**1.5  # small trades: charged more, never less
    with pytest.raises(ValueError, match="fit range"):
        impact_quadratic(0.0)


def test_each_trades_expected_return_risk_and_cost_add_up():
    """The risk report's per-trade economics over the holding period (quant.decision)."""
    from ibkr_assets.quant.decision import TRADE_ECONOMICS_COLUMNS, trade_economics

    nav, hold = 1_000_000.0, 10
    model = CostModel(commission=stock_commission, holding_period_sessions=hold)
    inputs = pd.DataFrame(
        {"price": [50.0, 200.0, 20.0], "half_spread": [0.02, 0.05, 0.01], "adv": [5e7, 2e8, 1e7],
         "vol": [0.02, 0.015, 0.03]},
        index=["AAA", "BBB", "CCC"],
    )  # fmt: skip
    weights = pd.Series({"AAA": 0.05, "BBB": 0.02})
    current = pd.Series({"BBB": 0.035, "CCC": 0.01})
    expected = pd.Series({"AAA": 1e-3, "BBB": -5e-4, "CCC": 2e-4})  # daily
    trades = trade_economics(weights, current, expected, inputs, model, nav).set_index("symbol")
    assert list(trades.reset_index().columns) == list(TRADE_ECONOMICS_COLUMNS)
    assert list(trades.index) == ["AAA", "BBB", "CCC"]  # largest notional first
    aaa = trades.loc["AAA"]
    assert aaa["notional"] == pytest.approx(50_000.0)
    assert aaa["expected_return"] == pytest.approx(1e-3 * 0.05 * nav * hold)  # $500
    assert aaa["risk"] == pytest.approx(0.02 * math.sqrt(hold) * 50_000.0)
    want = order_cost(model, 1_000, 50.0, 0.02, 1e6, 0.02)
    assert aaa["cost"] == pytest.approx(want.total)
    # selling a name expected to fall earns: -1.5 % x -5 bp x NAV x 10
    assert trades.loc["BBB", "expected_return"] == pytest.approx(-0.015 * -5e-4 * nav * hold)
    sold = order_cost(model, 10_000 / 20.0, 20.0, 0.01, 5e5, 0.03, sell=True)
    assert trades.loc["CCC", "cost"] == pytest.approx(sold.total)
    np.testing.assert_allclose(trades["net"], trades["expected_return"] - trades["cost"])
    # a name without a quote: its cost is unknown (NaN), never 0
    unquoted = trade_economics(
        pd.Series({"ZZZ": 0.01}), pd.Series(dtype=float), expected, inputs, model, nav
    )
    assert unquoted["cost"].isna().all() and unquoted["net"].isna().all()
