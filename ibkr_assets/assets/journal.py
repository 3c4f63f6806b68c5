"""Stage 9: the decision journal — why the machine did what it did, tamper-evident.

Each run appends one row to the parquet journal in ``data/decision_log/``
(:mod:`ibkr_assets.quant.journal`): UTC time, partition, sha256 of the canonical JSON of the
targets and of the orders, sha256 of every file the run wrote (ticket, risk report,
submission), what became of each ticket order at the broker (``submission``: its outcome —
``placed`` now, ``already_sent`` / ``already_executed`` by an earlier run that crashed or lost
its connection — with IB's status), each held name's five largest alpha contributions
(signal weight x standardised signal value, as the alpha stage names them), ex-ante return,
volatility and CVaR, whether the constraints passed, and the previous row's hash. Each row is
signed (HMAC) with the journal key kept outside the data root, and the signed head file beside
the journal moves on.
The materialisation records the row's hash (``row_hash``): Dagster's copy of the head, which
``ibkr-agent journal verify`` compares with the journal (:mod:`ibkr_assets.journal_verify`).

A run blocked by the compliance gate is journalled too (by ``risk_report``, with
``constraints_passed=False``): the journal records decisions not taken as well as those taken.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import DECIDE_GROUP, Table, catalog_kwargs
from ibkr_assets.assets.partition import without_partition
from ibkr_assets.assets.records import frame_records
from ibkr_assets.assets.targets import TARGETS
from ibkr_assets.freshness import DAILY_OUTPUT_FRESHNESS
from ibkr_assets.partitions import DAILY_PARTITIONS
from ibkr_assets.quant.decision import EX_ANTE
from ibkr_assets.quant.journal import append_entry, sha256_file, sha256_json
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.settings import load_settings

#: What the journal keeps of each ticket order's submission (``reports/submitted_orders_*``).
SUBMISSION_FIELDS = ("order_ref", "outcome", "status", "filled", "order_id", "perm_id")
#: A day's row of the journal (a calibration row of the weekly backtest has its own fields).
JOURNAL = Table(
    {
        "seq": ("int64", "row number in the journal, 0 = first"),
        "ts_utc": ("string", "when the row was appended, ISO 8601 UTC"),
        "partition": ("string", "the NYSE session decided"),
        "targets_sha256": (
            "string",
            "sha256 of the canonical JSON of the targets (symbol, weight)",
        ),
        "orders_sha256": ("string", "sha256 of the canonical JSON of the ticket's orders"),
        "files_sha256": ("string", "JSON: each file the run wrote (under the data root) -> sha256"),
        "top_drivers": (
            "string",
            "JSON: each name held (largest weight first): weight, alpha score and its five "
            "largest contributions ('mom_12_1 +0.081; ...': signal weight x standardised value)",
        ),
        "submission": (
            "string",
            "JSON: each ticket order sent to the broker (order_ref, outcome: placed, "
            "already_sent, ...; IB status, shares filled, orderId, permId); [] when nothing "
            "was sent (auto-submit off, recommendation only, gate blocked)",
        ),
        **{name: TARGETS.columns[name] for name in EX_ANTE},
        "constraints_passed": ("bool", "the compliance gate passed (false: decision blocked)"),
        "prev_hash": ("string", "the previous row's row_hash: the chain"),
        "row_hash": ("string", "sha256 over every other field of the row"),
        "row_hmac": ("string", "HMAC-SHA256 of row_hash under the journal key"),
    }
)


def top_drivers(targets: pd.DataFrame) -> list[dict]:
    """Every name held, largest weight first, with its weight, alpha score and the alpha
    stage's five largest contributions to it (``top_drivers`` of
    :func:`~ibkr_assets.quant.alpha.compute_alpha_scores`, when the targets carry them): what
    drove the book today, name by name."""
    if targets.empty:
        return []
    held = targets.loc[targets["weight"] != 0]
    held = held.reindex(held["weight"].abs().sort_values(ascending=False, kind="stable").index)
    return [
        {
            "symbol": str(r["symbol"]),
            "weight": round(float(r["weight"]), 6),
            "alpha": round(float(r["alpha_score"]), 6),
            **({"drivers": str(r["top_drivers"])} if "top_drivers" in r else {}),
        }
        for _, r in held.iterrows()
    ]


def record_decision(
    storage: StorageResource,
    *,
    partition: str,
    targets: pd.DataFrame,
    orders: pd.DataFrame,
    files: Sequence[Path],
    ex_ante: dict[str, float],
    constraints_passed: bool,
    submission: Sequence[Mapping[str, Any]] = (),
) -> dict:
    """Append one hash-chained, signed row for a partition's decision (signed with the settings'
    journal key); returns the row written. ``submission``: the rows of the submission report
    (what became of each ticket order), kept as :data:`SUBMISSION_FIELDS`."""
    target_view = targets[["symbol", "weight"]].sort_values("symbol") if len(targets) else targets
    return append_entry(
        storage.decision_log_dir,
        {
            "partition": partition,
            "targets_sha256": sha256_json(frame_records(target_view)),
            "orders_sha256": sha256_json(frame_records(without_partition(orders))),
            "files_sha256": {
                Path(p).relative_to(storage.root).as_posix(): sha256_file(p) for p in files
            },
            "top_drivers": top_drivers(targets),
            "submission": [{k: row.get(k) for k in SUBMISSION_FIELDS} for row in submission],
            **ex_ante,
            "constraints_passed": constraints_passed,
        },
        key=load_settings().checked("journal").journal.appending_key(storage.decision_log_dir),
    )


@dg.asset(
    partitions_def=DAILY_PARTITIONS,
    group_name=DECIDE_GROUP,
    ins={"overlaid_targets": dg.AssetIn()},
    deps=["order_ticket", "submitted_orders"],
    freshness_policy=DAILY_OUTPUT_FRESHNESS,
    **catalog_kwargs(
        stage="9-journal",
        kinds={"parquet"},
        critical=True,
        columns=JOURNAL.schema(partitioned=False),
    ),
)
def decision_journal(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    overlaid_targets: pd.DataFrame,
) -> dg.MaterializeResult:
    """One tamper-evident journal row for the day's decision (``decision_log/``): targets,
    orders, files written, drivers and ex-ante risk, chained to the previous row. Due by 14:30
    Europe/Bucharest on every NYSE session (late after that)."""
    partition = context.partition_key
    ticket_path = storage.report_path("order_ticket", partition, "json")
    submitted_path = storage.report_path("submitted_orders", partition, "json")
    risk_path = storage.report_path("risk_report", partition, "json")
    files = [p for p in (risk_path, ticket_path, submitted_path) if p.exists()]
    sent = json.loads(submitted_path.read_text())["orders"] if submitted_path.exists() else []
    orders = pd.DataFrame(json.loads(ticket_path.read_text())["orders"])
    ex_ante = {k: float(overlaid_targets[k].iloc[0]) for k in EX_ANTE}
    row = record_decision(
        storage,
        partition=partition,
        targets=overlaid_targets,
        orders=orders,
        files=files,
        ex_ante=ex_ante,
        constraints_passed=True,
        submission=sent,
    )
    outcomes = pd.Series([o["outcome"] for o in sent], dtype="string").value_counts()
    return dg.MaterializeResult(
        metadata={
            "row_hash": row["row_hash"],
            "prev_hash": row["prev_hash"],
            "orders": len(orders),
            "submission": ", ".join(f"{n} {o}" for o, n in outcomes.items()) or "nothing sent",
            "files": ", ".join(p.name for p in files),
            "journal": str(storage.decision_log_dir),
        }
    )


__all__ = ["decision_journal", "record_decision", "top_drivers"]
