"""The compliance gate: blocking asset checks on ``risk_report``.

Each check reads its own row of the day's risk report (value, limit, breach, offenders) for the
partition being run — never another day's — and fails with ERROR severity when the limit is
breached. The checks are *blocking*: a failure stops every asset downstream of ``risk_report``
(proposed orders, what-if, the order ticket, submission), so a breach can never become an order.
``risk_report`` itself has already written the recommendation-only report and sent the alert.

Checks (limits in :class:`~ibkr_assets.decide_config.DecideConfig`):

* ``gross_exposure_change`` — |gross after − gross before| ≤ ``gross_change_max``
* ``var_historical`` — 1-day historical VaR over the scenarios ≤ ``var_historical_max``
* ``var_parametric`` — 1-day Gaussian VaR from the shrunk covariance ≤ ``var_parametric_max``
* ``concentration`` — largest |weight| ≤ ``concentration_max`` (12% by default)
* ``liquidity`` — each implied trade ≤ ``liquidity_max_adv`` × average daily volume (10%)
* ``sector_exposure`` — largest sector gross weight ≤ ``sector_max``
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from ibkr_assets.metadata import readable
from ibkr_assets.partitions import DAILY_PARTITIONS
from ibkr_assets.quant.compliance import CHECK_NAMES

#: The gate's checks, named as :mod:`ibkr_assets.quant.compliance` names them.
COMPLIANCE_CHECKS: tuple[str, ...] = CHECK_NAMES


def check_result(risk_report: pd.DataFrame, name: str) -> dg.AssetCheckResult:
    """The gate's verdict on one limit, from its row of the risk report."""
    rows = risk_report[risk_report["check"] == name]
    if len(rows) != 1:
        return dg.AssetCheckResult(
            passed=False,
            description=f"risk report has {len(rows)} rows for check {name!r} (expected 1)",
        )
    row = rows.iloc[0]
    passed = bool(row["passed"])
    verdict = "within" if passed else f"BREACH by {float(row['excess']):.6g} over"
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{name}: {float(row['value']):.6g} {verdict} limit {float(row['limit']):.6g}",
        metadata=readable(
            {
                "value": float(row["value"]),
                "limit": float(row["limit"]),
                "excess": float(row["excess"]),
                "detail": str(row["detail"]),
                "offenders": str(row["offenders"]),
            }
        ),
    )


def _gate_check(name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset="risk_report",
        name=name,
        blocking=True,
        partitions_def=DAILY_PARTITIONS,
        description=f"compliance gate: {name} within its limit (blocks the order ticket)",
    )
    def _check(risk_report: pd.DataFrame) -> dg.AssetCheckResult:
        return check_result(risk_report, name)

    return _check


COMPLIANCE_GATE: list[dg.AssetChecksDefinition] = [_gate_check(n) for n in COMPLIANCE_CHECKS]
