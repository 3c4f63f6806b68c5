"""Stage 6 — ``risk_report``: the compliance gate.

``risk_report`` is the compliance gate's asset (group ``compliance_gate``, stage
``6-compliance-gate``): its six blocking asset checks are the gate. It holds every compliance
number for the overlaid targets — gross exposure change, historical and parametric VaR,
concentration, liquidity of each implied trade against ADV, sector exposure — against the limits
of :class:`~ibkr_assets.decide_config.DecideConfig` (:mod:`ibkr_assets.quant.compliance`).
Written to ``reports/risk_report_YYYY-MM-DD.json`` and DuckDB. When any limit is breached it
also writes the recommendation-only report ``reports/recommendation_YYYY-MM-DD.md`` (targets,
failed checks and by how much), journals the blocked decision, and sends an alert; the blocking
checks in :mod:`ibkr_assets.checks.compliance` then stop the order stages.

Beside the checks it shows each trade's economics over the holding period
(:func:`ibkr_assets.quant.decision.trade_economics`): expected return (the alpha stage's
``expected_return``), the trade's one-σ risk and the cost model's cost, in USD — the ``trades``
list of the JSON report and a table in the metadata, with their totals.
"""

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import Table, decide_asset
from ibkr_assets.assets.ib_rules import ib_cost_model
from ibkr_assets.assets.journal import record_decision
from ibkr_assets.assets.partition import with_partition, without_partition
from ibkr_assets.assets.portfolio import current_weights, net_liquidation
from ibkr_assets.assets.records import frame_records
from ibkr_assets.assets.risk_model import risk_model_from_frame
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.quant.compliance import CheckResult, render_recommendation_markdown
from ibkr_assets.quant.decision import EX_ANTE, compliance_checks, cost_inputs, trade_economics
from ibkr_assets.resources.alerts import AlertDeliveryError, AlertResource
from ibkr_assets.resources.storage import StorageResource

#: The asset group of the compliance gate: the UI's search finds it by name.
GATE_GROUP = "compliance_gate"
RISK_REPORT = Table(
    {
        "check": ("string", "the compliance gate's check (one blocking asset check each)"),
        "value": ("float64", "measured: fraction of net liquidation (liquidity: of ADV)"),
        "limit": ("float64", "the limit of DecideConfig, in the value's unit"),
        "passed": ("bool", "value within the limit"),
        "excess": ("float64", "max(value - limit, 0), in the value's unit"),
        "detail": ("string", "how the value was measured"),
        "offenders": ("string", "symbols or sectors over the limit, comma-separated"),
    }
)


@decide_asset(
    RISK_REPORT,
    stage="6-compliance-gate",
    group=GATE_GROUP,
    kinds={"json"},
    ins={
        "overlaid_targets": dg.AssetIn(),
        "risk_model": dg.AssetIn(),
        "portfolio_snapshot": dg.AssetIn(),
        "universe": dg.AssetIn(),
        "feature_matrix": dg.AssetIn(),
        "alpha_scores": dg.AssetIn(),
        "quotes": dg.AssetIn(),
    },
)
def risk_report(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    storage: StorageResource,
    alerts: AlertResource,
    overlaid_targets: pd.DataFrame,
    risk_model: pd.DataFrame,
    portfolio_snapshot: pd.DataFrame,
    universe: pd.DataFrame,
    feature_matrix: pd.DataFrame,
    alpha_scores: pd.DataFrame,
    quotes: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """The compliance gate: the day's targets against every limit, one blocking check each; a
    breach blocks the order ticket and produces a recommendation-only report and an alert. Each
    trade's expected return, risk and cost are reported beside the checks."""
    partition = context.partition_key
    targets = without_partition(overlaid_targets)
    current = current_weights(portfolio_snapshot)
    nav = net_liquidation(portfolio_snapshot)
    weights = targets.set_index("symbol")["weight"]
    model = risk_model_from_frame(without_partition(risk_model))
    features = without_partition(feature_matrix)
    results = compliance_checks(
        weights,
        current,
        model,
        decide.compliance_limits(),
        without_partition(universe),
        features,
        nav,
    )
    names = weights.index.union(current.index)
    trades = trade_economics(
        weights,
        current,
        without_partition(alpha_scores).set_index("symbol")["expected_return"],
        cost_inputs(names, without_partition(quotes), features, model),
        ib_cost_model(decide.holding_period_sessions),
        nav,
    )
    # totals over the trades whose number is known (a cost without a quote is unknown)
    totals = {f"trades_{k}": float(trades[k].sum()) for k in ("expected_return", "risk", "cost")}
    totals["trades_net"] = totals["trades_expected_return"] - totals["trades_cost"]
    totals["trades_unknown_cost"] = int(trades["cost"].isna().sum())
    report = report_frame(results)
    passed = bool(report["passed"].all())
    ex_ante = {k: float(targets[k].iloc[0]) for k in EX_ANTE}
    payload = {
        "partition": partition,
        "passed": passed,
        "net_liquidation": nav,
        **ex_ante,
        "checks": frame_records(report),
        "holding_period_sessions": decide.holding_period_sessions,
        **totals,
        "trades": frame_records(trades),
    }
    path = storage.write_json(storage.report_path("risk_report", partition, "json"), payload)
    metadata: dict[str, Any] = {
        "passed": passed,
        "failed_checks": ", ".join(report.loc[~report["passed"], "check"]) or "none",
        "report": dg.MetadataValue.md(report.to_markdown(index=False)),
        **totals,
        # USD over the holding period; risk is each trade's own one-sigma move
        "trades": dg.MetadataValue.md(
            trades.head(30).to_markdown(
                index=False, floatfmt=("", ".4f", ",.2f", ",.2f", ",.2f", ",.2f", ",.2f")
            )
            if len(trades)
            else "none"
        ),
        "path": dg.MetadataValue.path(str(path)),
    }
    if not passed:
        metadata |= recommend_only(
            context, storage, alerts, targets, current, results, report, ex_ante, path
        )
    return dg.Output(with_partition(report, partition), metadata=metadata)


def report_frame(results: Sequence[CheckResult]) -> pd.DataFrame:
    """The :data:`RISK_REPORT` table: one row per check, its offenders comma-separated."""
    rows = [{**asdict(r), "check": r.name, "offenders": ", ".join(r.offenders)} for r in results]
    return pd.DataFrame(rows, columns=RISK_REPORT.names).astype(RISK_REPORT.dtypes)


def recommend_only(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    alerts: AlertResource,
    targets: pd.DataFrame,
    current: pd.Series,
    results: Sequence[CheckResult],
    report: pd.DataFrame,
    ex_ante: dict[str, float],
    report_path: Path,
) -> dict[str, Any]:
    """A breached gate: the recommendation-only report, the blocked decision journalled (with
    the risk report at ``report_path`` and the recommendation), and an error alert; returns the
    metadata that says where each went."""
    partition = context.partition_key
    weights = targets.set_index("symbol")["weight"]
    markdown = render_recommendation_markdown(partition, weights, results, current)
    rec = storage.write_text(storage.report_path("recommendation", partition, "md"), markdown)
    row = record_decision(
        storage,
        partition=partition,
        targets=targets,
        orders=pd.DataFrame(),
        files=[report_path, rec],
        ex_ante=ex_ante,
        constraints_passed=False,
    )
    body = "\n".join(
        f"- {r.check}: {r.value:.6g} > limit {r.limit:.6g} (by {r.excess:.6g}) {r.detail}"
        + (f"; offenders {r.offenders}" if r.offenders else "")
        for r in report[~report["passed"]].itertuples()
    )
    alert = send_alert(
        context,
        alerts,
        subject=f"Compliance gate blocked the order ticket for {partition}",
        body=f"{body}\nrecommendation only: {rec}",
    )
    return {
        "recommendation": dg.MetadataValue.path(str(rec)),
        "journal_row_hash": row["row_hash"],
        "alert": alert,
    }


def send_alert(
    context: dg.AssetExecutionContext, alerts: AlertResource, subject: str, body: str
) -> str:
    """Send an error alert; a delivery failure is logged (the alert is in the log sink anyway)
    and reported in the metadata rather than failing the asset."""
    try:
        alerts.send(subject=subject, body=body, severity="error")
    except AlertDeliveryError as exc:
        context.log.error(str(exc))
        return f"not delivered: {exc}"
    return "sent"
