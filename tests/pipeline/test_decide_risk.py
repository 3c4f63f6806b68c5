"""Stages 4–5 (risk_model, target_weights) on hand-made upstream data: the stored risk model is
the quant model, and every optimiser limit holds at the optimum."""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from ibkr_assets.assets import risk_model, targets
from ibkr_assets.assets.partition import without_partition
from ibkr_assets.assets.risk_model import risk_model_frame, risk_model_from_frame
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.quant.risk_model import build_risk_model
from ibkr_assets.resources.storage import WarehouseIOManager
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
        bars = con.sql("select * from handmade.daily_bars").df()
    return result, config, tables, bars


def test_risk_model_table_round_trips_the_quant_model(run):
    _, config, tables, bars = run
    closes = bars.pivot_table(index="session", columns="symbol", values="close")
    expected = build_risk_model(closes, scenario_sessions=config.scenario_sessions)
    got = risk_model_from_frame(without_partition(tables["risk_model"]))
    assert got.symbols == expected.symbols
    np.testing.assert_allclose(got.cov.to_numpy(), expected.cov.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        got.scenarios.to_numpy(), expected.scenarios.to_numpy(), rtol=1e-12, atol=1e-15
    )
    assert got.shrinkage == pytest.approx(expected.shrinkage, rel=1e-12)
    # and the conversion itself is lossless
    again = risk_model_from_frame(risk_model_frame(expected))
    pd.testing.assert_frame_equal(again.cov, expected.cov, check_names=False)


def test_every_optimiser_limit_holds_at_the_optimum(run):
    result, config, tables, _ = run
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
