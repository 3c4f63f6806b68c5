"""Options of the simulated market: listed monthly on a fixed strike ladder, priced by
Black-Scholes.

Options expire on the third Friday of each month (the session before when that Friday is a
holiday), 2019-01 to 2029-08, at strikes on :data:`STRIKE_LADDER`; a chain lists the next six
expiries and the strikes 70 %-130 % of the underlying's last close at its usual step. Prices are
Black-Scholes (Black & Scholes, 1973) from the underlying's conditional volatility, annualised,
with a mild skew (higher for lower strikes), and the 10-year yield (TNX / 1000) as the rate;
quotes have a 3 % spread (at least 2 cents). Their conIds encode the contract (underlying
column, expiry month, strike, right), so any process can rebuild an option from its conId alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd

from ibkr_sim.market.calendar import NEW_YORK, exchange_calendar, schedule, to_ns, when
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.paths import panel
from ibkr_sim.market.quotes import Snapshot
from ibkr_sim.universe import Instrument, Universe, stable_int
from ibkr_spec.errors import INVALID_REQUEST, NO_SECURITY_DEFINITION, IBError


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def black_scholes(
    spot: float, strike: float, years: float, rate: float, vol: float, right: str
) -> float:
    """Black-Scholes price of a European call ("C") or put ("P"); intrinsic value at expiry."""
    if years <= 0.0 or vol <= 0.0:
        return max(spot - strike, 0.0) if right == "C" else max(strike - spot, 0.0)
    sd = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / sd
    d2 = d1 - sd
    disc = strike * math.exp(-rate * years)
    if right == "C":
        return spot * _norm_cdf(d1) - disc * _norm_cdf(d2)
    return disc * _norm_cdf(-d2) - spot * _norm_cdf(-d1)


def _strike_step(spot: float) -> float:
    for limit, step in ((25.0, 1.0), (100.0, 2.5), (250.0, 5.0), (1000.0, 10.0)):
        if spot < limit:
            return step
    return 25.0


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def monthly_expiry(year: int, month: int) -> date:
    """The month's standard expiry: its third Friday, or the session before if that's a holiday."""
    day = _third_friday(year, month)
    while not exchange_calendar().is_session(pd.Timestamp(day)):
        day -= timedelta(days=1)
    return day


#: Every listable strike: 0.5 steps to 100, 2.5 to 500, 5 to 2000, 25 to 50000 (2579 strikes).
STRIKE_LADDER = np.round(
    np.concatenate(
        [
            np.arange(1, 201) * 0.5,
            100.0 + np.arange(1, 161) * 2.5,
            500.0 + np.arange(1, 301) * 5.0,
            2000.0 + np.arange(1, 1920) * 25.0,
        ]
    ),
    4,
)
#: Options encode (underlying column, expiry month since 2019-01, strike, right) in the conId, so
#: any process can rebuild the contract from the conId alone (a position's option after restart).
_OPT_BASE = 1_000_000_000
_OPT_MONTHS = 128
_OPT_STRIKES = 4096


def _option_conid(col: int, month_index: int, strike_code: int, right: str) -> int:
    packed = (col * _OPT_MONTHS + month_index) * _OPT_STRIKES + strike_code
    return _OPT_BASE + packed * 2 + (right == "P")


def _strike_code(strike: float) -> int | None:
    i = int(np.searchsorted(STRIKE_LADDER, strike - 1e-6))
    return i if i < len(STRIKE_LADDER) and abs(STRIKE_LADDER[i] - strike) < 1e-6 else None


# -- the market --------------------------------------------------------------------------------


def chain(seed: int, edge: Edge, col: int, as_of: date) -> tuple[list[str], list[float]]:
    """Monthly expiries (third Fridays, next six) and strikes 70 %-130 % of the last close."""
    days = schedule()[0]
    i = max(int(np.searchsorted(days, np.datetime64(as_of, "D"), "right")) - 1, 0)
    spot = float(panel(seed, edge).close[i, col])
    expiries: list[str] = []
    year, month = as_of.year, as_of.month
    while len(expiries) < 6:
        friday = monthly_expiry(year, month)
        if friday > as_of:
            expiries.append(friday.strftime("%Y%m%d"))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    step = _strike_step(spot)
    lo, hi = math.ceil(spot * 0.7 / step), math.floor(spot * 1.3 / step)
    strikes = [round(k * step, 2) for k in range(max(lo, 1), hi + 1)]
    return expiries, [k for k in strikes if _strike_code(k) is not None]


def contract(under: Instrument, col: int, expiry: str, strike: float, right: str) -> Instrument:
    """The listed option on ``under`` (panel column ``col``), OPT with multiplier 100.

    Listed means a monthly expiry (2019-01 .. 2029-08) and a strike on :data:`STRIKE_LADDER`;
    anything else is IB's error 200, as for an unlisted contract; a malformed right, expiry or
    strike is error 321.
    """
    side = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}.get(str(right).upper())
    if side is None:
        raise IBError(INVALID_REQUEST, f"option right must be C or P, got {right!r}")
    try:
        exp = datetime.strptime(expiry, "%Y%m%d").date()
    except (TypeError, ValueError):
        raise IBError(INVALID_REQUEST, f"option expiry must be YYYYMMDD, got {expiry!r}") from None
    if not (isinstance(strike, int | float) and math.isfinite(strike) and strike > 0):
        raise IBError(INVALID_REQUEST, f"option strike must be positive, got {strike!r}")
    month = (exp.year - 2019) * 12 + exp.month - 1
    if not 0 <= month < _OPT_MONTHS or exp != monthly_expiry(exp.year, exp.month):
        raise IBError(
            NO_SECURITY_DEFINITION,
            f"no {under.symbol} option expires on {expiry} (monthly expiries only)",
        )
    code = _strike_code(float(strike))
    if code is None:
        raise IBError(NO_SECURITY_DEFINITION, f"no {under.symbol} option with strike {strike}")
    return _instrument(under, col, month, code, side)


def _instrument(under: Instrument, col: int, month: int, code: int, side: str) -> Instrument:
    exp = monthly_expiry(2019 + month // 12, month % 12 + 1)
    strike = float(STRIKE_LADDER[code])
    return Instrument(
        conid=_option_conid(col, month, code, side),
        symbol=under.symbol,
        sec_type="OPT",
        exchange="SMART",
        primary_exchange="",
        currency="USD",
        name=f"{under.symbol} {exp:%b%d'%y} {strike:g} {'Call' if side == 'C' else 'Put'}",
        sector=under.sector,
        industry=under.industry,
        lot_size=1,
        min_tick=0.01,
        adv=round(under.adv / 2000.0, -1),
        shares_outstanding=0.0,
        multiplier=100.0,
        last_trade_date=exp.strftime("%Y%m%d"),
        strike=strike,
        right=side,
        underlying_conid=under.conid,
    )


def decode(conid: int, conid_of_col: Mapping[int, int], universe: Universe) -> Instrument | None:
    """Rebuild an option from its conId (None when the conId is not a valid option's).

    ``conid_of_col`` maps the market's panel columns to their contracts' conIds.
    """
    packed, put = divmod(conid - _OPT_BASE, 2)
    rest, code = divmod(packed, _OPT_STRIKES)
    col, month = divmod(rest, _OPT_MONTHS)
    if conid < _OPT_BASE or code >= len(STRIKE_LADDER) or col not in conid_of_col:
        return None
    under = universe.by_conid(conid_of_col[col])
    if under.sec_type != "STK":
        return None
    return _instrument(under, col, month, code, "P" if put else "C")


def snapshot(
    seed: int,
    edge: Edge,
    inst: Instrument,
    under: Snapshot,
    under_col: int,
    rate_col: int,
    at: datetime,
) -> Snapshot:
    """The option's quote at ``at`` from its underlying's quote ``under``.

    ``under_col`` is the underlying's panel column (its volatility) and ``rate_col`` the
    10-year yield's (TNX, the rate). High and low price the underlying's extremes; the previous
    close prices the underlying's with one more day to expiry.
    """
    _, j, _ = when(at)
    p = panel(seed, edge)
    base_vol = float(p.sigma[max(j - 1, 0), under_col]) * math.sqrt(252.0)
    rate = float(p.close[max(j - 1, 0), rate_col]) / 1000.0
    expiry_close = datetime.combine(
        datetime.strptime(inst.last_trade_date, "%Y%m%d").date(), time(16), NEW_YORK
    )
    years = max((expiry_close - at).total_seconds(), 0.0) / (365.0 * 86400.0)

    def price(spot: float, extra_days: float = 0.0) -> float:
        skew = 1.0 - 0.8 * math.log(inst.strike / spot)
        vol = base_vol * min(max(skew, 0.6), 2.5)
        return black_scholes(spot, inst.strike, years + extra_days / 365.0, rate, vol, inst.right)

    theo = price(under.last)
    spread = max(0.02, round(0.03 * theo, 2))
    bid = max(math.floor((theo - spread / 2.0) * 100.0 + 1e-9) / 100.0, 0.0)
    ask = round(bid + spread, 2)
    last = round(min(max(theo, bid), ask), 2)
    hi_spot, lo_spot = (under.high, under.low) if inst.right == "C" else (under.low, under.high)
    h = stable_int(seed, inst.conid, to_ns(at) // 60_000_000_000)
    return Snapshot(
        conid=inst.conid,
        time=at.astimezone(UTC),
        bid=bid,
        ask=ask,
        last=last,
        bid_size=float(1 + h % 50),
        ask_size=float(1 + (h >> 8) % 50),
        last_size=float(1 + (h >> 16) % 10),
        volume=float(round(inst.adv * under.volume / max(float(p.adv[under_col]), 1.0))),
        open=round(price(under.open), 2),
        high=max(round(price(hi_spot), 2), last),
        low=min(round(price(lo_spot), 2), last),
        prev_close=round(price(under.prev_close, 1.0), 2),
    )
