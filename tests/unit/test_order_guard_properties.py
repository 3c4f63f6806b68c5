"""Properties of the order guard over generated orders (hypothesis): order types, sides,
quantities and prices from sensible to absurd (a buy stop at a millionth of the market, a sell
limit at a thousand times it), on stocks and an option of the in-process simulator.

- Any order the guard accepts fits the caps *at the market*: quantity x reference price x
  multiplier <= the value cap and <= the share of net liquidation, with the reference price at
  least the price the order would meet (the ask for a buy, the bid for a sell).
- The guard accepts exactly the orders a plain restatement of its rules accepts, and refuses the
  others with the first rule they break (price distance, quantity, value, share of NLV).
- :func:`reference_price` and :func:`is_marketable` agree with an independent restatement over
  arbitrary quotes, one-sided, crossed, zero, NaN or missing.

Only ``assess`` runs against the simulator (nothing is placed), so the account and the rate
counters stay as they were and every example sees the same market.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ibkr_assets.broker import BrokerSettings, OrderLimits, OrderRefused, connect
from ibkr_assets.broker.guard import is_marketable, reference_price
from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.models import Contract, Order, Quote

SESSION = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # NYSE open, live simulated quotes
LIMITS = OrderLimits(
    principal="pipeline",
    setting_prefix="IBKR_PIPELINE_",
    max_quantity=500,
    max_notional=60_000.0,
    max_nlv_share=0.025,  # about $27,000 of the simulator's $1.08M: binds before the value cap
    orders_per_minute=1_000,
    orders_per_day=10_000,
    max_daily_notional=1e12,
)
DISTANCES = {"default": 0.20, "far": 1_000.0}  # IBKR_MAX_PRICE_DISTANCE
EXAMPLES = settings(max_examples=60, deadline=None)


@dataclass(frozen=True)
class World:
    """One guarded simulator and the market it sees (fixed: the clock is pinned)."""

    broker: GuardedBroker
    max_price_distance: float
    instruments: dict[str, tuple[Contract, Quote]]
    net_liquidation: float


def _world(data_dir: Path, max_price_distance: float) -> World:
    b = connect(
        BrokerSettings(
            backend="sim",
            data_dir=data_dir,
            sim_now=SESSION,
            sim_symbols=120,
            readonly=False,
            kill_switch=False,
            allow_symbols=[],
            max_price_distance=max_price_distance,
        ),
        LIMITS,
    )
    aapl = b.resolve("AAPL")
    chain = b.option_chain(aapl)
    mid = b.quotes([aapl])[0].mid
    strike = min(chain.strikes, key=lambda k: abs(k - mid))
    contracts = {
        "AAPL": aapl,
        "XOM": b.resolve("XOM"),
        "SPY": b.resolve("SPY"),
        "AAPL call": b.option_contract(aapl, chain.expirations[0], strike, "C"),
    }
    quotes = b.quotes(list(contracts.values()))
    return World(
        broker=b,
        max_price_distance=max_price_distance,
        instruments={k: (c, q) for (k, c), q in zip(contracts.items(), quotes, strict=True)},
        net_liquidation=b.account_summary().net_liquidation,
    )


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, World]:
    return {
        name: _world(tmp_path_factory.mktemp(f"guard-{name}"), distance)
        for name, distance in DISTANCES.items()
    }


# -- generated orders ---------------------------------------------------------------------------
_FACTORS = st.one_of(
    st.floats(0.7, 1.3),  # near the market: mostly within the distance rule
    st.floats(1e-6, 1e3),  # anywhere, absurd included
    st.sampled_from([1e-6, 0.5, 0.79, 0.8, 0.81, 1.0, 1.19, 1.2, 1.21, 2.0, 1e3]),
)
_QUANTITIES = st.one_of(st.integers(1, 60), st.integers(1, 800), st.floats(0.01, 800.0))


@st.composite
def _orders(draw: st.DrawFn, world: World) -> Order:
    """An order on one of the world's instruments, its prices a factor of the market's mid
    (or an absolute $0.01 / $1)."""
    contract, quote = world.instruments[draw(st.sampled_from(sorted(world.instruments)))]
    order_type = draw(st.sampled_from(["MKT", "LMT", "STP", "STP LMT"]))

    def price() -> float:
        absolute = st.sampled_from([0.01, 1.0])
        return draw(st.one_of(_FACTORS.map(lambda f: quote.mid * f), absolute))

    return Order(
        contract=contract,
        action=draw(st.sampled_from(["BUY", "SELL"])),
        quantity=draw(_QUANTITIES),
        order_type=order_type,
        limit_price=price() if order_type in ("LMT", "STP LMT") else None,
        stop_price=price() if order_type in ("STP", "STP LMT") else None,
    )


def _market_side(order: Order, quote: Quote) -> float:
    """The simulator's quotes are two-sided: a buy meets the ask, a sell the bid."""
    return quote.ask if order.action == "BUY" else quote.bid


def _expected_refusal(world: World, order: Order) -> str | None:
    """The guard's rules restated for a fresh two-sided quote: the first one broken, or None."""
    _, quote = world.instruments[_key(world, order.contract)]
    mid = quote.mid
    for own in (order.limit_price, order.stop_price):
        if own is not None and abs(own / mid - 1.0) > world.max_price_distance:
            return "max_price_distance"
    if order.quantity > LIMITS.max_quantity:
        return "max_quantity"
    value = _market_value(order, quote)
    if value > LIMITS.max_notional:
        return "max_notional"
    if value / world.net_liquidation > LIMITS.max_nlv_share:
        return "max_nlv_share"
    return None


def _market_value(order: Order, quote: Quote) -> float:
    """Quantity x (the highest of the order's prices and the market it meets) x multiplier."""
    own = [p for p in (order.limit_price, order.stop_price) if p is not None]
    return order.quantity * max([*own, _market_side(order, quote)]) * order.contract.multiplier


def _key(world: World, contract: Contract) -> str:
    return next(k for k, (c, _) in world.instruments.items() if c.conid == contract.conid)


@EXAMPLES
@given(data=st.data())
def test_accepted_orders_fit_the_caps_at_the_market(worlds, data):
    world = worlds["far"]  # the distance rule out of the way: the caps alone stand
    order = data.draw(_orders(world))
    _, quote = world.instruments[_key(world, order.contract)]
    try:
        assessment = world.broker.assess(order)
    except OrderRefused:
        event("refused")
        return
    event("accepted")
    side = _market_side(order, quote)
    assert assessment.reference_price >= side
    for own in (order.limit_price, order.stop_price):
        assert own is None or assessment.reference_price >= own
    value = order.quantity * assessment.reference_price * order.contract.multiplier
    assert value == pytest.approx(assessment.notional, rel=1e-12)
    assert value <= LIMITS.max_notional
    assert value <= LIMITS.max_nlv_share * world.net_liquidation * (1 + 1e-12)
    assert _market_value(order, quote) <= LIMITS.max_notional


@EXAMPLES
@given(name=st.sampled_from(sorted(DISTANCES)), data=st.data())
def test_the_guard_accepts_exactly_what_its_rules_allow(worlds, name, data):
    world = worlds[name]
    order = data.draw(_orders(world))
    expected = _expected_refusal(world, order)
    try:
        world.broker.assess(order)
    except OrderRefused as exc:
        event(f"refused: {exc.limit}")
        assert exc.limit == expected, str(exc)
    else:
        event("accepted")
        assert expected is None, f"accepted, but the rules say {expected}: {order}"


# -- the pure functions against a restatement ---------------------------------------------------
_CONTRACT = Contract(conid=1, symbol="XYZ", sec_type="STK")
#: A quote's price: usable three times in four, else missing, zero, IB's -1 or NaN.
_SIDE = st.one_of(
    st.floats(0.01, 2_000.0),
    st.floats(0.01, 2_000.0),
    st.floats(0.01, 2_000.0),
    st.sampled_from([None, 0.0, -1.0, math.nan]),
)


@st.composite
def _quotes(draw: st.DrawFn) -> Quote | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None  # no market data: one case in four
    return Quote(
        contract=_CONTRACT,
        time=SESSION,
        bid=draw(_SIDE),
        ask=draw(_SIDE),
        last=draw(_SIDE),
        close=draw(_SIDE),
    )


@st.composite
def _orders_and_quotes(draw: st.DrawFn) -> tuple[Order, Quote | None]:
    """A quote, and an order whose prices are anywhere or exactly one of the quote's prices
    (the boundaries of "marketable": a limit or stop at the touch)."""
    quote = draw(_quotes())
    sides = (quote.bid, quote.ask, quote.last, quote.close) if quote else ()
    on_the_quote = [p for p in sides if _usable(p)]
    prices = st.floats(0.01, 3_000.0)
    if on_the_quote:  # two in three on the quote
        prices = st.one_of(prices, st.sampled_from(on_the_quote), st.sampled_from(on_the_quote))
    order_type = draw(st.sampled_from(["MKT", "LMT", "STP", "STP LMT"]))
    order = Order(
        contract=_CONTRACT,
        action=draw(st.sampled_from(["BUY", "SELL"])),
        quantity=1,
        order_type=order_type,
        limit_price=draw(prices) if order_type in ("LMT", "STP LMT") else None,
        stop_price=draw(prices) if order_type in ("STP", "STP LMT") else None,
    )
    return order, quote


def _usable(price: float | None) -> bool:
    return price is not None and math.isfinite(price) and price > 0


def _met_price(order: Order, quote: Quote | None) -> float | None:
    """The price the order meets: its side of the book (ask to buy, bid to sell) when usable,
    else the last trade, else the previous close. (The midpoint, the quote's other fallback,
    needs both sides, so it is never usable when the order's own side is not.)"""
    if quote is None:
        return None
    candidates = [quote.ask if order.action == "BUY" else quote.bid, quote.last, quote.close]
    return next((p for p in candidates if _usable(p)), None)


def _trades_at_once(order: Order, quote: Quote | None) -> bool:
    """Market orders always; otherwise every condition of the order type must hold against
    the price met: a buy's stop at or below it and limit at or above it, a sell the mirror."""
    if order.order_type == "MKT":
        return True
    met = _met_price(order, quote)
    if met is None:
        return False
    buy = order.action == "BUY"
    limit, stop = order.limit_price, order.stop_price
    limit_met = limit is None or (met <= limit if buy else met >= limit)
    stop_met = stop is None or (met >= stop if buy else met <= stop)
    return limit_met and stop_met


@EXAMPLES
@given(case=_orders_and_quotes())
def test_reference_price_is_the_highest_of_the_orders_prices_and_the_price_met(case):
    order, quote = case
    own = (order.limit_price, order.stop_price, _met_price(order, quote))
    prices = [p for p in own if p is not None]
    assert reference_price(order, quote) == (max(prices) if prices else None)


@EXAMPLES
@given(case=_orders_and_quotes())
def test_is_marketable_matches_the_restatement(case):
    order, quote = case
    assert is_marketable(order, quote) is _trades_at_once(order, quote)
