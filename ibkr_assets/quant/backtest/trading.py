"""One replayed session's trading, as the daily job's order stages and the paper exchange do it:
the orders (:func:`day_orders`: the order diff with the round lot of each name's price, then the
what-if size-down against the account's Reg-T initial margin) and their fills over the session
(:func:`fill_orders`, each by :func:`~ibkr_assets.quant.backtest.fills.fill_order`).

IB's rules come in from the assets layer (:class:`Execution`): the quant layer imports none of
ours. The what-if loop is :func:`~ibkr_assets.quant.orders.resize_until_margin_ok`, the one the
``what_if_orders`` asset runs with the broker's what-if as its check; here the check is the
account's initial margin after the order fills (IB's Reg-T rule, passed in), each order against
the pre-trade account, as the live what-ifs are asked one order at a time before any fills.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from ibkr_assets.quant.backtest.fills import Bar, Fill, OrderCosts, fill_order
from ibkr_assets.quant.backtest.replay import ReplaySettings
from ibkr_assets.quant.costs import CostModel
from ibkr_assets.quant.decision import by_symbol, column_at, diff_orders, first_rows
from ibkr_assets.quant.orders import ProposedOrder, resize_until_margin_ok

#: round_lot(price USD) -> shares (``ibkr_spec.lots.round_lot``)
RoundLot = Callable[[float], int]
#: initial_margin(signed shares, price USD) -> USD of one stock position (IB's Reg-T rule)
InitialMargin = Callable[[float, float], float]

#: The columns of :attr:`BacktestResult.trades` (one row per order sent).
TRADE_COLUMNS = (
    "session",
    "symbol",
    "side",
    "order_type",
    "limit_price",
    "ordered",
    "filled",
    "price",
    "fill",
    "commission",
    "spread",
    "impact",
    "whatif_attempts",
    "whatif_decision",
)


@dataclass(frozen=True)
class Execution:
    """IB's rules the replay trades by, passed in by the caller: ``costs``, the one cost model
    (commission, spread, impact, USD); ``round_lot``, the round lot at a price (None: the
    universe's ``lot_size`` column); ``initial_margin``, a stock position's Reg-T initial
    margin (None: no what-if, every order passes); ``cost_model``, the model ``costs`` is bound
    to, whose per-name rates the optimiser charges (None: its flat ``turnover_cost``)."""

    costs: OrderCosts
    round_lot: RoundLot | None = None
    initial_margin: InitialMargin | None = None
    cost_model: CostModel | None = None


@dataclass(frozen=True)
class SizedOrder:
    """An order as it goes to the exchange, with its what-if history."""

    order: ProposedOrder
    ordered_before_whatif: int
    attempts: int
    decision: str


def lots_at(universe: pd.DataFrame, prices: pd.Series, round_lot: RoundLot | None) -> pd.DataFrame:
    """``universe`` with each name's ``lot_size`` the round lot at its price in ``prices``
    (names without a price keep theirs); unchanged without ``round_lot``."""
    if round_lot is None:
        return universe
    priced = prices.reindex(universe["symbol"].astype(str)).to_numpy()
    lots = [round_lot(p) if math.isfinite(p) and p > 0 else None for p in priced]
    current = universe["lot_size"].to_numpy()
    return universe.assign(
        lot_size=[c if lot is None else lot for c, lot in zip(current, lots, strict=True)]
    )


def margin_what_if(
    held: pd.Series, prices: pd.Series, cash: float, initial_margin: InitialMargin
) -> Callable[[ProposedOrder], tuple[bool, str]]:
    """The what-if check of :func:`resize_until_margin_ok` on the account holding ``held``
    shares at ``prices`` (the previous close, USD) and ``cash`` (USD): the order passes when the
    available funds after it fills — equity with loan value less the Reg-T initial margin of
    every position — stay non-negative. The order is valued at its limit (the mid for a market
    order)."""
    value = held * prices.reindex(held.index)
    requirement = {s: initial_margin(float(q), float(prices[s])) for s, q in held.items()}
    equity, initial = cash + float(value.sum()), float(sum(requirement.values()))

    def check(order: ProposedOrder) -> tuple[bool, str]:
        sign = 1.0 if order.action == "BUY" else -1.0
        price = order.limit_price if order.limit_price is not None else order.mid
        before = float(held.get(order.symbol, 0.0))
        after = before + sign * order.quantity
        held_value = before * float(prices.get(order.symbol, price))
        equity_after = equity - sign * order.quantity * price - held_value + after * price
        initial_after = (
            initial - requirement.get(order.symbol, 0.0) + initial_margin(after, float(price))
        )
        available = equity_after - initial_after
        detail = (
            f"initial margin {initial:,.0f} -> {initial_after:,.0f}, "
            f"available funds after {available:,.0f}"
        )
        return available >= 0, detail

    return check


def day_orders(
    held: pd.Series,
    weights: pd.Series,
    nav: float,
    cash: float,
    prices: pd.Series,
    quotes: pd.DataFrame,
    universe: pd.DataFrame,
    settings: ReplaySettings,
    execution: Execution,
) -> list[SizedOrder]:
    """The orders the daily job would send: :func:`~ibkr_assets.quant.decision.diff_orders`
    from ``held`` shares to ``weights`` of ``nav`` (lots at ``prices``, the previous close),
    then each through the what-if size-down against the account (``cash`` USD). Only the names
    held or targeted can have an order: their round lots are the only ones looked up."""
    trading = set(held.index.astype(str)) | set(weights.index[weights.to_numpy() != 0].astype(str))
    universe = universe.loc[universe["symbol"].isin(trading).to_numpy()]
    lotted = lots_at(universe, prices, execution.round_lot if settings.even_lots else None)
    diff = diff_orders(
        held,
        weights,
        nav,
        quotes,
        lotted,
        min_notional=settings.min_notional,
        even_lots=settings.even_lots,
        limit_spread_fraction=settings.limit_spread_fraction,
        order_type=settings.order_type,
    )
    if execution.initial_margin is None:
        return [SizedOrder(o, o.quantity, 0, "accepted") for o in diff.orders]
    check = margin_what_if(held, prices, cash, execution.initial_margin)
    lots = by_symbol(lotted, "lot_size")
    sized = []
    for order in diff.orders:
        result = resize_until_margin_ok(
            order,
            check,
            shrink=1 - settings.whatif_shrink,
            max_tries=settings.whatif_max_attempts,
            lot_size=int(lots.get(order.symbol, 1)) if settings.even_lots else 1,
            min_notional=settings.min_notional,
            on_failure=settings.whatif_on_failure,
        )
        if result.order is not None:
            sized.append(
                SizedOrder(result.order, order.quantity, len(result.attempts), result.decision)
            )
    return sized


def fill_orders(
    session: date,
    orders: list[SizedOrder],
    bars: pd.DataFrame,
    quotes: pd.DataFrame,
    adv_shares: pd.Series,
    daily_vol: pd.Series,
    month_shares: float,
    costs: OrderCosts,
    participation: float | None,
) -> tuple[list[Fill], list[dict]]:
    """Each order's fill over ``session`` (``bars``: the session's open, high, low, close and
    volume by symbol; the half spread from the pre-open ``quotes``, scaled to the open; a name
    without a bar that session fills nothing) and the trade rows (:data:`TRADE_COLUMNS`).
    ``month_shares`` grows with each fill (IB's tiers)."""
    symbols = pd.Index([sized.order.symbol for sized in orders], dtype="object")
    quoted = first_rows(quotes["symbol"], symbols)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = 0.5 * column_at(quotes, "spread", quoted) / column_at(quotes, "mid", quoted)
    relative[~(np.isfinite(relative) & (relative >= 0))] = np.nan
    relative[quoted < 0] = 0.0  # no quote: no spread
    fields = ["open", "high", "low", "close", "volume"]
    values = bars[fields].to_numpy(dtype="float64", na_value=np.nan)
    ohlcv = np.vstack([values, np.full(len(fields), np.nan)])[first_rows(bars.index, symbols)]
    adv_of = dict(zip(adv_shares.index, adv_shares.tolist(), strict=True))
    vol_of = dict(zip(daily_vol.index, daily_vol.tolist(), strict=True))
    fills, rows = [], []
    for sized, half, b in zip(orders, relative.tolist(), ohlcv.tolist(), strict=True):
        order = sized.order
        bar = Bar(*b)  # NaN: no bar that session
        if not all(math.isfinite(x) for x in (bar.open, bar.high, bar.low, bar.volume)):
            # no trade that session (a halt, a gap in the bars): the DAY order expires unfilled
            fill = Fill("none", order.quantity, 0.0, math.nan, 0.0, 0.0, 0.0, 0.0)
        else:
            fill = fill_order(
                order.action == "BUY",
                float(order.quantity),
                order.limit_price,
                (half or 0.0) * bar.open,
                bar,
                costs,
                adv_shares=adv_of.get(order.symbol, math.nan),
                daily_vol=vol_of.get(order.symbol, math.nan),
                month_shares=month_shares,
                participation=participation,
            )
        month_shares += fill.quantity
        fills.append(fill)
        rows.append(
            {
                "session": pd.Timestamp(session),
                "symbol": order.symbol,
                "side": order.action,
                "order_type": "LMT" if order.limit_price is not None else "MKT",
                "limit_price": order.limit_price if order.limit_price is not None else math.nan,
                "ordered": float(order.quantity),
                "filled": fill.quantity,
                "price": fill.price,
                "fill": fill.kind,
                "commission": fill.commission,
                "spread": fill.spread,
                "impact": fill.impact,
                "whatif_attempts": sized.attempts,
                "whatif_decision": sized.decision,
            }
        )
    return fills, rows


def session_bars(bars: pd.DataFrame, sessions: list[date]) -> dict[pd.Timestamp, pd.DataFrame]:
    """Each of ``sessions``' daily bars (long OHLCV, ``symbol`` and ``session`` columns) as a
    frame indexed by symbol."""
    wanted = bars.loc[bars["session"].isin([pd.Timestamp(s) for s in sessions])]
    return {
        pd.Timestamp(day): frame.set_index("symbol")
        for day, frame in wanted.groupby("session", sort=True)
    }


@dataclass(frozen=True)
class SessionTrades:
    """One session's trading: the book after it (``cash`` USD, ``shares`` by symbol), the
    month's shares traded so far, the costs (USD), the notional traded (USD, both sides, at the
    fill prices), the orders sent and the trade rows (:data:`TRADE_COLUMNS`)."""

    cash: float
    shares: pd.Series
    month_shares: float
    commission: float
    spread: float
    impact: float
    traded: float
    orders: int
    rows: list[dict]


def trade_session(
    session: date,
    shares: pd.Series,
    cash: float,
    nav: float,
    weights: pd.Series,
    prices: pd.Series,
    quotes: pd.DataFrame,
    universe: pd.DataFrame,
    bars: pd.DataFrame,
    features: pd.DataFrame,
    daily_vol: pd.Series,
    month_shares: float,
    settings: ReplaySettings,
    execution: Execution,
) -> SessionTrades:
    """The daily job's orders for ``session`` (:func:`day_orders`, from ``shares`` held and
    ``cash`` to ``weights`` of ``nav``; ``prices`` the previous closes) filled over the
    session's ``bars`` (:func:`fill_orders`). The cost model's inputs: ADV in shares from the
    feature matrix's dollar ``adv`` over its ``price`` (the universe's reported ``adv`` where
    the matrix has none), ``daily_vol`` the names' daily volatility (a name outside it, an
    unmodelled holding being sold, is charged the median: a modelling choice)."""
    held = shares[shares != 0]
    orders = day_orders(held, weights, nav, cash, prices, quotes, universe, settings, execution)
    names = pd.Index([o.order.symbol for o in orders]).unique()  # the inputs of these only
    measured = first_rows(features["symbol"], names)
    with np.errstate(divide="ignore", invalid="ignore"):
        adv = column_at(features, "adv", measured) / column_at(features, "price", measured)
    reported = column_at(universe, "adv", first_rows(universe["symbol"], names))
    adv_shares = pd.Series(np.where(np.isnan(adv), reported, adv), index=names)
    vol = daily_vol.reindex(names).fillna(float(daily_vol.median()))
    fills, rows = fill_orders(
        session,
        orders,
        bars,
        quotes,
        adv_shares,
        vol,
        month_shares,
        execution.costs,
        settings.participation,
    )
    after = dict(zip(shares.index, shares.tolist(), strict=True))
    commission = spread = impact = traded = 0.0
    for sized, fill in zip(orders, fills, strict=True):
        if fill.quantity <= 0:
            continue
        sign = 1.0 if sized.order.action == "BUY" else -1.0
        cash -= sign * fill.quantity * fill.price + fill.commission
        after[sized.order.symbol] = after.get(sized.order.symbol, 0.0) + sign * fill.quantity
        month_shares += fill.quantity
        commission += fill.commission
        spread += fill.spread
        impact += fill.impact
        traded += fill.quantity * fill.price
    added = list(after)[len(shares) :]  # symbols bought new, in fill order
    index = shares.index.append(pd.Index(added, dtype="object")) if added else shares.index
    book = pd.Series(list(after.values()), index=index, dtype="float64", name=shares.name)
    return SessionTrades(
        cash, book, month_shares, commission, spread, impact, traded, len(orders), rows
    )
