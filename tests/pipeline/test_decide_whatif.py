"""what_if_orders against the simulator's Reg-T margin: an order far beyond the account's buying
power is sized down 20% per attempt until the broker's what-if passes, or dropped / kept."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ibkr_assets.assets import execution
from ibkr_assets.assets.catalog import daily_asset_kwargs
from ibkr_assets.assets.partition import with_partition
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.partitions import as_of
from ibkr_assets.quant.decision import ORDER_COST_COLUMNS
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.warehouse_io import WarehouseIOManager

SESSION = "2024-06-03"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("whatif")
    ib = IBResource(data_dir=str(data_dir), sim_symbols=60)
    broker = ib.broker_at(as_of(SESSION))
    contract = broker.resolve("AAPL")
    [quote] = broker.quotes([contract])
    nav = broker.account_summary().net_liquidation
    # about five times net liquidation: far beyond Reg-T buying power
    quantity = int(5 * nav / quote.mid)
    proposed = pd.DataFrame(
        {
            "symbol": ["AAPL"],
            "conid": [contract.conid],
            "action": ["BUY"],
            "quantity": [quantity],
            "limit_price": [round(quote.ask, 2)],
            "mid": [quote.mid],
            "notional": [quantity * quote.mid],
            "current_shares": [0.0],
            "target_shares": [float(quantity)],
            "target_weight": [5.0],
            "lot_size": [1],
            "order_ref": ["x"],
            "reason": ["test"],
        }
    )
    return data_dir, ib, proposed, quantity


def run_what_if(world, config: DecideConfig) -> pd.DataFrame:
    data_dir, ib, proposed, _ = world

    @dg.asset(name="proposed_orders", **daily_asset_kwargs("handmade"))
    def source(context) -> pd.DataFrame:
        return with_partition(proposed, context.partition_key)

    io = WarehouseIOManager(database=str(data_dir / "warehouse.duckdb"))
    dg.materialize(
        [source, execution.what_if_orders],
        partition_key=SESSION,
        resources={"io_manager": io, "ib": ib, "decide": config},
        instance=dg.DagsterInstance.ephemeral(),
    )
    import duckdb

    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.sql("select * from decide.what_if_orders order by attempt").df()


def _no_costs(orders: pd.DataFrame) -> pd.DataFrame:
    """Costs of no interest here: zero."""
    return pd.DataFrame(0.0, index=orders.index, columns=list(ORDER_COST_COLUMNS))


def test_a_commission_far_from_ibs_is_named():
    rows = pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "CCC", "DDD"],
            "attempt": [1, 1, 1, 0],
            "commission": [1.00, 1.00, np.nan, np.nan],
            "model_commission": [1.40, 2.10, 5.00, np.nan],  # within, beyond, IB unknown
        }
    )
    assert execution.commission_disagreements(rows) == {"BBB#1": "model $2.10 vs IB $1.00"}


def shrink_chain(quantity: int, tries: int) -> list[int]:
    sizes = [quantity]
    for _ in range(tries - 1):
        sizes.append(min(math.floor(sizes[-1] * 0.8), sizes[-1] - 1))
    return sizes


def test_oversized_order_is_resized_until_margin_passes(world):
    *_, quantity = world
    frame = run_what_if(world, DecideConfig(whatif_max_attempts=8))
    assert list(frame["quantity"]) == shrink_chain(quantity, len(frame))
    assert not frame["passed"].iloc[0], "5x NAV must fail the margin what-if"
    assert frame["passed"].iloc[-1] and not frame["passed"].iloc[:-1].any()
    assert (frame["decision"] == "resized").all()
    assert list(frame["final"]) == [False] * (len(frame) - 1) + [True]
    # the passing size keeps excess liquidity non-negative; the failing ones did not (or IB
    # refused them)
    assert frame["excess_liquidity_after"].iloc[-1] >= 0
    # the cost model's commission beside IB's: the paper exchange charges IB's schedule
    assert (frame["model_commission"] > 0).all()
    np.testing.assert_allclose(frame["model_commission"], frame["commission"], rtol=0.05)
    assert execution.commission_disagreements(frame) == {}
    ticket = execution.final_orders(frame, "LMT", _no_costs)
    assert list(ticket["quantity"]) == [frame["quantity"].iloc[-1]]
    assert ticket["whatif_attempts"].iloc[0] == len(frame)


def test_order_is_dropped_or_kept_when_attempts_run_out(world):
    *_, quantity = world
    dropped = run_what_if(world, DecideConfig(whatif_max_attempts=2))
    assert list(dropped["quantity"]) == shrink_chain(quantity, 2)
    assert not dropped["passed"].any() and (dropped["decision"] == "dropped").all()
    assert execution.final_orders(dropped, "LMT", _no_costs).empty
    kept = run_what_if(world, DecideConfig(whatif_max_attempts=2, whatif_on_failure="keep"))
    assert (kept["decision"] == "kept_failing").all()
    ticket = execution.final_orders(kept, "LMT", _no_costs)
    assert list(ticket["quantity"]) == [shrink_chain(quantity, 2)[-1]]
