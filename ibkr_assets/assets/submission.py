"""Stage 8: the day's order ticket sent to the broker, with auto-submit on.

* ``submitted_orders`` sends the ticket only when ``auto_submit`` is on (default off), through
  :func:`ibkr_assets.broker.submission.submit_orders`. Each order carries an idempotent
  ``order_ref`` derived from partition, symbol, side and quantity; before placing, the broker's
  open and completed orders and its executions are searched for that ref, so re-running a
  partition — even after a crash half-way through submission — never sends an order twice. IB
  order ids and statuses go to ``reports/submitted_orders_YYYY-MM-DD.json``.

The submission file, not the DuckDB table, is what the journal reads: a day may send no orders,
and an empty table is never created by the DuckDB IO manager.
"""

from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import IB, Table, decide_asset
from ibkr_assets.assets.execution import (
    ORDER_REF,
    SYMBOL,
    order_from_row,
    read_ticket,
    typed_frame,
)
from ibkr_assets.assets.partition import with_partition
from ibkr_assets.assets.records import frame_records
from ibkr_assets.broker import GuardedBroker
from ibkr_assets.broker.submission import submit_orders
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.partitions import as_of
from ibkr_assets.promotion import live_trading_promoted
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource

SUBMITTED = Table(
    {
        "order_ref": ORDER_REF,
        "symbol": SYMBOL,
        "action": ("string", "BUY or SELL"),
        "quantity": ("float64", "shares on the ticket"),
        "outcome": (
            "string",
            "placed, already_sent, same_side_sent, already_executed, refused (by the order "
            "guard) or rejected (by IB)",
        ),
        "order_id": ("Int64", "IB orderId"),
        "perm_id": ("Int64", "IB permId"),
        "status": ("string", "IB order status (Submitted, Filled, ...)"),
        "filled": ("float64", "shares filled so far"),
        "message": ("string", "IB's or the order guard's message"),
    }
)
SUBMITTED_COLUMNS = SUBMITTED.dtypes


def submit_ticket(
    broker: GuardedBroker, ticket: pd.DataFrame, ref_prefix: str, account_id: str | None = None
) -> pd.DataFrame:
    """The :data:`SUBMITTED` table of a ticket sent through the order guard, each order at most
    once (:func:`ibkr_assets.broker.submission.submit_orders`): one row per order with its
    outcome, IB order id and status. ``ref_prefix``: the refs of this partition's orders."""
    orders = [order_from_row(row, str(row["order_type"])) for _, row in ticket.iterrows()]
    sent = submit_orders(broker, orders, ref_prefix, account_id=account_id)
    return typed_frame([asdict(s) for s in sent], SUBMITTED_COLUMNS)


def unpromoted_live_account(
    broker: GuardedBroker, account_id: str | None, data_root: Path
) -> str | None:
    """Why the ticket stays a recommendation: the account is live and ``ibkr-agent promote``
    has not recorded enough green paper sessions (None for a paper or promoted account).
    Raises JournalNotVerified when the journal holding the promotion fails verification."""
    accounts = broker.accounts()
    account = next(
        (a for a in accounts if a.account_id == account_id),
        next(a for a in accounts if a.is_primary),
    )
    if account.is_paper:
        return None
    if live_trading_promoted(data_root) is not None:
        return None
    return (
        f"{account.account_id} is a live account and live trading has not been promoted: the "
        "ticket is a recommendation only; run `ibkr-agent promote` after enough green paper "
        "sessions"
    )


@decide_asset(
    SUBMITTED, stage="8-submission", source=IB, kinds={"ib", "json"}, deps=["order_ticket"]
)
def submitted_orders(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    storage: StorageResource,
    ib: IBResource,
) -> dg.Output[pd.DataFrame]:
    """The ticket's orders as sent to the broker (only with auto-submit on), with IB order ids
    and statuses; orders the broker already has are never sent again."""
    partition = context.partition_key
    ticket = read_ticket(storage.report_path("order_ticket", partition, "json"))
    frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in SUBMITTED_COLUMNS.items()})
    held_back = ""
    if decide.auto_submit and len(ticket):
        broker = ib.broker_at(as_of(partition))
        held_back = unpromoted_live_account(broker, ib.account, storage.root) or ""
        if held_back:
            context.log.warning(held_back)
        else:
            frame = submit_ticket(
                broker, ticket, f"{decide.order_ref_prefix}:{partition}:", account_id=ib.account
            )
    path = storage.write_json(
        storage.report_path("submitted_orders", partition, "json"),
        {
            "partition": partition,
            "auto_submit": decide.auto_submit,
            "recommendation_only": held_back,
            "orders": frame_records(frame),
        },
    )
    counts = frame["outcome"].value_counts().to_dict()
    return dg.Output(
        with_partition(frame, partition),
        metadata={
            "auto_submit": decide.auto_submit,
            "placed": int(counts.get("placed", 0)),
            "already_sent": int(
                sum(
                    counts.get(k, 0) for k in ("already_sent", "same_side_sent", "already_executed")
                )
            ),
            "rejected": int(counts.get("rejected", 0)),
            "refused": int(counts.get("refused", 0)),
            "recommendation_only": held_back or "no",
            "path": str(path),
        },
    )
