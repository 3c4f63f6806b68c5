"""The paper exchange's pure arithmetic, hand-computed: IB's tiered stock commissions and
the option, FX and regulatory fees, Reg T margin per position, average cost and realized P&L
of fills (reversals included), walking the book within a limit.
"""

from __future__ import annotations

import numpy as np
import pytest

from ibkr_sim.exchange import Book, apply_fill, walk_book
from ibkr_sim.market import SimMarket
from ibkr_spec.commissions import order_commission, stock_commission, stock_tier_rate
from ibkr_spec.margin import buying_power, position_margin


def test_tiered_stock_commission_against_hand_computed_numbers() -> None:
    # IB 0.35 minimum + (exchange 0.0030 + clearing 0.0002) x 100
    assert stock_commission(100, 5_000.0, sell=False) == pytest.approx(0.35 + 0.32)
    # 1000 x 0.0035 + 1000 x 0.0032
    assert stock_commission(1_000, 50_000.0, sell=False) == pytest.approx(3.50 + 3.20)
    # a $20 order: the 1 % maximum (0.20) is below the minimum and wins
    assert stock_commission(10, 20.0, sell=False) == pytest.approx(0.20 + 0.032)
    # second tier once 300k shares traded this month
    assert stock_commission(1_000, 50_000.0, False, month_shares=500_000) == pytest.approx(5.20)
    # a sale adds SEC (27.80 per million) and FINRA TAF (0.000166 / share)
    assert stock_commission(1_000, 50_000.0, sell=True) == pytest.approx(
        6.70 + 50_000 * 27.8e-6 + 0.166
    )
    # FINRA TAF is capped at 8.30 per order
    assert stock_commission(100_000, 1_000_000.0, sell=True) == pytest.approx(
        350.0 + 320.0 + 27.80 + 8.30
    )
    rates = [stock_tier_rate(v) for v in (0, 299_999, 300_000, 3e6, 2e7, 1e8, 5e8)]
    np.testing.assert_allclose(rates, [0.0035, 0.0035, 0.0020, 0.0015, 0.0010, 0.0005, 0.0005])
    assert order_commission("OPT", 1, 250.0, False) == pytest.approx(1.00)
    assert order_commission("OPT", 3, 750.0, False) == pytest.approx(1.95)
    assert order_commission("CASH", 10_000, 11_500.0, False) == pytest.approx(2.00)
    assert order_commission("CASH", 1e6, 1.15e6, False) == pytest.approx(23.0)
    with pytest.raises(ValueError, match="IND"):
        order_commission("IND", 1, 1.0, False)


def test_reg_t_margin_per_position() -> None:
    assert position_margin("STK", 100, 50.0) == pytest.approx((2_500.0, 1_250.0))
    assert position_margin("STK", -100, 50.0) == pytest.approx((2_500.0, 1_500.0))
    assert position_margin("OPT", 2, 3.0, 100) == (0.0, 0.0)
    # short OTM call: premium 200 + max(20 % of 10,000 - 1,000 OTM, 10 % of 10,000)
    assert position_margin("OPT", -1, 2.0, 100, 1.0, 100.0, 110.0, "C") == pytest.approx(
        (1_200.0, 1_200.0)
    )
    # short ITM put: premium 1,200 + 20 % of 10,000
    assert position_margin("OPT", -1, 12.0, 100, 1.0, 100.0, 110.0, "P") == pytest.approx(
        (3_200.0, 3_200.0)
    )
    assert position_margin("FUT", -1, 70.0, 1000) == pytest.approx((8_400.0, 7_000.0))
    assert buying_power(1_000.0) == 2_000.0 and buying_power(-5.0) == 0.0


def test_apply_fill_average_cost_realized_pnl_and_reversal(market: SimMarket) -> None:
    inst = market.universe.lookup("AAPL")
    book = Book({"USD": 10_000.0})
    assert apply_fill(book, inst, 100, 10.0, 1.0) is None
    pos = book.positions[inst.conid]
    assert (pos.cost_basis + pos.comm_basis) / pos.quantity == pytest.approx(10.01)
    # sell 40 at 12: 480 - 40/100 of (1000 + 1) - 1 commission
    assert apply_fill(book, inst, -40, 12.0, 1.0) == pytest.approx(480 - 400.4 - 1.0)
    assert (pos.cost_basis + pos.comm_basis) / pos.quantity == pytest.approx(10.01)
    # sell 100 at 12 from +60: closes 60 (realized), opens a 40 short with 40 % of the commission
    realized = apply_fill(book, inst, -100, 12.0, 1.0)
    assert realized == pytest.approx(720 - 600.6 - 0.6)
    assert pos.quantity == -40
    assert (pos.cost_basis + pos.comm_basis) / pos.quantity == pytest.approx((480 - 0.4) / 40)
    assert book.cash["USD"] == pytest.approx(10_000 - 1_001 + 479 + 1_199)
    assert apply_fill(book, inst, 40, 11.0, 1.0) == pytest.approx(480 - 0.4 - 440 - 1.0)
    assert inst.conid not in book.positions


def test_walk_book_takes_levels_in_order_within_the_limit() -> None:
    asks = [(10.00, 100.0, "A"), (10.01, 200.0, "B"), (10.03, 300.0, "C")]
    assert walk_book(asks, 250, buy=True) == [(10.00, 100.0, "A"), (10.01, 150.0, "B")]
    assert walk_book(asks, 250, buy=True, taken=50) == [(10.00, 50.0, "A"), (10.01, 200.0, "B")]
    assert walk_book(asks, 1_000, buy=True, limit=10.01) == [
        (10.00, 100.0, "A"),
        (10.01, 200.0, "B"),
    ]
    assert walk_book(asks, 100, buy=True, limit=10.01, taken=300) == []
    bids = [(9.99, 100.0, "A"), (9.98, 100.0, "B")]
    assert walk_book(bids, 150, buy=False, limit=9.985) == [(9.99, 100.0, "A")]
