"""Stage 7: proposed orders, what-if margin and the order ticket (stage 8 sends it:
:mod:`ibkr_assets.assets.submission`).

* ``proposed_orders`` diffs today's positions against the overlaid targets
  (:mod:`ibkr_assets.quant.orders`): shares from weight × net liquidation / price, rounded to
  the lot size (whole round lots with ``even_lots``), trades under ``min_notional`` dropped, limit
  prices from the quote (mid ± ``limit_spread_fraction`` × spread: buyers pay up, sellers give).
  Round lots are IB's tiered US lots at the quoted price (:func:`ibkr_spec.lots.round_lot`, as
  the backtest uses; the backends report a lot of 1). It depends on ``risk_report``, so the
  compliance gate's blocking checks stop it.
* ``what_if_orders`` asks the broker what each order would do to the account's margin (IB
  whatIf). An order that would leave negative excess liquidity — or that IB would reject — is
  sized down by ``whatif_shrink`` (20% by default) and asked again, until it passes or
  ``whatif_max_attempts`` is reached; then it is dropped (or kept, flagged). Every attempt is
  recorded, with the cost model's commission beside IB's; where they differ by more than
  :data:`COMMISSION_TOLERANCE` the asset warns and names the orders in its metadata.
* ``order_ticket`` is what a trader would work: ``reports/order_ticket_YYYY-MM-DD.json`` plus a
  DuckDB table, each order with the one cost model's expected commission, spread and impact
  (:func:`ibkr_assets.quant.decision.order_costs`: quoted spread, 20-session dollar ADV, the
  risk model's volatility). It refuses to exist when the day's risk report failed the
  compliance gate — the blocking checks already stop it; this is the second lock.

The ticket file, not the DuckDB table, is what submission reads: a ticket may hold no orders,
and an empty table is never created by the DuckDB IO manager.
"""

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import IB, Table, decide_asset
from ibkr_assets.assets.ib_rules import ib_cost_model
from ibkr_assets.assets.materialization import listing
from ibkr_assets.assets.partition import with_partition, without_partition
from ibkr_assets.assets.portfolio import current_quantities, net_liquidation
from ibkr_assets.assets.records import frame_records
from ibkr_assets.assets.risk_model import risk_model_from_frame
from ibkr_assets.broker import Broker
from ibkr_assets.broker.models import Contract, Order, WhatIfResult
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.freshness import DAILY_OUTPUT_FRESHNESS
from ibkr_assets.metadata import readable
from ibkr_assets.partitions import as_of
from ibkr_assets.quant.backtest.trading import lots_at
from ibkr_assets.quant.costs import CostModel
from ibkr_assets.quant.decision import (
    ORDER_COST_COLUMNS,
    cost_inputs,
    diff_orders,
    order_costs,
    quote_prices,
)
from ibkr_assets.quant.orders import (
    ProposedOrder,
    order_ref,
    resize_until_margin_ok,
)
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_spec.lots import round_lot

COMMISSION_TOLERANCE = (0.5, 0.50)
"""The model's commission and IB's what-if estimate disagree when they differ by more than this
share of IB's plus this many USD (50 % + $0.50: a modelling choice that passes IB's rounding
and per-order minimum, and catches a wrong tier or schedule)."""

SYMBOL = ("string", "ticker symbol")
CONID = ("int64", "IB contract id (conId)")
ORDER_REF = ("string", "idempotency key sent as IB's orderRef: <prefix>:<session>:<hash>")
MARGIN_AFTER = ("float64", "IB what-if: maintenance margin after the fill, USD")
COMMISSION = ("float64", "IB what-if: commission estimate, USD")
MID = ("float64", "quote mid, USD per share")
NOTIONAL = ("float64", "quantity x mid, USD")
PROPOSED = Table(
    {
        "symbol": SYMBOL,
        "conid": CONID,
        "action": ("string", "BUY, SELL, or empty when no trade is proposed"),
        "quantity": ("int64", "shares to trade (rounded to the lot size); 0: no trade"),
        "limit_price": ("float64", "limit: mid +/- a fraction of the spread, USD per share"),
        "mid": MID,
        "notional": NOTIONAL,
        "current_shares": ("float64", "shares held before the session"),
        "target_shares": ("float64", "shares of the target weight: weight x NAV / price"),
        "target_weight": ("float64", "overlaid target weight, fraction of net liquidation"),
        "lot_size": ("int64", "round lot, shares"),
        "order_ref": ORDER_REF,
        "reason": ("string", "why this trade, or why none (at target, under min_notional ...)"),
    }
)
PROPOSED_COLUMNS = PROPOSED.dtypes
WHATIF = Table(
    {
        "symbol": SYMBOL,
        "conid": CONID,
        "action": ("string", "BUY or SELL (empty: no trade proposed)"),
        "attempt": ("int64", "what-if attempt, 1 = first; 0: no trade proposed"),
        "quantity": ("int64", "shares asked in this attempt"),
        "limit_price": ("float64", "limit price, USD per share"),
        "mid": MID,
        "passed": ("bool", "IB accepted it and excess liquidity stays >= 0 after the fill"),
        "decision": ("string", "accepted, resized, dropped, kept_failing or no_trade"),
        "final": ("bool", "this row's size is what goes on the ticket"),
        "order_ref": ORDER_REF,
        "init_margin_change": ("float64", "IB what-if: change of initial margin, USD"),
        "maint_margin_after": MARGIN_AFTER,
        "excess_liquidity_after": ("float64", "IB what-if: excess liquidity after the fill, USD"),
        "commission": COMMISSION,
        "model_commission": ("float64", "the cost model's commission of this size, USD"),
        "detail": ("string", "the what-if's margins, IB's warning, or why no trade"),
    }
)
WHATIF_COLUMNS = WHATIF.dtypes
TICKET = Table(
    {
        "symbol": SYMBOL,
        "conid": CONID,
        "action": ("string", "BUY or SELL"),
        "quantity": ("int64", "shares to trade"),
        "order_type": ("string", "IB orderType: LMT or MKT"),
        "limit_price": ("float64", "limit price, USD per share (empty for MKT)"),
        "notional": NOTIONAL,
        "order_ref": ORDER_REF,
        "whatif_attempts": ("int64", "what-if calls made before the order passed"),
        "whatif_decision": ("string", "accepted, resized or kept_failing"),
        "maint_margin_after": MARGIN_AFTER,
        "commission": COMMISSION,
        "cost_commission": ("float64", "cost model: IB's tiered commission, USD"),
        "cost_spread": ("float64", "cost model: half the quoted spread x shares, USD"),
        "cost_impact": ("float64", "cost model: square-root impact, USD"),
        "cost_total": ("float64", "cost model: commission + spread + impact, USD"),
        "cost_bp": ("float64", "cost model: total, basis points of the notional"),
    }
)
TICKET_COLUMNS = TICKET.dtypes


def typed_frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    """A frame of ``rows`` with exactly ``columns`` (name -> pandas dtype), in that order."""
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


# -- proposed orders -------------------------------------------------------------------------


def propose_orders(
    partition: str,
    decide: DecideConfig,
    overlaid_targets: pd.DataFrame,
    portfolio_snapshot: pd.DataFrame,
    quotes: pd.DataFrame,
    universe: pd.DataFrame,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The :data:`PROPOSED` table — one row per symbol held or targeted: the trade to the
    overlaid target weight, or why none — and the symbols skipped with their reason. Each
    name's round lot is IB's tiered lot at its quoted price."""
    quotes = without_partition(quotes)
    lotted = lots_at(without_partition(universe), quote_prices(quotes)["price"], round_lot)
    ref = lotted.drop_duplicates("symbol").set_index("symbol")
    targets = without_partition(overlaid_targets).set_index("symbol")["weight"]
    held = current_quantities(portfolio_snapshot)
    diff = diff_orders(
        held,
        targets,
        net_liquidation(portfolio_snapshot),
        quotes,
        lotted,
        min_notional=decide.min_notional,
        even_lots=decide.even_lots,
        limit_spread_fraction=decide.limit_spread_fraction,
        order_type=decide.order_type,
    )
    rows = {
        o.symbol: {
            **asdict(o),
            "order_ref": order_ref(
                partition, o.symbol, o.action, o.quantity, prefix=decide.order_ref_prefix
            ),
        }
        for o in diff.orders
    }
    for skip in diff.skipped:
        rows[skip.symbol] = {
            "symbol": skip.symbol,
            "notional": skip.notional,
            "reason": skip.reason,
        }
    for sym in sorted((set(held.index[held != 0]) | set(targets.index[targets != 0])) - set(rows)):
        rows[sym] = {"symbol": sym, "reason": "at target"}
    frame = pd.DataFrame(list(rows.values()), columns=list(PROPOSED_COLUMNS)).assign(
        action=lambda f: f["action"].fillna(""),
        quantity=lambda f: f["quantity"].fillna(0),
        order_ref=lambda f: f["order_ref"].fillna(""),
        conid=lambda f: f["symbol"].map(ref["conid"]).fillna(0),
        lot_size=lambda f: f["symbol"].map(ref["lot_size"]).fillna(1),
        target_weight=lambda f: f["symbol"].map(targets).fillna(0.0),
    )
    frame = frame.astype(PROPOSED_COLUMNS).sort_values(["action", "symbol"], ignore_index=True)
    return frame, {s.symbol: s.reason for s in diff.skipped}


@decide_asset(
    PROPOSED,
    stage="7-orders",
    ins={
        "overlaid_targets": dg.AssetIn(),
        "portfolio_snapshot": dg.AssetIn(),
        "quotes": dg.AssetIn(),
        "universe": dg.AssetIn(),
    },
    deps=["risk_report"],
)
def proposed_orders(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    overlaid_targets: pd.DataFrame,
    portfolio_snapshot: pd.DataFrame,
    quotes: pd.DataFrame,
    universe: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """The trades that move today's positions to the targets — one row per symbol held or
    targeted, with the reason when no trade is proposed."""
    partition = context.partition_key
    frame, skipped = propose_orders(
        partition, decide, overlaid_targets, portfolio_snapshot, quotes, universe
    )
    trades = frame[frame["quantity"] > 0]
    return dg.Output(
        with_partition(frame, partition),
        metadata=readable(
            {
                "orders": len(trades),
                "buys": int((trades["action"] == "BUY").sum()),
                "sells": int((trades["action"] == "SELL").sum()),
                "gross_notional": float(trades["notional"].sum()),
                "skipped": listing(skipped),
            }
        ),
    )


# -- what-if ---------------------------------------------------------------------------------


def order_from_row(row: pd.Series, order_type: str, quantity: float | None = None) -> Order:
    """The broker order for one order row (conid, symbol, action, quantity, limit_price,
    order_ref)."""
    contract = Contract(conid=int(row["conid"]), symbol=str(row["symbol"]), sec_type="STK")
    return Order(
        contract=contract,
        action=row["action"],
        quantity=float(row["quantity"] if quantity is None else quantity),
        order_type=order_type,  # type: ignore[arg-type]
        limit_price=float(row["limit_price"]) if order_type == "LMT" else None,
        order_ref=str(row["order_ref"]),
    )


def margin_check(
    broker: Broker, row: pd.Series, order_type: str, log: list[WhatIfResult]
) -> Callable[[ProposedOrder], tuple[bool, str]]:
    """The what-if check of :func:`resize_until_margin_ok`: the order passes when IB accepts it
    and excess liquidity stays non-negative once it fills. Each result is appended to ``log``."""

    def check(order: ProposedOrder) -> tuple[bool, str]:
        result = broker.what_if(order_from_row(row, order_type, quantity=order.quantity))
        log.append(result)
        ok = result.accepted and result.excess_liquidity_after >= 0
        detail = (
            f"maint margin {result.maint_margin_before:,.0f} -> {result.maint_margin_after:,.0f}, "
            f"excess liquidity after {result.excess_liquidity_after:,.0f}"
            + (f"; {result.warning}" if result.warning else "")
        )
        return ok, detail

    return check


def size_by_margin(
    broker: Broker | None,
    proposed: pd.DataFrame,
    decide: DecideConfig,
    partition: str,
    costs: CostModel,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The :data:`WHATIF` table of the proposed trades — one row per what-if attempt, attempt 0
    for a symbol with no trade — and how many orders ended in each decision. ``broker`` (None
    when nothing trades) answers the what-ifs; ``costs``' commission is set beside IB's
    (the order valued at its limit, else the mid)."""
    rows = [
        {
            **row,
            "attempt": 0,
            "passed": False,
            "final": False,
            "decision": "no_trade",
            "detail": row["reason"],
        }
        for row in proposed[proposed["quantity"] <= 0].to_dict("records")
    ]
    decisions: dict[str, int] = {}
    for _, row in proposed[proposed["quantity"] > 0].iterrows():
        if broker is None:
            raise ValueError(f"size_by_margin: {row['symbol']} trades and no broker was given")
        log: list[WhatIfResult] = []
        result = resize_until_margin_ok(
            ProposedOrder(
                symbol=row["symbol"],
                action=row["action"],
                quantity=int(row["quantity"]),
                limit_price=float(row["limit_price"]) if decide.order_type == "LMT" else None,
                mid=float(row["mid"]),
                notional=float(row["notional"]),
                current_shares=float(row["current_shares"]),
                target_shares=float(row["target_shares"]),
                target_weight=float(row["target_weight"]),
                reason=str(row["reason"]),
            ),
            margin_check(broker, row, decide.order_type, log),
            shrink=1 - decide.whatif_shrink,
            max_tries=decide.whatif_max_attempts,
            lot_size=int(row["lot_size"]) if decide.even_lots else 1,
            min_notional=decide.min_notional,
            on_failure=decide.whatif_on_failure,
        )
        decisions[result.decision] = decisions.get(result.decision, 0) + 1
        price = float(row["limit_price"] if decide.order_type == "LMT" else row["mid"])
        for attempt, what_if in zip(result.attempts, log, strict=True):
            is_final = result.order is not None and attempt is result.attempts[-1]
            rows.append(
                {
                    "symbol": row["symbol"],
                    "conid": int(row["conid"]),
                    "action": row["action"],
                    "attempt": attempt.attempt,
                    "quantity": attempt.quantity,
                    "limit_price": row["limit_price"],
                    "mid": row["mid"],
                    "passed": attempt.passed,
                    "decision": result.decision,
                    "final": is_final,
                    "order_ref": order_ref(
                        partition,
                        row["symbol"],
                        row["action"],
                        attempt.quantity,
                        prefix=decide.order_ref_prefix,
                    ),
                    "init_margin_change": what_if.init_margin_change,
                    "maint_margin_after": what_if.maint_margin_after,
                    "excess_liquidity_after": what_if.excess_liquidity_after,
                    "commission": what_if.commission,
                    "model_commission": costs.commission(
                        attempt.quantity, attempt.quantity * price, row["action"] == "SELL", 0.0
                    ),
                    "detail": attempt.detail,
                }
            )
    frame = typed_frame(rows, WHATIF_COLUMNS).sort_values(["symbol", "attempt"], ignore_index=True)
    return frame, decisions


@decide_asset(
    WHATIF, stage="7-orders", source=IB, kinds={"ib"}, ins={"proposed_orders": dg.AssetIn()}
)
def what_if_orders(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    ib: IBResource,
    proposed_orders: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Each proposed trade after the broker's margin what-if: accepted, sized down until it
    passed, or dropped — one row per attempt (attempt 0: a symbol with no trade, and why)."""
    partition = context.partition_key
    proposed = without_partition(proposed_orders)
    trades = int((proposed["quantity"] > 0).sum())
    broker = ib.broker_at(as_of(partition)) if trades else None
    costs = ib_cost_model(decide.holding_period_sessions)
    frame, decisions = size_by_margin(broker, proposed, decide, partition, costs)
    disagree = commission_disagreements(frame)
    if disagree:
        context.log.warning(
            "the cost model's commission and IB's what-if disagree (beyond "
            f"{COMMISSION_TOLERANCE[0]:.0%} + ${COMMISSION_TOLERANCE[1]:.2f}): "
            + "; ".join(f"{k}: {v}" for k, v in disagree.items())
        )
    return dg.Output(
        with_partition(frame, partition),
        metadata={
            "orders": trades,
            "what_if_calls": int((frame["attempt"] > 0).sum()),
            **{f"decision_{k}": v for k, v in sorted(decisions.items())},
            "commission_disagreements": listing(disagree),
        },
    )


def commission_disagreements(what_if: pd.DataFrame) -> dict[str, str]:
    """The what-if attempts whose model commission and IB's estimate differ by more than
    :data:`COMMISSION_TOLERANCE`, by ``SYMBOL#attempt``, saying both (USD). IB's estimate
    unknown (NaN) is no disagreement."""
    share, usd = COMMISSION_TOLERANCE
    asked = what_if[what_if["attempt"] > 0]
    ib, model = asked["commission"].astype(float), asked["model_commission"].astype(float)
    off = ib.notna() & ((model - ib).abs() > share * ib.abs() + usd)
    return {
        f"{r.symbol}#{r.attempt}": f"model ${r.model_commission:,.2f} vs IB ${r.commission:,.2f}"
        for r in asked[off].itertuples()
    }


# -- order ticket ----------------------------------------------------------------------------


def final_orders(
    what_if: pd.DataFrame, order_type: str, costs: Callable[[pd.DataFrame], pd.DataFrame]
) -> pd.DataFrame:
    """The ticket: the final size of each order that survived the what-if loop, with its
    expected costs — ``costs(orders)``, the :data:`~ibkr_assets.quant.decision.ORDER_COST_COLUMNS`
    of orders with ``symbol``, ``action``, ``quantity`` and ``mid`` (the asset binds
    :func:`~ibkr_assets.quant.decision.order_costs` to the day's inputs)."""
    final = what_if[what_if["final"].astype(bool)]
    attempts = what_if[what_if["attempt"] > 0].groupby("symbol")["attempt"].max()
    ticket = final.assign(
        order_type=order_type,
        limit_price=final["limit_price"] if order_type == "LMT" else float("nan"),
        notional=final["quantity"] * final["mid"],
        whatif_attempts=final["symbol"].map(attempts),
        whatif_decision=final["decision"],
    )
    ticket = ticket.join(costs(ticket)[list(ORDER_COST_COLUMNS)])
    return typed_frame(ticket[list(TICKET_COLUMNS)].to_dict("records"), TICKET_COLUMNS).sort_values(
        "symbol", ignore_index=True
    )


def read_ticket(path: Path) -> pd.DataFrame:
    """The orders of an order-ticket file."""
    if not path.exists():
        raise FileNotFoundError(f"no order ticket at {path}: materialise order_ticket first")
    orders = json.loads(path.read_text())["orders"]
    frame = pd.DataFrame(orders, columns=list(TICKET_COLUMNS))
    return frame.astype(TICKET_COLUMNS)


@decide_asset(
    TICKET,
    stage="7-orders",
    kinds={"json"},
    freshness_policy=DAILY_OUTPUT_FRESHNESS,
    ins={
        "what_if_orders": dg.AssetIn(),
        "risk_report": dg.AssetIn(),
        "quotes": dg.AssetIn(),
        "feature_matrix": dg.AssetIn(),
        "risk_model": dg.AssetIn(),
    },
)
def order_ticket(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    storage: StorageResource,
    what_if_orders: pd.DataFrame,
    risk_report: pd.DataFrame,
    quotes: pd.DataFrame,
    feature_matrix: pd.DataFrame,
    risk_model: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """The day's order ticket: the orders that passed the compliance gate and the margin
    what-if, each with the cost model's expected costs. Due by 14:30 Europe/Bucharest on every
    NYSE session (late after that)."""
    partition = context.partition_key
    failed = risk_report.loc[~risk_report["passed"].astype(bool), "check"].tolist()
    if failed:
        raise RuntimeError(
            f"{partition}: the compliance gate failed ({', '.join(failed)}); no order ticket — "
            f"see {storage.report_path('recommendation', partition, 'md')}"
        )
    what_if = without_partition(what_if_orders)
    inputs = cost_inputs(
        what_if["symbol"].unique(),
        without_partition(quotes),
        without_partition(feature_matrix),
        risk_model_from_frame(without_partition(risk_model)),
    )
    costs = ib_cost_model(decide.holding_period_sessions)
    ticket = final_orders(
        what_if, decide.order_type, lambda orders: order_costs(costs, orders, inputs)
    )
    path = storage.write_json(
        storage.report_path("order_ticket", partition, "json"),
        {
            "partition": partition,
            "auto_submit": decide.auto_submit,
            "order_count": len(ticket),
            "gross_notional": float(ticket["notional"].sum()),
            "expected_cost": float(ticket["cost_total"].sum()),
            "orders": frame_records(ticket),
        },
    )
    return dg.Output(
        with_partition(ticket, partition),
        metadata=readable(
            {
                "orders": len(ticket),
                "gross_notional": float(ticket["notional"].sum()),
                "expected_cost": float(ticket["cost_total"].sum()),
                "path": str(path),
                "ticket": dg.MetadataValue.md(  # every float on the ticket is USD
                    ticket.head(30).to_markdown(index=False, floatfmt=",.2f")
                )
                if len(ticket)
                else "no orders",
            }
        ),
    )
