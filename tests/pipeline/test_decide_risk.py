"""Stages 4–5 (risk_model, target_weights) on hand-made upstream data: the stored risk model is
the quant model in factor form (no n² covariance rows) and gives the numbers the n²-row table
gave, and every optimiser limit holds at the optimum."""

from __future__ import annotations

import dataclasses

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from ibkr_assets.assets import risk_model, targets
from ibkr_assets.assets.ib_rules import ib_cost_model
from ibkr_assets.assets.partition import without_partition
from ibkr_assets.assets.portfolio import current_weights, net_liquidation
from ibkr_assets.assets.risk_model import risk_model_frame, risk_model_from_frame
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.quant.decision import (
    EX_ANTE,
    compliance_checks,
    cost_inputs,
    optimise_targets,
    sector_map,
    trading_costs,
)
from ibkr_assets.quant.risk_model import RiskModel, build_risk_model
from ibkr_assets.resources.warehouse_io import WarehouseIOManager
from tests.pipeline.decide_fixtures import SECTORS, SESSION, SYMBOLS, UPSTREAM


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("risk")
    config = DecideConfig(sector_cap=0.3)
    result = dg.materialize(
        [*UPSTREAM, risk_model.risk_model, targets.target_weights],
        partition_key=SESSION,
        resources={
            "io_manager": WarehouseIOManager(database=str(data_dir / "warehouse.duckdb")),
            "decide": config,
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        tables = {
            name: con.sql(f"select * from decide.{name}").df()
            for name in ("risk_model", "target_weights")
        }
        upstream = {
            name: without_partition(con.sql(f"select * from handmade.{name}").df())
            for name in UPSTREAM_TABLES
        }
    return result, config, tables, upstream["daily_bars"], upstream


#: The hand-made upstream tables the target_weights asset reads, and the bars.
UPSTREAM_TABLES = ("daily_bars", "alpha_scores", "portfolio_snapshot", "universe", "quotes")
UPSTREAM_TABLES += ("feature_matrix",)


def _closes(bars: pd.DataFrame) -> pd.DataFrame:
    return bars.pivot_table(index="session", columns="symbol", values="close")


def test_risk_model_table_round_trips_the_quant_model(run):
    _, config, tables, bars, _ = run
    expected = build_risk_model(_closes(bars), scenario_sessions=config.scenario_sessions)
    stored = without_partition(tables["risk_model"])
    got = risk_model_from_frame(stored)
    assert got.symbols == expected.symbols
    # the factor form: the T x n scenarios, n means, three scalars; no n x n covariance rows
    n, sessions = len(got.symbols), len(got.scenarios)
    assert stored["kind"].value_counts().to_dict() == {
        "scenario": sessions * n,
        "mean": n,
        "shrinkage": 1,
        "shrinkage_target": 1,
        "periods_per_year": 1,
    }
    assert got.shrinkage_target == pytest.approx(expected.shrinkage_target, rel=1e-12)
    np.testing.assert_allclose(got.cov.to_numpy(), expected.cov.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        got.scenarios.to_numpy(), expected.scenarios.to_numpy(), rtol=1e-12, atol=1e-15
    )
    assert got.shrinkage == pytest.approx(expected.shrinkage, rel=1e-12)
    # the factors themselves bit for bit (the scenarios' memory layout decides the order in
    # which their column means sum)
    np.testing.assert_array_equal(got.loadings, expected.loadings)
    # and the conversion itself is lossless, whatever the order of the scenario rows
    frame = risk_model_frame(expected)
    again = risk_model_from_frame(frame.iloc[np.random.default_rng(3).permutation(len(frame))])
    assert sorted(again.symbols) == sorted(expected.symbols)
    again = risk_model_from_frame(
        pd.concat([frame[frame["kind"] != "scenario"], frame[frame["kind"] == "scenario"][::-1]])
    )
    pd.testing.assert_frame_equal(
        again.scenarios, expected.scenarios, check_freq=False, check_names=False
    )
    assert (again.shrinkage, again.shrinkage_target) == (
        expected.shrinkage,
        expected.shrinkage_target,
    )
    pd.testing.assert_frame_equal(again.cov, expected.cov, check_names=False)


def test_a_table_without_the_factor_form_is_refused_by_name(run):
    _, _, tables, _, _ = run
    stored = without_partition(tables["risk_model"])
    with pytest.raises(ValueError, match=r"shrinkage_target.*materialise risk_model"):
        risk_model_from_frame(stored[stored["kind"] != "shrinkage_target"])
    with pytest.raises(ValueError, match="scenarios do not cover"):
        risk_model_from_frame(stored.drop(index=stored.index[stored["kind"] == "scenario"][5]))


def _dense_table_model(model: RiskModel) -> RiskModel:
    """The model as the n²-row table stored before the factor form gave it back: its target
    read as the stored annualised covariance's mean variance, per session."""
    target = float(np.mean(np.diag(model.cov.to_numpy()))) / model.periods_per_year
    return dataclasses.replace(model, shrinkage_target=target)


def test_the_factor_table_gives_the_dense_tables_targets_and_var(run):
    """The stored factor form changes no number the daily job produces: the asset's targets and
    ex-ante figures, and the gate's historical and parametric VaR of them, equal (to 1e-10)
    those of the model the n²-row covariance table gave back."""
    _, config, tables, bars, up = run
    dense = _dense_table_model(
        build_risk_model(_closes(bars), scenario_sessions=config.scenario_sessions)
    )
    costs, _ = trading_costs(
        ib_cost_model(config.holding_period_sessions),
        cost_inputs(dense.symbols, up["quotes"], up["feature_matrix"], dense),
        net_liquidation(up["portfolio_snapshot"]),
    )
    current = current_weights(up["portfolio_snapshot"])
    expected, _, _ = optimise_targets(
        up["alpha_scores"],
        dense,
        sector_map(up["universe"], dense.symbols),
        current,
        config.optimiser_config(),
        costs=costs,
    )
    got = without_partition(tables["target_weights"])
    assert got["symbol"].tolist() == expected["symbol"].tolist()
    for column in ("target_weight", *EX_ANTE):
        np.testing.assert_allclose(got[column], expected[column], rtol=0, atol=1e-10)
    assert got["target_weight"].abs().sum() > 0.3  # a book whose risk numbers are not all 0
    weights = got.set_index("symbol")["target_weight"]
    stored = risk_model_from_frame(without_partition(tables["risk_model"]))
    checks = [
        compliance_checks(
            weights,
            current,
            model,
            config.compliance_limits(),
            up["universe"],
            up["feature_matrix"],
            net_liquidation(up["portfolio_snapshot"]),
        )
        for model in (stored, dense)
    ]
    values = [{c.name: c.value for c in results} for results in checks]
    assert values[0].keys() == values[1].keys() and values[0]["var_parametric"] > 0
    for name, value in values[1].items():
        assert values[0][name] == pytest.approx(value, rel=0, abs=1e-10), name


def test_every_optimiser_limit_holds_at_the_optimum(run):
    result, config, tables, _, _ = run
    w = without_partition(tables["target_weights"]).set_index("symbol")
    weights = w["target_weight"]
    assert len(weights) == len(SYMBOLS)
    tol = 1e-6
    assert weights.abs().max() <= config.max_weight + tol
    assert weights.abs().sum() <= config.max_gross + tol
    assert weights.sum() <= 1 - config.cash_buffer + tol
    assert (weights >= -tol).all()
    sector = weights.groupby(pd.Series(SECTORS, index=SYMBOLS)).sum()
    assert sector.abs().max() <= 0.3 + tol
    assert weights.sum() > 0.3, "with positive alphas the book should be invested"
    meta = result.get_asset_materialization_events()[-1].materialization.metadata
    assert meta["ex_ante_volatility"].value > 0
    assert meta["ex_ante_cvar"].value >= meta["ex_ante_volatility"].value
