"""Analysis tools: portfolio health, single-stock risk and trend, position sizing, allocation.

The numbers a trader checks before acting, from the broker's positions, account values and
daily bars. Every formula is :mod:`ibkr_assets.quant`'s, so a number here means what it means in
the pipeline:

* concentration (:func:`~ibkr_assets.quant.risk_metrics.concentration`): the largest position
  and the five largest as shares of net liquidation (the compliance gate's measure) and the
  Herfindahl-Hirschman index ``HHI = sum(s_i^2)`` of the shares ``s_i`` of gross exposure
  (1/HHI = effective number of positions); sector mix
  (:func:`~ibkr_assets.quant.risk_metrics.sector_exposure`);
* leverage = gross position value / net liquidation; cushion = excess liquidity / net
  liquidation (IB margins the account when it goes negative), both as the broker reports them;
* volatility (:func:`~ibkr_assets.quant.performance.annualised_volatility` of daily log
  returns); maximum drawdown (:func:`~ibkr_assets.quant.performance.max_drawdown`), a
  **positive** fraction of the running peak, as in the backtest; beta
  (:func:`~ibkr_assets.quant.performance.beta` of the daily simple returns), trailing returns
  and trend (:mod:`ibkr_assets.quant.stock_risk`); Wilder's ATR(14) and RSI(14)
  (:func:`~ibkr_assets.quant.technical.technical_indicators`, TA-Lib);
* position size for a fixed-fractional risk budget
  (:func:`~ibkr_assets.quant.stock_risk.fixed_fractional_size`), priced at the market as the
  order guard values an order (:func:`~ibkr_assets.broker.guard.reference_price`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import pandas as pd
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ibkr_assets.broker import Broker
from ibkr_assets.broker.guard import reference_price
from ibkr_assets.broker.models import AccountSummary, Bar, Order, Position
from ibkr_assets.quant.performance import annualised_volatility, max_drawdown
from ibkr_assets.quant.risk_metrics import concentration, sector_exposure
from ibkr_assets.quant.stock_risk import (
    beta,
    fixed_fractional_size,
    log_returns,
    trailing_return,
    trend,
)
from ibkr_assets.quant.technical import technical_indicators
from ibkr_spec import historical  # IB's duration / bar-size rules, shared with the backends
from ibkr_spec.errors import SpecError
from mcp_server.context import add_tool, call_broker, resolve
from mcp_server.portfolio import AccountId, account_for
from mcp_server.reference import Symbol

if TYPE_CHECKING:
    from mcp_server.app import IBKRServer

CATEGORY = "analysis"
T = TypeVar("T")
OHLCV = ("open", "high", "low", "close", "volume")
#: Sessions in the trailing returns: about one and three months.
MONTH_SESSIONS, QUARTER_SESSIONS = 21, 63


def bars_frame(bars: list[Bar]) -> pd.DataFrame:
    """OHLCV bars as a float frame indexed by bar date (the session for daily bars), oldest
    first; of two bars on one date the later in the list is kept."""
    frame = pd.DataFrame(
        [[getattr(b, k) for k in OHLCV] for b in bars],
        columns=list(OHLCV),
        index=pd.DatetimeIndex([b.session or b.time.date() for b in bars], name="date"),
        dtype="float64",
    )
    return frame[~frame.index.duplicated(keep="last")].sort_index()


# -- results ------------------------------------------------------------------------------------
class Weight(BaseModel):
    """A bucket of the portfolio and its share of net liquidation."""

    name: str
    market_value: float = Field(description="account currency")
    weight: float | None = Field(
        description="market value / net liquidation, a fraction (None when net liquidation is "
        "not positive)"
    )


class PortfolioHealth(BaseModel):
    """Concentration, leverage, cash, margin cushion and sector mix of an account. Shares of net
    liquidation are None for an account whose net liquidation is zero or negative (in deficit):
    the report still names its positions' concentration (``hhi``) and leads its warnings with
    the deficit."""

    account_id: str
    net_liquidation: float = Field(description="account currency")
    positions: int
    largest_weight: float | None = Field(
        description="largest |market value| / net liquidation, a fraction (the gate's measure)"
    )
    top5_weight: float | None = Field(
        description="five largest |market values| summed / net liquidation, a fraction"
    )
    hhi: float = Field(
        description="Herfindahl index of the shares of gross exposure, 0-1; "
        "1/hhi = effective number of positions"
    )
    leverage: float = Field(description="gross position value / net liquidation (IB's)")
    cash_share: float | None = Field(description="total cash / net liquidation")
    cushion: float = Field(description="excess liquidity / net liquidation (IB's)")
    sectors: list[Weight]
    warnings: list[str]


class StockAnalysis(BaseModel):
    """Risk and trend of one stock from daily bars."""

    symbol: str
    last_close: float = Field(description="price units")
    bars: int = Field(description="daily bars analysed")
    volatility: float = Field(
        description="annualised: sample std of daily log returns x sqrt(252), a fraction a year"
    )
    beta: float = Field(description="vs the benchmark, daily simple returns on common dates")
    benchmark: str
    atr14: float = Field(description="Wilder ATR(14), price units")
    atr_pct: float = Field(description="ATR / close, a fraction")
    rsi14: float = Field(description="Wilder RSI(14), 0-100")
    max_drawdown: float = Field(
        description="largest fall of the close from its running peak over the bars analysed, "
        "a positive fraction of the peak (0.25 = 25% below it; 0 = never below an earlier "
        "high); the backtest's convention"
    )
    return_1m: float = Field(description="close / close 21 sessions earlier - 1, a fraction")
    return_3m: float = Field(
        description="close / close 63 sessions earlier (or the first bar) - 1, a fraction"
    )
    sma50: float = Field(description="mean of the last 50 closes (all, if fewer), price units")
    sma200: float | None = Field(description="mean of the last 200 closes; None if fewer bars")
    trend: str = Field(description="up / down / sideways from price vs SMA50 vs SMA200")


class PositionSize(BaseModel):
    """Shares to buy so the loss at the stop equals the risk budget."""

    symbol: str
    price: float = Field(description="the ask (else last): what a buy would pay, price units")
    atr14: float = Field(description="Wilder ATR(14), price units")
    stop_distance: float = Field(description="atr_multiple x ATR(14), price units")
    stop_price: float
    risk_budget: float = Field(description="account currency")
    shares: int
    notional: float = Field(description="shares x price, account currency")
    share_of_net_liq: float = Field(description="notional / net liquidation, a fraction")
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
    """Buckets as shares of net liquidation, largest |market value| first."""
    rows = [
        Weight(name=k, market_value=v, weight=v / net_liq if net_liq > 0 else None)
        for k, v in items.items()
    ]
    return sorted(rows, key=lambda w: -abs(w.market_value))


def _market_values(rows: list[Position]) -> pd.Series:
    """Market value of each position (account currency; unknown = 0), by conId."""
    return pd.Series(
        [p.market_value or 0.0 for p in rows],
        index=[str(p.contract.conid) for p in rows],
        dtype="float64",
    )


def _sector_values(b: Broker, rows: list[Position]) -> dict[str, float]:
    """Net market value per sector ("Unclassified" when IB gives none)."""
    sectors = pd.Series(
        [b.contract_details(p.contract).sector or "Unclassified" for p in rows],
        index=[str(p.contract.conid) for p in rows],
        dtype="object",
    )
    by_sector = sector_exposure(_market_values(rows), sectors)
    return {str(k): float(v) for k, v in by_sector["net"].items()}


async def _on_account(
    ctx: Context,
    account_id: str | None,
    view: Callable[[Broker, AccountSummary, list[Position]], T],
) -> T:
    """``view(broker, summary, positions)`` of the account (the session's or the primary one
    when ``account_id`` is None), run in a worker thread."""
    acct = account_for(ctx, account_id)

    def run(b: Broker) -> T:
        s = b.account_summary(acct)
        return view(b, s, b.positions(s.account_id))

    return await call_broker(ctx, run)


def _health(b: Broker, s: AccountSummary, rows: list[Position]) -> PortfolioHealth:
    """What :func:`portfolio_health` reports for an account's summary and positions; an account
    in deficit (net liquidation <= 0) is reported too, without shares of net liquidation."""
    nl = s.net_liquidation
    solvent = nl > 0
    values = _market_values(rows)
    c = concentration(values, top=5, nav=nl if solvent else 1.0)
    sectors = _weights(_sector_values(b, rows), nl)
    warnings = []
    if not solvent:
        warnings.append(
            f"net liquidation is {nl:,.2f} {s.currency}: the account owes more than it holds, "
            "so IB may liquidate positions; deposit funds or reduce positions now"
        )
    elif c.max_abs_weight > 0.25:
        warnings.append(f"largest position is {c.max_abs_weight:.0%} of net liquidation")
    if s.leverage > 1.5:
        warnings.append(f"leverage {s.leverage:.2f}x")
    if s.cushion < 0.10:
        warnings.append(f"margin cushion {s.cushion:.0%} is below 10%")
    top = sectors[0] if sectors else None
    if top is not None and top.weight is not None and abs(top.weight) > 0.40:
        warnings.append(f"{top.name} is {top.weight:.0%} of net liquidation")
    return PortfolioHealth(
        account_id=s.account_id,
        net_liquidation=nl,
        positions=len(rows),
        largest_weight=c.max_abs_weight if solvent else None,
        top5_weight=c.top_weight if solvent else None,
        hhi=c.hhi,
        leverage=s.leverage,
        cash_share=s.total_cash / nl if solvent else None,
        cushion=s.cushion,
        sectors=sectors,
        warnings=warnings,
    )


async def portfolio_health(ctx: Context, account_id: AccountId = None) -> PortfolioHealth:
    """Concentration (largest, top-5, HHI), leverage, cash, margin cushion and sector mix,
    with plain-language warnings.

    Examples:
        portfolio_health()
    """
    return await _on_account(ctx, account_id, _health)


def analyse_bars(
    symbol: str, bars: pd.DataFrame, benchmark: str, benchmark_close: pd.Series
) -> StockAnalysis:
    """The analysis of one stock's daily ``bars`` (:func:`bars_frame`) against the benchmark's
    closes: every number from :mod:`ibkr_assets.quant`."""
    close = bars["close"]
    last = technical_indicators(bars).iloc[-1]
    t = trend(close)
    return StockAnalysis(
        symbol=symbol,
        last_close=float(close.iloc[-1]),
        bars=len(bars),
        volatility=annualised_volatility(log_returns(close)),
        beta=beta(close, benchmark_close),
        benchmark=benchmark,
        atr14=float(last["atr"]),
        atr_pct=float(last["atr_pct"]),
        rsi14=float(last["rsi"]),
        max_drawdown=max_drawdown(close).max_drawdown,
        return_1m=trailing_return(close, MONTH_SESSIONS),
        return_3m=trailing_return(close, QUARTER_SESSIONS),
        sma50=t.sma_fast,
        sma200=t.sma_slow,
        trend=t.label,
    )


def _analyse(b: Broker, symbol: str, benchmark: str, duration: str) -> StockAnalysis:
    c = resolve(b, symbol)
    df = bars_frame(b.history(c, duration=duration, bar_size="1 day"))
    if len(df) < 30:
        raise ToolError(f"{c.symbol}: only {len(df)} daily bars; need at least 30")
    bench = bars_frame(b.history(resolve(b, benchmark), duration=duration, bar_size="1 day"))
    try:
        return analyse_bars(c.symbol, df, benchmark, bench["close"])
    except ValueError as exc:  # bars the formulas cannot use (a zero or missing close)
        raise ToolError(f"{c.symbol}: {exc}") from None


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
        atr = float(technical_indicators(df)["atr"].iloc[-1])
        if not atr > 0:
            raise ToolError(f"{c.symbol}: ATR(14) is {atr:g}, no stop distance to size against")
        lot = b.contract_details(c).lot_size
        # What a buy would pay: the order guard's market price of a market buy.
        price = reference_price(Order(contract=c, action="BUY", quantity=lot), b.quotes([c])[0])
        if not price:
            raise ToolError(f"{c.symbol}: no price to size against")
        budget = s.net_liquidation * risk_pct / 100.0
        stop = atr_multiple * atr
        size = fixed_fractional_size(budget, stop, price, s.available_funds, lot)
        return PositionSize(
            symbol=c.symbol,
            price=price,
            atr14=atr,
            stop_distance=stop,
            stop_price=price - stop,
            risk_budget=budget,
            shares=size.shares,
            notional=size.shares * price,
            share_of_net_liq=size.shares * price / s.net_liquidation if s.net_liquidation else 0.0,
            limited_by=size.limited_by,
        )

    return await call_broker(ctx, run)


def _allocation(b: Broker, s: AccountSummary, rows: list[Position]) -> Allocation:
    """What :func:`allocation` reports for an account's summary and positions."""
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


async def allocation(ctx: Context, account_id: AccountId = None) -> Allocation:
    """Allocation by position, sector and currency, and the cash picture (settled cash,
    available funds, buying power).

    Examples:
        allocation()
    """
    return await _on_account(ctx, account_id, _allocation)


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server."""
    for fn in (portfolio_health, stock_analysis, position_size, allocation):
        add_tool(server, fn, CATEGORY)
