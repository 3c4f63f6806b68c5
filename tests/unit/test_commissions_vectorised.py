"""IB's tiered stock commission over arrays: the same USD as the scalar call, order by order."""

from __future__ import annotations

import numpy as np
import pytest

from ibkr_spec.commissions import stock_commission


@pytest.mark.parametrize("sell", [False, True])
@pytest.mark.parametrize("month_shares", [0.0, 300_000.0, 5_000_000.0, 2e7, 1e8, 2e9])
def test_arrays_price_each_order_as_the_scalar_call(sell: bool, month_shares: float) -> None:
    # a $20 order (the 1 % cap under the minimum), the minimum, per-share, FINRA's cap, none
    shares = np.array([10.0, 100.0, 1_000.0, 100_000.0, 0.0, 37.5])
    value = np.array([20.0, 5_000.0, 50_000.0, 1_000_000.0, 0.0, 4_125.0])
    got = stock_commission(shares, value, sell, month_shares)
    assert isinstance(got, np.ndarray) and got.shape == shares.shape
    expected = [
        stock_commission(float(q), float(v), sell, month_shares)
        for q, v in zip(shares, value, strict=True)
    ]
    assert got.tolist() == expected
    assert got[4] == 0.0 and got[0] == pytest.approx(
        0.20 + 0.0032 * 10 + (sell and 20 * 27.8e-6 + 0.00166)
    )


def test_a_scalar_order_gives_a_float_and_a_scalar_value_broadcasts() -> None:
    assert type(stock_commission(100, 5_000.0, False)) is float
    shares = np.array([100.0, 1_000.0])
    both = stock_commission(shares, 10_000.0, True)
    assert both.tolist() == [stock_commission(q, 10_000.0, True) for q in (100.0, 1_000.0)]
