import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.orders import (
    ProposedOrder,
    limit_price,
    order_ref,
    propose_orders,
    resize_until_margin_ok,
)

QUOTES = pd.DataFrame(
    {
        "bid": [99.9, 49.98, 19.99, np.nan],
        "ask": [100.1, 50.02, 20.01, np.nan],
        "price": [100.0, 50.0, 20.0, 10.0],
    },
    index=["AAA", "BBB", "CCC", "DDD"],
)


def test_diff_to_targets_with_limits_and_rounding_towards_zero():
    current = pd.Series({"AAA": 100.0, "BBB": 50.0, "DDD": 30.0})
    targets = pd.Series({"AAA": 0.05, "BBB": 0.0533, "CCC": 0.02})
    diff = propose_orders(current, targets, 100_000.0, QUOTES, limit_spread_fraction=0.25)
    by = {o.symbol: o for o in diff.orders}
    # AAA: 5000/100 = 50 target -> sell 50; BBB: 5330/50 = 106.6 -> buy 56 (not 57)
    assert (by["AAA"].action, by["AAA"].quantity) == ("SELL", 50)
    assert (by["BBB"].action, by["BBB"].quantity) == ("BUY", 56)
    assert (by["CCC"].action, by["CCC"].quantity) == ("BUY", 100)
    # DDD held, not targeted: full exit at the last price, flagged.
    assert (by["DDD"].action, by["DDD"].quantity) == ("SELL", 30)
    assert "exit" in by["DDD"].reason and "no two-sided quote" in by["DDD"].reason
    assert by["AAA"].limit_price == pytest.approx(100.0 - 0.25 * 0.2)
    assert by["BBB"].limit_price == pytest.approx(50.01)  # 50 + 0.25*0.04 on the cent
    assert by["BBB"].notional == pytest.approx(56 * 50.0)
    assert [o.action for o in diff.orders] == ["SELL", "SELL", "BUY", "BUY"]
    frame = diff.frame()
    assert list(frame["symbol"]) == ["AAA", "DDD", "BBB", "CCC"]


def test_min_notional_even_lots_and_market_orders():
    current = pd.Series({"AAA": 0.0})
    targets = pd.Series({"AAA": 0.0099, "BBB": 0.031})
    diff = propose_orders(
        current,
        targets,
        100_000.0,
        QUOTES,
        lot_sizes={"AAA": 100, "BBB": 100},
        min_notional=500,
        even_lots=True,
        order_type="MKT",
    )
    # AAA: 9.9 shares < one lot of 100 -> skipped; BBB: 62 shares -> 0 lots -> skipped
    assert diff.orders == []
    assert {s.symbol for s in diff.skipped} == {"AAA", "BBB"}
    diff2 = propose_orders(
        {},
        {"BBB": 0.2},
        100_000.0,
        QUOTES,
        lot_sizes={"BBB": 100},
        even_lots=True,
        order_type="MKT",
    )
    assert diff2.orders[0].quantity == 400 and diff2.orders[0].limit_price is None
    small = propose_orders({}, {"CCC": 0.004}, 100_000.0, QUOTES, min_notional=500)
    assert small.orders == [] and "notional 400.00 < 500" in small.skipped[0].reason


def test_bad_inputs_named():
    with pytest.raises(ValueError, match=r"NaN or infinite target weight for \['AAA'\]"):
        propose_orders({}, {"AAA": np.nan}, 1e5, QUOTES)
    with pytest.raises(ValueError, match="no quote for ZZZ"):
        propose_orders({}, {"ZZZ": 0.1}, 1e5, QUOTES)
    with pytest.raises(ValueError, match="net liquidation must be positive"):
        propose_orders({}, {"AAA": 0.1}, 0.0, QUOTES)
    q = QUOTES.assign(price=[100.0, 50.0, 20.0, np.nan])
    with pytest.raises(ValueError, match="no usable price for DDD"):
        propose_orders({}, {"DDD": 0.1}, 1e5, q)
    with pytest.raises(ValueError, match="no quote for AAA"):
        propose_orders({}, {"AAA": 0.1}, 1e5, QUOTES.iloc[:0])
    twice = pd.concat([QUOTES, QUOTES.iloc[[1]]])
    with pytest.raises(ValueError, match=rf"one row per symbol; repeated: \['{QUOTES.index[1]}'\]"):
        propose_orders({}, {"AAA": 0.1}, 1e5, twice)


def test_limit_price_and_order_ref():
    assert limit_price("BUY", 10.0, 0.04, 0.5) == pytest.approx(10.02)
    assert limit_price("SELL", 10.0, 0.04, 0.5) == pytest.approx(9.98)
    ref = order_ref("2026-11-24", "aapl", "buy", 100)
    assert ref == order_ref("2026-11-24", "AAPL", "BUY", 100.0)
    assert ref.startswith("ibkr-agent:2026-11-24:") and len(ref.split(":")[-1]) == 12
    assert ref != order_ref("2026-11-24", "AAPL", "BUY", 101)
    assert ref != order_ref("2026-11-25", "AAPL", "BUY", 100)
    assert ref != order_ref("2026-11-24", "AAPL", "SELL", 100)


def _order(q: int = 1000) -> ProposedOrder:
    return ProposedOrder("AAA", "BUY", q, 100.05, 100.0, q * 100.0, 0, q, 0.1, "test")


def test_resize_until_margin_ok_records_each_decision():
    check = lambda o: (o.quantity <= 600, f"margin for {o.quantity}")  # noqa: E731
    res = resize_until_margin_ok(_order(), check, shrink=0.2, max_tries=5, lot_size=10)
    assert res.decision == "resized"
    assert [a.quantity for a in res.attempts] == [1000, 800, 640, 510]
    assert [a.passed for a in res.attempts] == [False, False, False, True]
    assert res.order.quantity == 510 and res.order.notional == pytest.approx(51_000)
    ok = resize_until_margin_ok(_order(100), check)
    assert ok.decision == "accepted" and len(ok.attempts) == 1
    never = lambda o: (False, "insufficient margin")  # noqa: E731
    dropped = resize_until_margin_ok(_order(), never, max_tries=3)
    assert dropped.order is None and dropped.decision == "dropped"
    assert [a.quantity for a in dropped.attempts] == [1000, 800, 640]
    kept = resize_until_margin_ok(_order(), never, max_tries=2, on_failure="keep")
    assert kept.decision == "kept_failing" and kept.order.quantity == 800
    tiny = resize_until_margin_ok(_order(3), never, max_tries=10)
    assert [a.quantity for a in tiny.attempts] == [3, 2, 1] and tiny.order is None
    floor = resize_until_margin_ok(_order(10), never, max_tries=10, min_notional=700)
    assert [a.quantity for a in floor.attempts] == [10, 8] and floor.decision == "dropped"


def test_the_ticket_keeps_the_orders_of_names_already_held():
    """A held name's rebalance is an order on the ticket, not "at target": the proposed-orders
    table once overwrote every held name's order (a set-precedence slip), so a book could never
    be cut — a levered account's sells vanished."""
    from ibkr_assets.assets.execution import propose_orders as proposed_table
    from ibkr_assets.decide_config import DecideConfig

    snapshot = pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "CASH"],
            "conid": [1, 2, 0],
            "sec_type": ["STK", "STK", "CASH"],
            "quantity": [1_000.0, 500.0, 50_000.0],
            "market_value": [100_000.0, 25_000.0, 50_000.0],
        }
    )
    targets = pd.DataFrame({"symbol": ["AAA", "BBB", "CCC"], "weight": [0.0, 0.25, 0.10]})
    quotes = pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "CCC"],
            "bid": [99.95, 49.95, 19.99],
            "ask": [100.05, 50.05, 20.01],
            "last": [100.0, 50.0, 20.0],
            "close": [100.0, 50.0, 20.0],
        }
    )
    universe = pd.DataFrame({"symbol": ["AAA", "BBB", "CCC"], "conid": [1, 2, 3], "lot_size": 1})
    frame, _ = proposed_table("2026-11-30", DecideConfig(), targets, snapshot, quotes, universe)
    orders = frame.set_index("symbol")
    assert orders.loc["AAA", "action"] == "SELL" and orders.loc["AAA", "quantity"] == 1_000
    # 25% of 175k at $50 = 875 shares, 500 held: 375, down to the round lot of 100 at $50
    assert orders.loc["BBB", "action"] == "BUY" and orders.loc["BBB", "lot_size"] == 100
    assert orders.loc["BBB", "quantity"] == 300 and orders.loc["CCC", "action"] == "BUY"


def test_the_ticket_trades_ibs_tiered_round_lots_whatever_the_backend_reports():
    """The backends report a lot of 1; US round lots are tiered by price (100 / 40 / 10 / 1
    shares at <= $250 / $1,000 / $10,000 / above), as the backtest trades: a $1,379 stock's lot
    is 10 shares."""
    from ibkr_assets.assets.execution import propose_orders as proposed_table
    from ibkr_assets.decide_config import DecideConfig

    snapshot = pd.DataFrame(
        {
            "symbol": ["CASH"],
            "conid": [0],
            "sec_type": ["CASH"],
            "quantity": [1_000_000.0],
            "market_value": [1_000_000.0],
        }
    )
    targets = pd.DataFrame({"symbol": ["BIG", "MID"], "weight": [0.05, 0.05]})
    quotes = pd.DataFrame(
        {
            "symbol": ["BIG", "MID"],
            "bid": [1378.5, 399.9],
            "ask": [1379.5, 400.1],
            "last": [1379.0, 400.0],
            "close": [1379.0, 400.0],
        }
    )
    universe = pd.DataFrame({"symbol": ["BIG", "MID"], "conid": [1, 2], "lot_size": 1})
    frame, _ = proposed_table("2026-11-30", DecideConfig(), targets, snapshot, quotes, universe)
    orders = frame.set_index("symbol")
    assert orders.loc["BIG", "lot_size"] == 10 and orders.loc["MID", "lot_size"] == 40
    # $50,000 / $1,379 = 36.3 shares -> 30; $50,000 / $400 = 125 -> 120
    assert orders.loc["BIG", "quantity"] == 30 and orders.loc["MID", "quantity"] == 120
    odd = proposed_table(
        "2026-11-30", DecideConfig(even_lots=False), targets, snapshot, quotes, universe
    )[0].set_index("symbol")
    assert odd.loc["BIG", "quantity"] == 36 and odd.loc["BIG", "lot_size"] == 10
