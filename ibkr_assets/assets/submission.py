"""Stage 8: the day's order ticket sent to the broker, with auto-submit on.

* ``submitted_orders`` sends the ticket only when ``auto_submit`` is on (default off), through
  :func:`ibkr_assets.broker.submission.submit_orders`. Each order carries an idempotent
  ``order_ref`` derived from partition, symbol, side and quantity; before placing, the broker's
  open and completed orders and its executions are searched for that ref, so re-running a
  partition — even after a crash or a dropped connection half-way through submission — never
  sends an order twice. A placement whose fate is unknown (a drop, a timeout) is looked up by
  its ``order_ref`` before it is reported. IB order ids and statuses go to
  ``reports/submitted_orders_YYYY-MM-DD.json``.

The submission file, not the DuckDB table, is what the journal reads: a day may send no orders,
and an empty table is never created by the DuckDB IO manager.

**When the run is green** (the blocking check ``every_order_sent`` on ``submitted_orders``,
:func:`submission_verdict`). The asset never raises for an order: it records every order's
outcome first (the stored frame, the JSON report and the metadata keep every row), then the
check judges the run:

=======================================  =====================================================
what happened                            verdict
=======================================  =====================================================
every ticket order is at IB (``placed``,  passed
``already_sent``, ``same_side_sent``,
``already_executed``)
auto-submit off, or an empty ticket       passed: nothing was to be sent (the ticket is the
                                          day's recommendation)
live account not promoted                 failed, WARN: the run stays green (a deliberate hold
                                          by policy, like auto-submit off) and says so in the
                                          check, the metadata and the report
some orders refused by the order guard    failed, WARN: a deliberate outcome of a limit the
                                          desk set; green, each refusal named with its limit
every order refused by the order guard    failed, ERROR: red, nothing went out (kill switch,
                                          read-only, caps below every order)
any order ``rejected`` by IB,             failed, ERROR: red, the summary names each order
``not_sent`` or ``unknown``               missing and why; a rerun reconciles by
                                          ``order_ref`` and sends only what IB does not have
=======================================  =====================================================

A failed ERROR check fails the step after the frame is stored, so ``decision_journal`` does not
run: the journal gets its row from the run that completes the ticket (the rerun), whose
``submission`` field records each order's outcome, ``already_sent`` for those a failed run
had sent.
"""

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd

from ibkr_assets import checks  # noqa: F401  (its import keeps the partitioned check's PreviewWarning quiet)
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
from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.submission import SENT_OUTCOMES, submit_orders
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.partitions import DAILY_PARTITIONS, as_of
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
            "guard), rejected (by IB), not_sent (IB has nothing of it after the placement "
            "failed) or unknown (IB could not be asked after the placement failed)",
        ),
        "order_id": ("Int64", "IB orderId"),
        "perm_id": ("Int64", "IB permId"),
        "status": ("string", "IB order status (Submitted, Filled, ...)"),
        "filled": ("float64", "shares filled so far"),
        "message": ("string", "IB's or the order guard's message"),
    }
)
SUBMITTED_COLUMNS = SUBMITTED.dtypes
EVERY_ORDER_SENT = "every_order_sent"
#: Characters of an order's message quoted in the summary of what is missing.
_MESSAGE_CHARS = 240


def _describe(row: pd.Series) -> str:
    """``BUY 10 AAPL (not_sent: <message>)``: one ticket order and what became of it."""
    message = str(row["message"]) if pd.notna(row["message"]) and row["message"] else ""
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    why = f"{row['outcome']}: {message}" if message else str(row["outcome"])
    return f"{row['action']} {float(row['quantity']):g} {row['symbol']} ({why})"


def submission_verdict(
    frame: pd.DataFrame, auto_submit: bool, held_back: str
) -> tuple[bool, dg.AssetCheckSeverity, str]:
    """Whether every ticket order went out as the ticket says: (passed, severity, summary), as
    the module docstring's table says. ``frame``: the :data:`SUBMITTED` rows; ``held_back``:
    why a live account's ticket stayed a recommendation ("" otherwise). The summary names
    every order missing and why."""
    error, warn = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
    if not auto_submit:
        return True, error, "auto-submit is off: the ticket is a recommendation, nothing to send"
    if held_back:
        return False, warn, f"nothing sent: {held_back}"
    if frame.empty:
        return True, error, "the ticket has no orders: nothing to send"
    outcome = frame["outcome"]
    missing = frame[~outcome.isin(SENT_OUTCOMES | {"refused"})]
    refused = frame[outcome == "refused"]
    at_ib = int(outcome.isin(SENT_OUTCOMES).sum())
    sent = f"{at_ib} of {len(frame)} ticket orders at IB"
    if len(missing):
        names = "; ".join(_describe(r) for _, r in missing.iterrows())
        return (
            False,
            error,
            f"{len(missing)} of {len(frame)} ticket orders did not go out: {names}. "
            f"{sent}. Rerun the partition once IB answers: submission looks every order up by "
            "order_ref first and sends only what IB does not have",
        )
    if len(refused):
        names = "; ".join(_describe(r) for _, r in refused.iterrows())
        if len(refused) == len(frame):
            return False, error, f"every ticket order was refused by the order guard: {names}"
        return False, warn, f"{sent}; refused by the order guard (deliberate): {names}"
    placed = int((outcome == "placed").sum())
    return True, error, f"{sent}: {placed} placed now, {at_ib - placed} already at IB"


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
    SUBMITTED,
    stage="8-submission",
    source=IB,
    kinds={"ib", "json"},
    deps=["order_ticket"],
    check_specs=[
        dg.AssetCheckSpec(
            EVERY_ORDER_SENT,
            asset="submitted_orders",
            blocking=True,
            partitions_def=DAILY_PARTITIONS,
            description="every ticket order went out as the ticket says (fails the run, "
            "naming what is missing, when one was rejected, not sent or of unknown fate)",
        )
    ],
)
def submitted_orders(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    storage: StorageResource,
    ib: IBResource,
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """The ticket's orders as sent to the broker (only with auto-submit on), with IB order ids
    and statuses; orders the broker already has are never sent again. The run fails when an
    order did not go out (see the module docstring)."""
    partition = context.partition_key
    ticket = read_ticket(storage.report_path("order_ticket", partition, "json"))
    frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in SUBMITTED_COLUMNS.items()})
    held_back = ""
    if decide.auto_submit and len(ticket):
        try:
            broker = ib.broker_at(as_of(partition))
            held_back = unpromoted_live_account(broker, ib.account, storage.root) or ""
            if not held_back:
                frame = submit_ticket(
                    broker, ticket, f"{decide.order_ref_prefix}:{partition}:", account_id=ib.account
                )
        except BrokerError as exc:  # raised only before the first placement
            raise dg.Failure(
                f"none of the {len(ticket)} ticket orders was sent: IB could not be reached or "
                f"its orders read before the first placement ({exc}); rerun the partition once "
                "IB answers (submission looks every order up by order_ref first)",
                metadata={"missing": ", ".join(ticket["order_ref"].astype(str))},
            ) from exc
    passed, severity, summary = submission_verdict(frame, decide.auto_submit, held_back)
    path = storage.write_json(
        storage.report_path("submitted_orders", partition, "json"),
        {
            "partition": partition,
            "auto_submit": decide.auto_submit,
            "recommendation_only": held_back,
            "every_order_sent": passed,
            "summary": summary,
            "orders": frame_records(frame),
        },
    )
    counts = frame["outcome"].value_counts().to_dict()
    if not passed:
        log = context.log.error if severity == dg.AssetCheckSeverity.ERROR else context.log.warning
        log(summary)
    yield dg.Output(
        with_partition(frame, partition),
        metadata={
            "auto_submit": decide.auto_submit,
            "placed": int(counts.get("placed", 0)),
            "already_sent": int(sum(counts.get(k, 0) for k in SENT_OUTCOMES if k != "placed")),
            "rejected": int(counts.get("rejected", 0)),
            "refused": int(counts.get("refused", 0)),
            "not_sent": int(counts.get("not_sent", 0)),
            "unknown": int(counts.get("unknown", 0)),
            "recommendation_only": held_back or "no",
            "summary": summary,
            "path": str(path),
        },
    )
    yield dg.AssetCheckResult(
        check_name=EVERY_ORDER_SENT,
        passed=passed,
        severity=severity,
        description=summary,
        metadata={
            "orders": len(frame),
            "at_ib": int(frame["outcome"].isin(SENT_OUTCOMES).sum()),
        },
    )
