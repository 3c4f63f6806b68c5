"""Accounts and margin: the cash and positions ledger, valuation, P&L and the pre-trade what-if.

Positions carry IB's average cost (price x multiplier plus commission, per unit), unrealized
P&L = market value - quantity x average cost, realized P&L on closing fills net of both
commissions (see :mod:`ibkr_spec.commissions`). Positions are marked at the last price clamped
into the bid/ask. Daily P&L is the change since the previous session's close: value now - value
of the start-of-day quantity at the previous close - cash spent on today's trades (commissions
included). Futures are marked to market (no cash changes hands on a trade; their P&L is in net
liquidation, realized P&L settles into cash). Settled cash equals total cash (no settlement lag
is modelled). Margins are Reg-T (:mod:`ibkr_spec.margin`); an order is accepted when its initial
margin after the fill stays within equity with loan value, or does not grow.
"""

from __future__ import annotations

import functools
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from ibkr_sim.exchange.orders import EPS, OrderRequest
from ibkr_sim.market import SimMarket
from ibkr_sim.universe import Instrument
from ibkr_spec.commissions import order_commission
from ibkr_spec.margin import buying_power, position_margin


@dataclass(frozen=True)
class AccountInfo:
    """A paper account: IB account id (``DU...``), whether it is the primary one, base currency."""

    account_id: str
    is_primary: bool
    base_currency: str
    alias: str


@dataclass(frozen=True)
class PositionInfo:
    """A holding marked at the current price; money in the instrument's ``currency``;
    ``realized_pnl`` is today's."""

    conid: int
    quantity: float
    avg_cost: float
    market_price: float
    market_value: float
    unrealized_pnl: float
    realized_pnl: float
    currency: str


@dataclass(frozen=True)
class PnLInfo:
    """Account P&L in base currency: ``daily`` since the previous session's close, ``unrealized``
    on open positions, ``realized`` today."""

    daily: float
    unrealized: float
    realized: float


@dataclass(frozen=True)
class AccountNumbers:
    """IB's account-summary values in the base ``currency`` (Reg-T, see :mod:`ibkr_spec.margin`)."""

    currency: str
    net_liquidation: float
    total_cash: float
    settled_cash: float
    gross_position_value: float
    equity_with_loan: float
    init_margin: float
    maint_margin: float
    available_funds: float
    excess_liquidity: float
    buying_power: float
    cushion: float


@dataclass(frozen=True)
class WhatIf:
    """The pre-trade check of an order (IB whatIf): margins and equity with loan before and after
    the order fills at the expected prices, its commission, and whether IB would accept it."""

    init_margin_before: float
    init_margin_after: float
    maint_margin_before: float
    maint_margin_after: float
    equity_with_loan_before: float
    equity_with_loan_after: float
    commission: float
    min_commission: float
    max_commission: float
    accepted: bool
    warning: str
    currency: str = "USD"


# -- the ledger ----------------------------------------------------------------------------------


@dataclass
class Pos:
    """An open position: signed quantity and what it cost."""

    quantity: float = 0.0
    cost_basis: float = 0.0  # signed quantity x entry price x multiplier, instrument currency
    comm_basis: float = 0.0  # commissions in the average cost of the open quantity


@dataclass
class Book:
    """One account's cash by currency and positions by conId."""

    cash: dict[str, float]
    positions: dict[int, Pos] = field(default_factory=dict)

    def copy(self) -> Book:
        """An independent copy (for what-if)."""
        return Book(dict(self.cash), {k: replace(v) for k, v in self.positions.items()})


def apply_fill(
    book: Book, inst: Instrument, signed_qty: float, price: float, commission: float
) -> float | None:
    """Apply one fill to ``book``; return its realized P&L (None for a purely opening fill).

    Closing quantity realizes (exit value - its share of cost and entry commission - its share of
    this fill's commission); the rest opens at this price. Stocks and options move cash by the
    trade value; futures only by realized P&L; FX converts between the two currencies.
    """
    ccy = inst.currency
    book.cash[ccy] = book.cash.get(ccy, 0.0) - commission
    if inst.sec_type == "CASH":
        book.cash[inst.symbol] = book.cash.get(inst.symbol, 0.0) + signed_qty
        book.cash[ccy] -= signed_qty * price
        return None
    mult = inst.multiplier
    futures = inst.sec_type == "FUT"
    if not futures:
        book.cash[ccy] -= signed_qty * price * mult
    pos = book.positions.setdefault(inst.conid, Pos())
    realized = None
    closing = min(abs(signed_qty), abs(pos.quantity)) if pos.quantity * signed_qty < 0 else 0.0
    if closing > 0:
        frac = closing / abs(pos.quantity)
        basis, comm = pos.cost_basis * frac, pos.comm_basis * frac
        closed_qty = math.copysign(closing, signed_qty)
        gross = -closed_qty * price * mult - basis
        realized = gross - comm - commission * closing / abs(signed_qty)
        if futures:
            book.cash[ccy] += gross
        pos.quantity += closed_qty
        pos.cost_basis -= basis
        pos.comm_basis -= comm
        if abs(pos.quantity) < EPS:
            pos.quantity, pos.cost_basis, pos.comm_basis = 0.0, 0.0, 0.0
    opening = signed_qty - math.copysign(closing, signed_qty)
    if abs(opening) > EPS:
        pos.quantity += opening
        pos.cost_basis += opening * price * mult
        pos.comm_basis += commission * abs(opening) / abs(signed_qty)
    if pos.quantity == 0:
        del book.positions[inst.conid]
    return realized


# -- valuation -----------------------------------------------------------------------------------


def mark(bid: float, ask: float, last: float) -> float:
    """IB-style mark: the last price, clamped into the bid/ask when both are quoted."""
    if bid > 0 and ask > 0 and bid <= ask:
        return min(max(last, bid), ask)
    return last


def fx_rates(market: SimMarket, at: datetime, base: str) -> Callable[[str], float]:
    """Units of ``base`` per unit of a currency at ``at`` (memoised for one call)."""
    base_rate = market.fx_rate(base, at)

    @functools.cache
    def fx(currency: str) -> float:
        return market.fx_rate(currency, at) / base_rate

    return fx


def valuation(
    market: SimMarket, book: Book, at: datetime, base: str = "USD"
) -> tuple[AccountNumbers, list[PositionInfo], dict[int, tuple[float, float]]]:
    """Account numbers, marked positions and {conid: (mark, prev_close)} at ``at``."""
    universe = market.universe
    conids = sorted(book.positions)
    insts = {c: universe.by_conid(c) for c in conids}
    under_ids = sorted({i.underlying_conid for i in insts.values() if i.sec_type == "OPT"})
    snaps = dict(zip(conids + under_ids, market.snapshots(conids + under_ids, at), strict=True))
    fx = fx_rates(market, at, base)

    total_cash = sum(amount * fx(c) for c, amount in book.cash.items())
    net = total_cash
    gross = options = init = maint = 0.0
    rows, marks = [], {}
    for conid in conids:
        inst, pos, s = insts[conid], book.positions[conid], snaps[conid]
        price = mark(s.bid, s.ask, s.last)
        marks[conid] = (price, s.prev_close)
        value = pos.quantity * price * inst.multiplier
        rate = fx(inst.currency)
        if inst.sec_type == "FUT":
            net += (value - pos.cost_basis) * rate
        else:
            net += value * rate
            gross += abs(value) * rate
        if inst.sec_type == "OPT":
            options += value * rate
        under = snaps[inst.underlying_conid].last if inst.sec_type == "OPT" else 0.0
        i, m = position_margin(
            inst.sec_type,
            pos.quantity,
            price,
            inst.multiplier,
            rate,
            under,
            inst.strike,
            inst.right,
        )
        init, maint = init + i, maint + m
        rows.append(
            PositionInfo(
                conid=conid,
                quantity=pos.quantity,
                avg_cost=(pos.cost_basis + pos.comm_basis) / pos.quantity,
                market_price=price,
                market_value=value,
                unrealized_pnl=value - pos.cost_basis - pos.comm_basis,
                realized_pnl=0.0,
                currency=inst.currency,
            )
        )
    ewl = net - options
    available = ewl - init
    excess = ewl - maint
    numbers = AccountNumbers(
        currency=base,
        net_liquidation=net,
        total_cash=total_cash,
        settled_cash=total_cash,
        gross_position_value=gross,
        equity_with_loan=ewl,
        init_margin=init,
        maint_margin=maint,
        available_funds=available,
        excess_liquidity=excess,
        buying_power=buying_power(available),
        cushion=excess / net if net else 0.0,
    )
    return numbers, rows, marks


def pnl(
    market: SimMarket, book: Book, today: list[sqlite3.Row], at: datetime, base: str
) -> PnLInfo:
    """Daily, unrealized and realized P&L of ``book`` given ``today``'s execution rows (those
    after :func:`~ibkr_sim.exchange.hours.day_start`), in ``base``."""
    _, rows, marks = valuation(market, book, at, base)
    universe = market.universe
    fx = fx_rates(market, at, base)

    flows: dict[int, float] = {}
    traded: dict[int, float] = {}
    realized = 0.0
    for e in today:
        inst = universe.by_conid(e["conid"])
        realized += (e["realized_pnl"] or 0.0) * fx(e["commission_currency"])
        if inst.sec_type == "CASH":
            continue
        signed = e["shares"] if e["side"] == "BOT" else -e["shares"]
        traded[e["conid"]] = traded.get(e["conid"], 0.0) + signed
        flow = (signed * e["price"] * e["multiplier"] + e["commission"]) * fx(inst.currency)
        flows[e["conid"]] = flows.get(e["conid"], 0.0) + flow
    daily = 0.0
    for conid in set(flows) | set(book.positions):
        inst = universe.by_conid(conid)
        qty = book.positions[conid].quantity if conid in book.positions else 0.0
        if conid in marks:
            price, prev = marks[conid]
        else:
            s = market.snapshot(conid, at)
            price, prev = mark(s.bid, s.ask, s.last), s.prev_close
        start_qty = qty - traded.get(conid, 0.0)
        value_now = qty * price * inst.multiplier
        value_start = start_qty * prev * inst.multiplier
        daily += (value_now - value_start) * fx(inst.currency) - flows.get(conid, 0.0)
    unrealized = sum((p.unrealized_pnl * fx(p.currency) for p in rows), 0.0)
    return PnLInfo(daily=daily, unrealized=unrealized, realized=realized)


def realized_by_conid(today: list[sqlite3.Row]) -> dict[int, float]:
    """Today's realized P&L per conId (instrument currency) from today's execution rows."""
    realized: dict[int, float] = {}
    for e in today:
        realized[e["conid"]] = realized.get(e["conid"], 0.0) + (e["realized_pnl"] or 0.0)
    return realized


def what_if(
    market: SimMarket,
    book: Book,
    base: str,
    req: OrderRequest,
    inst: Instrument,
    fills: list[tuple[float, float]],
    month_volume: float,
    at: datetime,
) -> WhatIf:
    """``req``'s effect on ``book`` if it filled as ``fills`` (price, quantity) at ``at``, its
    commission at the account's ``month_volume`` (shares this month), and whether IB accepts it."""
    before = valuation(market, book, at, base)[0]
    qty = sum(q for _, q in fills)
    value = sum(p * q for p, q in fills) * inst.multiplier
    sell = req.action == "SELL"
    commission = order_commission(inst.sec_type, qty, value, sell, month_volume)
    prices = [p for p, _ in fills]
    low, high = (
        order_commission(inst.sec_type, qty, p * qty * inst.multiplier, sell, month_volume)
        for p in (min(prices), max(prices))
    )
    after_book = book.copy()
    sign = 1.0 if req.action == "BUY" else -1.0
    for price, q in fills:
        apply_fill(after_book, inst, sign * q, price, commission * q / qty)
    after = valuation(market, after_book, at, base)[0]
    accepted = (
        after.init_margin <= after.equity_with_loan + EPS
        or after.init_margin <= before.init_margin + EPS
    )
    warning = ""
    if not accepted:
        warning = (
            f"insufficient buying power: initial margin after the order "
            f"{after.init_margin:,.2f} {base} would exceed equity with loan value "
            f"{after.equity_with_loan:,.2f} {base} (buying power {before.buying_power:,.2f})"
        )
    return WhatIf(
        init_margin_before=before.init_margin,
        init_margin_after=after.init_margin,
        maint_margin_before=before.maint_margin,
        maint_margin_after=after.maint_margin,
        equity_with_loan_before=before.equity_with_loan,
        equity_with_loan_after=after.equity_with_loan,
        commission=commission,
        min_commission=min(low, high),
        max_commission=max(low, high),
        accepted=accepted,
        warning=warning,
        currency=base,
    )
