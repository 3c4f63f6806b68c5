"""The pipeline's assets, one module per stage; ``definitions.py`` loads every module here.

The daily stages: :mod:`.ingest` (universe, quotes, daily_bars, fundamentals, headlines,
macro_gauges, top_movers, social_chatter), :mod:`.features` (feature_matrix and its data-quality
checks),
:mod:`.signals` (alpha_scores), :mod:`.portfolio` (portfolio_snapshot), :mod:`.risk_model`
(risk_model), :mod:`.targets` (target_weights), :mod:`.overlay` (overlaid_targets),
:mod:`.risk_report` (risk_report: the compliance gate), :mod:`.execution` (proposed_orders,
what_if_orders, order_ticket), :mod:`.submission` (submitted_orders), :mod:`.journal`
(decision_journal); weekly:
:mod:`.backtest` (rolling_backtest). What the stages share: :mod:`.catalog` (columns, owners,
tags, decorator arguments), :mod:`.partition` (the run's session and the partition column),
:mod:`.materialization` (metadata for reading), :mod:`.records` (a frame as JSON records).
"""

from __future__ import annotations

import importlib

import dagster as dg

#: The modules of the daily job's assets, stage by stage (the weekly backtest is separate).
DAILY_MODULES = (
    "ingest",
    "features",
    "signals",
    "portfolio",
    "risk_model",
    "targets",
    "overlay",
    "risk_report",
    "execution",
    "submission",
    "journal",
)


def daily_assets() -> list[dg.AssetsDefinition]:
    """Every asset of the daily job (stages 1–9), e.g. to ``dg.materialize`` one session on a
    temporary data root in a test or a benchmark."""
    modules = [importlib.import_module(f"{__name__}.{name}") for name in DAILY_MODULES]
    return list(dg.load_assets_from_modules(modules))


def daily_checks() -> list[dg.AssetChecksDefinition]:
    """Every asset check of the daily job: data quality and the compliance gate."""
    from ibkr_assets import checks

    return list(dg.load_asset_checks_from_package_module(checks))
