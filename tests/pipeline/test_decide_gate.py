"""The compliance gate on hand-made upstream data (no broker needed): stages 4–7 are materialised
from small fixed frames named like the real ingest/signal assets, so every number is known."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ibkr_assets.assets import execution, overlay, risk_model, risk_report, targets
from ibkr_assets.checks.compliance import COMPLIANCE_CHECKS, COMPLIANCE_GATE
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.quant.journal import verify_journal
from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.resources.warehouse_io import WarehouseIOManager
from tests.journal_key import TEST_KEY
from tests.pipeline.decide_fixtures import EVENT_SYMBOL, OTHER_SESSION, SESSION, UPSTREAM

DECIDE = [
    risk_model.risk_model,
    targets.target_weights,
    overlay.overlaid_targets,
    risk_report.risk_report,
    execution.proposed_orders,
]


def run(data_dir, config: DecideConfig, partition: str = SESSION, instance=None, alerts=None):
    resources = {
        "io_manager": WarehouseIOManager(database=str(data_dir / "warehouse.duckdb")),
        "storage": StorageResource(data_dir=str(data_dir)),
        "decide": config,
        "alerts": alerts or AlertResource(log_path=str(data_dir / "alerts.jsonl")),
    }
    return dg.materialize(
        [*UPSTREAM, *DECIDE, *COMPLIANCE_GATE],
        partition_key=partition,
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def gate(result) -> dict[str, bool]:
    return {
        e.check_name: e.passed
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("risk_report")
    }


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_gate_passes_and_orders_are_proposed(tmp_path):
    config = DecideConfig()
    result = run(tmp_path, config)
    assert result.success
    assert gate(result) == dict.fromkeys(COMPLIANCE_CHECKS, True)
    assert "proposed_orders" in materialized(result)
    report = json.loads((tmp_path / "reports" / f"risk_report_{SESSION}.json").read_text())
    assert report["passed"] is True and len(report["checks"]) == len(COMPLIANCE_CHECKS)
    conc = next(c for c in report["checks"] if c["check"] == "concentration")
    assert conc["value"] <= config.max_weight + 1e-6
    assert not (tmp_path / "reports" / f"recommendation_{SESSION}.md").exists()
    assert not (tmp_path / "alerts.jsonl").exists()
    import duckdb

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        targets = con.sql("select * from decide.overlaid_targets").df().set_index("symbol")
    event = targets.loc[EVENT_SYMBOL]
    assert event["target_weight"] > 0 and event["weight"] == 0
    assert event["override_rule"] == "event_risk_headline"
    assert "FDA ban" in event["override_reason"]
    assert (targets.drop(index=EVENT_SYMBOL)["override_rule"] == "").all()
    # each order (from cash: weight x NAV of $1e6) against the bars' 20-session dollar volume
    # (feature matrix adv = $5e7), not against the broker-reported volume of the universe
    liquidity = next(c for c in report["checks"] if c["check"] == "liquidity")
    largest_order = targets["weight"].abs().max() * 1e6
    assert liquidity["value"] == pytest.approx(largest_order / 5e7, rel=1e-6)


def test_concentration_breach_blocks_orders_writes_recommendation_and_alerts(tmp_path):
    result = run(tmp_path, DecideConfig(concentration_max=0.01))
    assert not result.success
    verdicts = gate(result)
    assert verdicts["concentration"] is False
    assert set(verdicts) == set(COMPLIANCE_CHECKS)
    # blocked: nothing downstream of the risk report was produced
    assert "risk_report" in materialized(result)
    assert "proposed_orders" not in materialized(result)
    report = json.loads((tmp_path / "reports" / f"risk_report_{SESSION}.json").read_text())
    conc = next(c for c in report["checks"] if c["check"] == "concentration")
    assert conc["passed"] is False and conc["limit"] == pytest.approx(0.01)
    np.testing.assert_allclose(conc["excess"], conc["value"] - 0.01, rtol=1e-12)
    recommendation = (tmp_path / "reports" / f"recommendation_{SESSION}.md").read_text()
    assert "concentration" in recommendation
    assert f"{conc['excess']:.4f}" in recommendation
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    [alert] = alerts
    assert alert["severity"] == "error" and SESSION in alert["subject"]
    assert "concentration" in alert["body"] and "recommendation" in alert["body"]
    journal = pd.read_parquet(tmp_path / "decision_log")
    assert len(journal) == 1 and not bool(journal["constraints_passed"].iloc[0])
    files = json.loads(journal["files_sha256"].iloc[0])
    assert set(files) == {
        f"reports/risk_report_{SESSION}.json",
        f"reports/recommendation_{SESSION}.md",
    }
    assert verify_journal(tmp_path / "decision_log", key=TEST_KEY).ok


def test_gate_checks_evaluate_only_their_partition(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    blocked = run(tmp_path, DecideConfig(concentration_max=0.01), SESSION, instance)
    passing = run(tmp_path, DecideConfig(), OTHER_SESSION, instance)
    assert gate(blocked)["concentration"] is False
    assert gate(passing)["concentration"] is True
    partitions = {e.partition for e in passing.get_asset_check_evaluations()}
    assert partitions == {OTHER_SESSION}
    # the earlier partition's failure is still what the instance records for it
    import duckdb

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        rows = con.sql(
            "select strftime(partition_date, '%Y-%m-%d') as d, passed from decide.risk_report "
            "where \"check\" = 'concentration' order by d"
        ).fetchall()
    assert rows == [(SESSION, False), (OTHER_SESSION, True)]


def test_undeliverable_alert_still_blocks_and_keeps_the_recommendation(tmp_path):
    # Slack chosen but no webhook or token: delivery fails, the gate's work must not be lost
    alerts = AlertResource(channel="slack", log_path=str(tmp_path / "alerts.jsonl"))
    result = run(tmp_path, DecideConfig(concentration_max=0.01), alerts=alerts)
    assert not result.success and gate(result)["concentration"] is False
    assert (tmp_path / "reports" / f"recommendation_{SESSION}.md").exists()
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("risk_report")
    ]
    assert event.materialization.metadata["alert"].value.startswith("not delivered")
    # the log sink still has it
    assert "Compliance gate" in (tmp_path / "alerts.jsonl").read_text()
