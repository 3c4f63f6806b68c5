"""Analysis tools: portfolio health, single-stock risk and trend, position sizing, allocation.

The numbers a trader checks before acting, computed from the broker's positions, account values
and daily bars with numpy/pandas and TA-Lib:

* concentration: largest weight, top-5 weight and the Herfindahl-Hirschman index
  ``HHI = sum(w_i^2)`` of position weights (1/HHI = effective number of positions);
* leverage = gross position value / net liquidation; cushion = excess liquidity / net liquidation
  (IB margins the account when it goes negative);
* volatility = standard deviation of daily log returns x sqrt(252); beta = cov(r, r_m) / var(r_m)
  against a benchmark (SPY) on common dates; ATR(14) and RSI(14) are Wilder's (TA-Lib); maximum
  drawdown = min(P_t / max_{s<=t} P_s - 1);
* position size for a fixed-fractional risk budget (Van Tharp, "Trade Your Way to Financial
  Freedom", ch. 12): shares = risk budget / (ATR multiple x ATR), capped by available funds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import numpy as np
import pandas as pd
import talib
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ibkr_assets.broker import Broker
from ibkr_assets.broker.models import Bar, Position
from ibkr_spec import historical  # IB's duration / bar-size rules, shared with the backends
from ibkr_spec.errors import SpecError
from mcp_server.context import add_tool, call_broker, resolve
from mcp_server.portfolio import AccountId, account_for
from mcp_server.reference import Symbol

if TYPE_CHECKING:
    from mcp_server.server import IBKRServer

CATEGORY = "analysis"
TRADING_DAYS = 252


# -- pure functions -----------------------------------------------------------------------------
def bars_frame(bars: list[Bar]) -> pd.DataFrame:
    """OHLCV bars as a float frame indexed by bar time."""
    if not bars:
        return pd.DataFrame(columns=["open", "high", "low", "close", "volume"], dtype="float64")
    frame = pd.DataFrame(
        {
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        },
        index=pd.DatetimeIndex([b.session or b.time.date() for b in bars], name="date"),
        dtype="float64",
    )
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def annualised_volatility(close: pd.Series) -> float:
    """Standard deviation of daily log returns (ddof=1) x sqrt(252)."""
    r = np.log(close.to_numpy(dtype="float64"))
    r = np.diff(r)
    return float(np.std(r, ddof=1) * math.sqrt(TRADING_DAYS)) if len(r) > 1 else float("nan")


def beta(close: pd.Series, benchmark: pd.Series) -> float:
    """Beta of daily simple returns against the benchmark's, on common dates."""
    both = pd.concat([close, benchmark], axis=1, join="inner").pct_change().dropna()
    if len(both) < 3:
        return float("nan")
    cov = np.cov(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy(), ddof=1)
    return float(cov[0, 1] / cov[1, 1]) if cov[1, 1] > 0 else float("nan")


def max_drawdown(close: pd.Series) -> float:
    """Largest peak-to-trough fall, as a negative fraction (0 = never below a previous high)."""
    p = close.to_numpy(dtype="float64")
    return float(np.min(p / np.maximum.accumulate(p) - 1.0)) if len(p) else float("nan")


def concentration(weights: np.ndarray) -> tuple[float, float, float]:
    """(largest |weight|, top-5 |weight| sum, HHI) of position weights (of gross exposure)."""
    w = np.sort(np.abs(np.asarray(weights, dtype="float64")))[::-1]
    if w.size == 0 or w.sum() == 0:
        return 0.0, 0.0, 0.0
    w = w / w.sum()
    return float(w[0]), float(w[:5].sum()), float(np.sum(w**2))


def fixed_fractional_shares(
    risk_budget: float, stop_distance: float, price: float, available_funds: float, lot: int = 1
) -> int:
    """Shares whose loss at the stop equals the risk budget, capped by available funds, in lots."""
    if stop_distance <= 0 or price <= 0:
        return 0
    by_risk = risk_budget / stop_distance
    by_cash = max(available_funds, 0.0) / price
    lots = math.floor(min(by_risk, by_cash) / lot)
    return max(lots, 0) * lot


# -- results ------------------------------------------------------------------------------------
class Weight(BaseModel):
    """A bucket of the portfolio and its share of net liquidation."""

    name: str
    market_value: float
    weight: float = Field(description="market value / net liquidation")


class PortfolioHealth(BaseModel):
    """Concentration, leverage, cash, margin cushion and sector mix of an account."""

    account_id: str
    net_liquidation: float
    positions: int
    largest_weight: float = Field(description="of gross exposure")
    top5_weight: float
    hhi: float = Field(description="Herfindahl index of weights; 1/hhi = effective positions")
    leverage: float
    cash_share: float = Field(description="total cash / net liquidation")
    cushion: float = Field(description="excess liquidity / net liquidation")
    sectors: list[Weight]
    warnings: list[str]


class StockAnalysis(BaseModel):
    """Risk and trend of one stock from daily bars."""

    symbol: str
    last_close: float
    bars: int
    volatility: float = Field(description="annualised, from daily log returns")
    beta: float = Field(description="vs the benchmark, daily returns")
    benchmark: str
    atr14: float = Field(description="Wilder ATR(14), price units")
    atr_pct: float = Field(description="ATR / close")
    rsi14: float
    max_drawdown: float
    return_1m: float
    return_3m: float
    sma50: float
    sma200: float | None
    trend: str = Field(description="up / down / sideways from price vs SMA50 vs SMA200")


class PositionSize(BaseModel):
    """Shares to buy so the loss at the stop equals the risk budget."""

    symbol: str
    price: float
    atr14: float
    stop_distance: float
    stop_price: float
    risk_budget: float = Field(description="account currency")
    shares: int
    notional: float
    share_of_net_liq: float
    limited_by: str = Field(description="risk or available_funds")


class Allocation(BaseModel):
    """Where the money is: positions, sectors, currencies and cash."""

    account_id: str
    net_liquidation: float
    by_position: list[Weight]
    by_sector: list[Weight]
    by_currency: list[Weight]
    cash: float
    settled_cash: float | None
    available_funds: float
    buying_power: float


# -- tools --------------------------------------------------------------------------------------
def _weights(items: dict[str, float], net_liq: float) -> list[Weight]:
    rows = [
        Weight(name=k, market_value=v, weight=v / net_liq if net_liq else 0.0)
        for k, v in items.items()
    ]
    return sorted(rows, key=lambda w: -abs(w.market_value))


def _sector_values(b: Broker, rows: list[Position]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in rows:
        sector = b.contract_details(p.contract).sector or "Unclassified"
        out[sector] = out.get(sector, 0.0) + (p.market_value or 0.0)
    return out


async def portfolio_health(ctx: Context, account_id: AccountId = None) -> PortfolioHealth:
    """Concentration (largest, top-5, HHI), leverage, cash, margin cushion and sector mix,
    with plain-language warnings.

    Examples:
        portfolio_health()
    """
    acct = account_for(ctx, account_id)

    def run(b: Broker) -> PortfolioHealth:
        s = b.account_summary(acct)
        rows = b.positions(s.account_id)
        largest, top5, hhi = concentration(np.array([p.market_value or 0.0 for p in rows]))
        nl = s.net_liquidation
        warnings = []
        if largest > 0.25:
            warnings.append(f"largest position is {largest:.0%} of gross exposure")
        if s.leverage > 1.5:
            warnings.append(f"leverage {s.leverage:.2f}x")
        if s.cushion < 0.10:
            warnings.append(f"margin cushion {s.cushion:.0%} is below 10%")
        sectors = _weights(_sector_values(b, rows), nl)
        if sectors and abs(sectors[0].weight) > 0.40:
            warnings.append(f"{sectors[0].name} is {sectors[0].weight:.0%} of net liquidation")
        return PortfolioHealth(
            account_id=s.account_id,
            net_liquidation=nl,
            positions=len(rows),
            largest_weight=largest,
            top5_weight=top5,
            hhi=hhi,
            leverage=s.leverage,
            cash_share=s.total_cash / nl if nl else 0.0,
            cushion=s.cushion,
            sectors=sectors,
            warnings=warnings,
        )

    return await call_broker(ctx, run)


def _analyse(b: Broker, symbol: str, benchmark: str, duration: str) -> StockAnalysis:
    c = resolve(b, symbol)
    df = bars_frame(b.history(c, duration=duration, bar_size="1 day"))
    if len(df) < 30:
        raise ToolError(f"{c.symbol}: only {len(df)} daily bars; need at least 30")
    bench = bars_frame(b.history(resolve(b, benchmark), duration=duration, bar_size="1 day"))
    high, low, close = (df[k].to_numpy() for k in ("high", "low", "close"))
    atr = float(talib.ATR(high, low, close, timeperiod=14)[-1])
    rsi = float(talib.RSI(close, timeperiod=14)[-1])
    sma50 = float(df["close"].tail(50).mean())
    sma200 = float(df["close"].tail(200).mean()) if len(df) >= 200 else None
    last = float(close[-1])
    if sma200 is not None and last > sma50 > sma200:
        trend = "up"
    elif sma200 is not None and last < sma50 < sma200:
        trend = "down"
    elif sma200 is None:
        trend = "up" if last > sma50 else "down"
    else:
        trend = "sideways"
    return StockAnalysis(
        symbol=c.symbol,
        last_close=last,
        bars=len(df),
        volatility=annualised_volatility(df["close"]),
        beta=beta(df["close"], bench["close"]),
        benchmark=benchmark,
        atr14=atr,
        atr_pct=atr / last,
        rsi14=rsi,
        max_drawdown=max_drawdown(df["close"]),
        return_1m=float(close[-1] / close[-22] - 1.0),
        return_3m=float(close[-1] / close[max(-64, -len(close))] - 1.0),
        sma50=sma50,
        sma200=sma200,
        trend=trend,
    )


async def stock_analysis(
    ctx: Context,
    symbol: Symbol,
    benchmark: Annotated[str, Field(min_length=1, max_length=12)] = "SPY",
    duration: Annotated[str, Field(pattern=r"^\d+ [MY]$", description='"6 M", "1 Y"')] = "1 Y",
) -> StockAnalysis:
    """Volatility, beta, ATR, RSI, drawdown, 1M/3M returns and trend of one stock.

    Examples:
        stock_analysis(symbol="NVDA") -> {"volatility": 0.45, "beta": 1.7, "rsi14": 61.2, ...}
    """
    try:
        historical.check_span(duration, "1 day")
    except SpecError as exc:
        raise ToolError(exc.message) from None
    return await call_broker(ctx, _analyse, symbol, benchmark, duration)


async def position_size(
    ctx: Context,
    symbol: Symbol,
    risk_pct: Annotated[
        float, Field(gt=0, le=5, description="% of net liquidation to lose at the stop")
    ] = 0.5,
    atr_multiple: Annotated[float, Field(gt=0, le=10, description="stop = k x ATR(14)")] = 2.0,
    account_id: AccountId = None,
) -> PositionSize:
    """Shares to buy so that a stop k x ATR below the price loses risk_pct of net liquidation,
    capped by available funds and rounded down to the lot size.

    Examples:
        position_size(symbol="AAPL", risk_pct=0.5, atr_multiple=2)
    """
    acct = account_for(ctx, account_id)

    def run(b: Broker) -> PositionSize:
        c = resolve(b, symbol)
        s = b.account_summary(acct)
        df = bars_frame(b.history(c, duration="3 M", bar_size="1 day"))
        if len(df) < 15:
            raise ToolError(f"{c.symbol}: only {len(df)} daily bars; need 15 for ATR(14)")
        atr = float(
            talib.ATR(df["high"].to_numpy(), df["low"].to_numpy(), df["close"].to_numpy(), 14)[-1]
        )
        q = b.quotes([c])[0]
        price = q.ask or q.price
        if not price:
            raise ToolError(f"{c.symbol}: no price to size against")
        lot = b.contract_details(c).lot_size
        budget = s.net_liquidation * risk_pct / 100.0
        stop = atr_multiple * atr
        shares = fixed_fractional_shares(budget, stop, price, s.available_funds, lot)
        by_cash = max(s.available_funds, 0.0) / price
        limited = "risk" if budget / stop <= by_cash else "available_funds"
        return PositionSize(
            symbol=c.symbol,
            price=price,
            atr14=atr,
            stop_distance=stop,
            stop_price=price - stop,
            risk_budget=budget,
            shares=shares,
            notional=shares * price,
            share_of_net_liq=shares * price / s.net_liquidation if s.net_liquidation else 0.0,
            limited_by=limited,
        )

    return await call_broker(ctx, run)


async def allocation(ctx: Context, account_id: AccountId = None) -> Allocation:
    """Allocation by position, sector and currency, and the cash picture (settled cash,
    available funds, buying power).

    Examples:
        allocation()
    """
    acct = account_for(ctx, account_id)

    def run(b: Broker) -> Allocation:
        s = b.account_summary(acct)
        rows = b.positions(s.account_id)
        nl = s.net_liquidation
        by_ccy: dict[str, float] = {}
        for line in b.cash_balances(s.account_id):
            by_ccy[line.currency] = by_ccy.get(line.currency, 0.0) + line.value_in_base
        for p in rows:
            by_ccy[p.currency] = by_ccy.get(p.currency, 0.0) + (p.market_value or 0.0)
        return Allocation(
            account_id=s.account_id,
            net_liquidation=nl,
            by_position=_weights({p.contract.symbol: p.market_value or 0.0 for p in rows}, nl),
            by_sector=_weights(_sector_values(b, rows), nl),
            by_currency=_weights(by_ccy, nl),
            cash=s.total_cash,
            settled_cash=s.settled_cash,
            available_funds=s.available_funds,
            buying_power=s.buying_power,
        )

    return await call_broker(ctx, run)


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server."""
    for fn in (portfolio_health, stock_analysis, position_size, allocation):
        add_tool(server, fn, CATEGORY)
