"""Stage 5–6: the news & sentiment overlay and the risk report behind the compliance gate.

``risk_report`` is the compliance gate's asset (group ``compliance_gate``, stage
``6-compliance-gate``): its six blocking asset checks are the gate.

* ``overlaid_targets``: the optimiser's weights after the YAML overlay rules
  (:mod:`ibkr_assets.quant.overlay`), e.g. drop a name whose sentiment z-score is below −2.5, or
  set it to zero when a headline says "FDA ban". Every override is kept with its rule and reason.
* ``risk_report``: every compliance number for the overlaid targets — gross exposure change,
  historical and parametric VaR, concentration, liquidity of each implied trade against ADV,
  sector exposure — against the limits of :class:`~ibkr_assets.decide_config.DecideConfig`
  (:mod:`ibkr_assets.quant.compliance`). Written to ``reports/risk_report_YYYY-MM-DD.json`` and
  DuckDB. When any limit is breached it also writes the recommendation-only report
  ``reports/recommendation_YYYY-MM-DD.md`` (targets, failed checks and by how much), journals the
  blocked decision, and sends an alert; the blocking checks in
  :mod:`ibkr_assets.checks.compliance` then stop the order stages.
"""

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import Table
from ibkr_assets.assets.decide_common import (
    current_weights,
    decide_asset,
    frame_records,
    net_liquidation,
    risk_model_from_frame,
)
from ibkr_assets.assets.journal import EX_ANTE, record_decision
from ibkr_assets.assets.partition import with_partition, without_partition
from ibkr_assets.assets.risk import TARGETS
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.metadata import readable
from ibkr_assets.partitions import as_of
from ibkr_assets.quant.compliance import render_recommendation_markdown
from ibkr_assets.quant.decision import compliance_checks, overlay_targets
from ibkr_assets.quant.overlay import load_rules
from ibkr_assets.resources.alerts import AlertDeliveryError, AlertResource
from ibkr_assets.resources.storage import StorageResource

#: The asset group of the compliance gate: the UI's search finds it by name.
GATE_GROUP = "compliance_gate"
OVERLAID = TARGETS + Table(
    {
        "weight": ("float64", "weight after the news rules: what the desk holds, fraction of NAV"),
        "override_rule": ("string", "the overlay rule(s) that changed the weight; empty: none"),
        "override_reason": ("string", "why the rule fired, e.g. the matching headline"),
    }
)
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
    OVERLAID,
    stage="5-overlay",
    kinds={"yaml"},
    ins={
        "target_weights": dg.AssetIn(),
        "feature_matrix": dg.AssetIn(),
        "headlines": dg.AssetIn(),
    },
)
def overlaid_targets(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    target_weights: pd.DataFrame,
    feature_matrix: pd.DataFrame,
    headlines: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """The targets after the news & sentiment rules: what the desk would actually hold, with each
    override, its rule and its reason."""
    partition = context.partition_key
    rules = load_rules(decide.overlay_rules)
    frame, result = overlay_targets(
        without_partition(target_weights),
        rules,
        without_partition(feature_matrix),
        without_partition(headlines),
        as_of(partition),
    )
    overrides = result.overrides_frame()
    return dg.Output(
        with_partition(frame, partition),
        metadata=readable(
            {
                "overrides": len(overrides),
                "rules": ", ".join(r.name for r in rules),
                "override_table": dg.MetadataValue.md(overrides.to_markdown(index=False))
                if len(overrides)
                else "none",
                "gross": float(frame["weight"].abs().sum()),
            }
        ),
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
) -> dg.Output[pd.DataFrame]:
    """The compliance gate: the day's targets against every limit, one blocking check each; a
    breach blocks the order ticket and produces a recommendation-only report and an alert."""
    partition = context.partition_key
    model = risk_model_from_frame(without_partition(risk_model))
    targets = without_partition(overlaid_targets)
    weights = targets.set_index("symbol")["weight"]
    current = current_weights(portfolio_snapshot)
    nav = net_liquidation(portfolio_snapshot)
    results = compliance_checks(
        weights,
        current,
        model,
        decide.compliance_limits(),
        without_partition(universe),
        without_partition(feature_matrix),
        nav,
    )
    report = pd.DataFrame(
        {
            "check": [r.name for r in results],
            "value": [r.value for r in results],
            "limit": [r.limit for r in results],
            "passed": [r.passed for r in results],
            "excess": [r.excess for r in results],
            "detail": [r.detail for r in results],
            "offenders": [", ".join(r.offenders) for r in results],
        }
    ).astype(RISK_REPORT.dtypes)
    passed = bool(report["passed"].all())
    ex_ante = {k: float(targets[k].iloc[0]) for k in EX_ANTE}
    payload = {
        "partition": partition,
        "passed": passed,
        "net_liquidation": nav,
        **ex_ante,
        "checks": frame_records(report),
    }
    written = [storage.write_json(storage.report_path("risk_report", partition, "json"), payload)]
    failed = report[~report["passed"]]
    metadata: dict = {
        "passed": passed,
        "failed_checks": ", ".join(failed["check"]) or "none",
        "report": dg.MetadataValue.md(report.to_markdown(index=False)),
        "path": dg.MetadataValue.path(str(written[0])),
    }
    if not passed:
        markdown = render_recommendation_markdown(partition, weights, results, current)
        rec = storage.write_text(storage.report_path("recommendation", partition, "md"), markdown)
        written.append(rec)
        metadata["recommendation"] = dg.MetadataValue.path(str(rec))
        row = record_decision(
            storage,
            partition=partition,
            targets=targets,
            orders=pd.DataFrame(),
            files=written,
            ex_ante=ex_ante,
            constraints_passed=False,
        )
        metadata["journal_row_hash"] = row["row_hash"]
        body = "\n".join(
            f"- {r.check}: {r.value:.6g} > limit {r.limit:.6g} (by {r.excess:.6g}) {r.detail}"
            + (f"; offenders {r.offenders}" if r.offenders else "")
            for r in failed.itertuples()
        )
        metadata["alert"] = send_alert(
            context,
            alerts,
            subject=f"Compliance gate blocked the order ticket for {partition}",
            body=f"{body}\nrecommendation only: {rec}",
        )
    return dg.Output(with_partition(report, partition), metadata=metadata)


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
