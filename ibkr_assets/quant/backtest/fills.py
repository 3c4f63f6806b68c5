"""How an order sent before the open fills during the session, from the day's OHLCV bar: the
paper exchange's rules (``ibkr_sim/exchange/matching.py``, which follows IB) at daily
resolution, and each fill's costs from one cost function.

The daily job sends its orders at 07:00 New York, before the open, as DAY orders. The paper
exchange holds them (``PreSubmitted``) until the open, then matches them at every minute its
quotes reach them, and cancels what is left at the close. Here, from the day's bar (``open``,
``high``, ``low``, ``close`` and ``volume`` in shares) and the pre-open half spread ``h`` (USD
per share; the quotes are the path ± ``h``):

* **Market order**: fills at the open, a buy at the open ask ``open + h``, a sell at the bid.
* **Limit order, marketable at the open** (a buy whose limit is at or above the open ask, a sell
  at or below the open bid): fills at the open ask (bid), as a marketable limit walks the book
  from the touch; the market impact the cost function charges is added to the price, but never
  beyond the limit (the book walk stops there).
* **Limit order not marketable at the open**: rests, and fills at its limit only if the day's
  path brings the quote to it — the ask down to a buy's limit (``low + h <= limit``), the bid up
  to a sell's (``high - h >= limit``). The intraday path is continuous and spans
  ``[low, high]``, so the bar's extremes decide whether it was reached. A resting limit fills
  at its limit, never at a better price (the paper exchange fills it the minute the quote
  reaches it); it pays the commission but no spread and no impact (the price the trader set
  already bounds what the fill costs: a modelling choice).
* **Participation** (partial fills): the paper exchange's ``ib-paper`` profile lets the orders on
  one side take at most ``participation`` (10 %) of each minute's volume. A day's bar does not
  say how much volume traded while the quote was at or through the limit; it is approximated by
  the day's volume times the share of the day's range ``[low, high]`` on the fillable side of
  the limit's level (``limit - h`` for a buy, ``limit + h`` for a sell; the whole range for a
  market order) — the volume spread evenly over the range the path covered, a modelling choice.
  The order fills at most ``floor(participation x that volume)`` shares; the rest expires at the
  close (DAY).

Costs: :data:`OrderCosts` is the one cost model (:func:`ibkr_assets.quant.costs.order_cost`:
commission, spread, impact, in USD) with its model bound by the caller; the book
(:func:`~ibkr_assets.quant.backtest.book.simulate`) adds nothing of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ibkr_assets.quant.costs import OrderCost

#: The paper exchange's participation share of a minute's volume (``ib-paper`` profile,
#: ``ibkr_sim/gateway/profile.py``): a modelling choice of the simulator, not an IB rule.
PAPER_PARTICIPATION = 0.10

FillKind = Literal["open", "limit", "none"]


#: ``costs(shares, price, half_spread, adv_shares, daily_vol, month_shares, sell) -> OrderCost``:
#: the one cost model (:func:`ibkr_assets.quant.costs.order_cost` with its model bound); ``price``
#: and ``half_spread`` USD per share, ``adv_shares`` the average daily volume in shares,
#: ``daily_vol`` the daily return volatility (fraction), ``month_shares`` the shares traded so
#: far this month (IB's tiers).
OrderCosts = Callable[[float, float, float, float, float, float, bool], OrderCost]


@dataclass(frozen=True)
class Bar:
    """One session's daily bar: prices USD per share, ``volume`` in shares."""

    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class Fill:
    """How much of an order filled and at what price.

    ``kind``: ``open`` (at the open, taking liquidity), ``limit`` (resting, at its limit) or
    ``none``. ``price``: the execution price before commission, USD per share (spread and impact
    included); ``commission``, ``spread`` and ``impact`` in USD; ``cap``: the participation cap
    in shares (inf without one).
    """

    kind: FillKind
    ordered: float
    quantity: float
    price: float
    commission: float
    spread: float
    impact: float
    cap: float

    @property
    def cost(self) -> float:
        """Commission, spread and impact, USD."""
        return self.commission + self.spread + self.impact


def _fillable_share(bar: Bar, level: float | None, buy: bool) -> float:
    """Share of the day's range on the fillable side of ``level`` (the path's price at which
    the quote reaches the limit; None: a market order, the whole range)."""
    if level is None:
        return 1.0
    span = bar.high - bar.low
    if span <= 0:
        return 1.0 if (bar.low <= level if buy else bar.high >= level) else 0.0
    beyond = level - bar.low if buy else bar.high - level
    return min(max(beyond / span, 0.0), 1.0)


def participation_cap(
    bar: Bar, buy: bool, limit: float | None, half_spread: float, participation: float | None
) -> float:
    """Shares the order may fill over the day (see the module docstring): ``participation`` x
    the day's volume x the share of the range where the quote is at or through ``limit``; inf
    when ``participation`` is None."""
    if participation is None:
        return math.inf
    level = None if limit is None else (limit - half_spread if buy else limit + half_spread)
    return math.floor(participation * bar.volume * _fillable_share(bar, level, buy))


def fill_order(
    buy: bool,
    quantity: float,
    limit: float | None,
    half_spread: float,
    bar: Bar,
    costs: OrderCosts,
    *,
    adv_shares: float,
    daily_vol: float,
    month_shares: float,
    participation: float | None = PAPER_PARTICIPATION,
) -> Fill:
    """The fill of a DAY order for ``quantity`` shares (a buy when ``buy``) sent before the
    open, at ``limit`` (None: market) with the pre-open ``half_spread`` (USD per share), over
    the session ``bar`` (see the module docstring for the rules). ``costs`` prices the fill;
    ``adv_shares``, ``daily_vol`` and ``month_shares`` are its inputs."""
    if quantity <= 0:
        raise ValueError(f"fill_order: quantity must be positive, got {quantity}")
    if half_spread < 0 or not math.isfinite(half_spread):
        raise ValueError(f"fill_order: half_spread must be >= 0 USD, got {half_spread}")
    sign = 1.0 if buy else -1.0
    touch = bar.open + sign * half_spread  # the open ask for a buy, the open bid for a sell
    marketable = limit is None or (touch <= limit if buy else touch >= limit)
    if not marketable:
        reached = bar.low + half_spread <= limit if buy else bar.high - half_spread >= limit
        if not reached:
            return Fill("none", quantity, 0.0, math.nan, 0.0, 0.0, 0.0, 0.0)
    cap = participation_cap(bar, buy, limit, half_spread, participation)
    filled = float(min(quantity, cap))
    if filled <= 0:
        return Fill("none", quantity, 0.0, math.nan, 0.0, 0.0, 0.0, cap)
    if not marketable:
        priced = costs(filled, limit, 0.0, adv_shares, daily_vol, month_shares, not buy)
        return Fill("limit", quantity, filled, float(limit), priced.commission, 0.0, 0.0, cap)
    priced = costs(filled, bar.open, half_spread, adv_shares, daily_vol, month_shares, not buy)
    price = bar.open + sign * (priced.spread + priced.impact) / filled
    spread, impact = priced.spread, priced.impact
    if limit is not None and (price > limit if buy else price < limit):
        price = limit  # the walk stops at the limit: the impact beyond it is not paid
        paid = abs(limit - bar.open) * filled
        spread, impact = min(spread, paid), max(paid - spread, 0.0)
    return Fill("open", quantity, filled, price, priced.commission, spread, impact, cap)
