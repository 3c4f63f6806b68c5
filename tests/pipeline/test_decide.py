"""Stages 1–9 materialised on the simulated world (60 symbols, temporary data root): the order
ticket and the journal, the optimiser limits at the optimum, idempotent submission across a
crash. Each runs on every Broker backend (sim; tws and webapi through their simulated gateway on
loopback, with the world's stocks as the watch-list, as the demo has it); the journal's
tamper check on the simulator only. The gate blocking a breach is in test_decide_gate.py
(hand-made upstream data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ibkr_assets.assets import daily_assets, daily_checks, journal, submission
from ibkr_assets.assets.execution import final_orders, order_from_row, read_ticket
from ibkr_assets.assets.ib_rules import ib_cost_model
from ibkr_assets.broker.sim import simulated_stocks
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.partitions import as_of
from ibkr_assets.quant.costs import order_cost
from ibkr_assets.quant.decision import ORDER_COST_COLUMNS, TRADE_ECONOMICS_COLUMNS, order_costs
from ibkr_assets.quant.journal import read_journal, verify_journal
from ibkr_assets.resources import build_resources
from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.settings import load_settings
from tests.backends import SEED, broker_fields
from tests.journal_key import TEST_KEY

SESSION = "2024-06-03"
SYMBOLS = 60


ASSETS = daily_assets()
CHECKS = daily_checks()


def run_day(data_dir: Path, decide: DecideConfig, partition: str = SESSION, broker=None):
    """Materialise every daily asset and check of one session, through the ``broker`` settings
    given (default: the environment's, the simulator); returns the result."""
    settings = load_settings()
    if broker is not None:
        settings = settings.updated(broker=broker)
        if broker["backend"] != "sim":  # over a socket the pipeline needs a watch-list
            settings = settings.updated(pipeline={"watchlist": simulated_stocks(SEED, SYMBOLS)})
    resources = build_resources(data_dir=str(data_dir), settings=settings)
    resources["decide"] = decide
    resources["alerts"] = AlertResource(log_path=str(data_dir / "alerts.jsonl"))
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=partition,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    ), resources


@pytest.fixture(scope="module", autouse=True)
def _small_world():
    mp = pytest.MonkeyPatch()
    mp.setenv("IBKR_SIM_SYMBOLS", str(SYMBOLS))
    mp.setenv("IBKR_SENTIMENT_MODEL", "lexicon")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def happy(tmp_path_factory, backend):
    data_dir = tmp_path_factory.mktemp(f"happy-{backend}")
    with (
        broker_fields(backend, data_dir, as_of(SESSION), SYMBOLS) as broker,
        pytest.MonkeyPatch.context() as mp,
    ):
        # the gateways' limits are off: so is the pacing (a process setting, read by the IB
        # resource from the environment, not one of the broker fields it carries)
        mp.setenv("IBKR_PACING", "false")
        result, resources = run_day(data_dir, DecideConfig(), broker=broker)
        yield data_dir, result, resources
        resources["ib"].close()


def test_daily_run_writes_ticket_and_journal(happy):
    data_dir, result, _ = happy
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    ticket = json.loads((data_dir / "reports" / f"order_ticket_{SESSION}.json").read_text())
    assert ticket["partition"] == SESSION and ticket["order_count"] == len(ticket["orders"])
    assert ticket["order_count"] > 0, "a fresh paper account should buy into the targets"
    for order in ticket["orders"]:
        assert order["quantity"] > 0 and order["action"] in ("BUY", "SELL")
        assert order["order_ref"].startswith("ibkr-agent")
    assert len({o["order_ref"] for o in ticket["orders"]}) == len(ticket["orders"])
    for order in ticket["orders"]:  # the cost model's columns add up
        parts = order["cost_commission"] + order["cost_spread"] + order["cost_impact"]
        assert order["cost_total"] == pytest.approx(parts) and order["cost_total"] > 0
        assert order["cost_bp"] == pytest.approx(order["cost_total"] / order["notional"] * 1e4)
    report = json.loads((data_dir / "reports" / f"risk_report_{SESSION}.json").read_text())
    assert report["passed"] is True
    # each trade's economics over the holding period: columns present, net adds up, totals
    trades = pd.DataFrame(report["trades"])
    assert list(trades.columns) == list(TRADE_ECONOMICS_COLUMNS)
    assert len(trades) >= len(ticket["orders"]) > 0
    np.testing.assert_allclose(trades["net"], trades["expected_return"] - trades["cost"])
    assert (trades[["notional", "risk", "cost"]] > 0).all().all()
    for column in ("expected_return", "risk", "cost", "net"):
        assert report[f"trades_{column}"] == pytest.approx(trades[column].sum())
    assert report["trades_unknown_cost"] == 0
    assert not (data_dir / "reports" / f"recommendation_{SESSION}.md").exists()
    # gate checks ran for this partition and passed
    evaluations = result.get_asset_check_evaluations()
    gate = [e for e in evaluations if e.asset_key == dg.AssetKey("risk_report")]
    assert len(gate) == 6 and all(e.passed for e in gate)
    # journal: one row, verifies, names the ticket's hash
    journal = pd.read_parquet(data_dir / "decision_log")
    assert len(journal) == 1 and bool(journal["constraints_passed"].iloc[0])
    files = json.loads(journal["files_sha256"].iloc[0])
    assert f"reports/order_ticket_{SESSION}.json" in files
    # drivers: every name held, largest weight first, its five largest alpha contributions
    drivers = json.loads(journal["top_drivers"].iloc[0])
    weights = [abs(d["weight"]) for d in drivers]
    assert drivers and 0 not in weights and weights == sorted(weights, reverse=True)
    assert all(len(d["drivers"].split("; ")) == 5 for d in drivers)
    assert verify_journal(data_dir / "decision_log", key=TEST_KEY).ok


def test_targets_respect_the_optimiser_limits(happy):
    data_dir, _, resources = happy
    import duckdb

    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        w = con.sql("select target_weight, sector from decide.target_weights").df()
    decide = resources["decide"]
    assert w["target_weight"].abs().max() <= decide.max_weight + 1e-6
    assert w["target_weight"].abs().sum() <= decide.max_gross + 1e-6
    assert w["target_weight"].sum() <= 1 - decide.cash_buffer + 1e-6
    assert (w["target_weight"] >= -1e-6).all()  # long-only default


def test_submission_is_idempotent_across_a_crash(happy):
    data_dir, _, resources = happy
    ticket = read_ticket(data_dir / "reports" / f"order_ticket_{SESSION}.json")
    half = ticket.head(len(ticket) // 2)
    broker = resources["ib"].broker_at(as_of(SESSION))
    assert len(ticket) >= 3
    # a previous run sent half the ticket, then crashed before recording anything
    for _, row in half.iterrows():
        broker.place(order_from_row(row, str(row["order_type"])))
    # ... and, in an earlier attempt on this session, one more name at another size (so under
    # another order_ref): it must not be bought twice either
    other = ticket.iloc[-1]
    resized = order_from_row(other, str(other["order_type"]), quantity=other["quantity"] - 1)
    broker.place(resized.model_copy(update={"order_ref": f"ibkr-agent:{SESSION}:0123456789ab"}))
    resources["ib"].close()  # the crashed run's connection is gone (one per client id at IB)

    decide = DecideConfig(auto_submit=True)

    def submit():
        res = {k: resources[k] for k in ("ib", "storage", "io_manager")}
        return dg.materialize(
            [submission.submitted_orders],
            partition_key=SESSION,
            resources={**res, "decide": decide},
            instance=dg.DagsterInstance.ephemeral(),
            selection=[submission.submitted_orders],
        )

    first = json.loads(
        (submit(), (data_dir / "reports" / f"submitted_orders_{SESSION}.json").read_text())[1]
    )["orders"]
    outcomes = pd.Series([o["outcome"] for o in first]).value_counts().to_dict()
    assert outcomes.get("already_sent", 0) + outcomes.get("already_executed", 0) == len(half)
    assert outcomes.get("same_side_sent", 0) == 1
    assert outcomes.get("placed", 0) == len(ticket) - len(half) - 1
    [skipped] = [o for o in first if o["outcome"] == "same_side_sent"]
    assert skipped["symbol"] == other["symbol"]
    assert all(o["order_id"] for o in first if o["outcome"] == "placed")
    # and a second rerun sends nothing at all
    second = json.loads(
        (submit(), (data_dir / "reports" / f"submitted_orders_{SESSION}.json").read_text())[1]
    )["orders"]
    assert not [o for o in second if o["outcome"] == "placed"]
    broker = resources["ib"].broker_at(as_of(SESSION))
    refs = [s.order_ref for s in [*broker.open_orders(), *broker.completed_orders()]]
    for ref in ticket["order_ref"].iloc[:-1]:
        assert refs.count(ref) == 1, f"{ref} sent {refs.count(ref)} times"
    assert other["order_ref"] not in refs


def test_ticket_takes_the_final_size_of_each_order():
    def row(symbol, attempt, quantity, passed, decision, final):
        return {
            "symbol": symbol,
            "conid": 1,
            "action": "BUY",
            "attempt": attempt,
            "quantity": quantity,
            "limit_price": 10.01,
            "mid": 10.0,
            "passed": passed,
            "decision": decision,
            "final": final,
            "order_ref": f"ref-{symbol}-{quantity}",
            "maint_margin_after": 1.0,
            "commission": 1.0,
        }

    what_if = pd.DataFrame(
        [
            row("AAA", 1, 100, True, "accepted", True),
            row("BBB", 1, 500, False, "resized", False),
            row("BBB", 2, 400, False, "resized", False),
            row("BBB", 3, 320, True, "resized", True),
            row("CCC", 1, 50, False, "dropped", False),
            row("CCC", 2, 40, False, "dropped", False),
            row("DDD", 0, 0, False, "no_trade", False),
        ]
    )
    # the cost model's inputs, fixed: $10 mid, 1 cent half spread, $10M a day, 2 % a day
    inputs = pd.DataFrame(
        {"price": 10.0, "half_spread": 0.01, "adv": 1e7, "vol": 0.02}, index=["AAA", "BBB"]
    )
    model = ib_cost_model()

    def costs(orders: pd.DataFrame) -> pd.DataFrame:
        return order_costs(model, orders, inputs)

    ticket = final_orders(what_if, "LMT", costs).set_index("symbol")
    assert list(ticket.index) == ["AAA", "BBB"]
    for symbol, shares in (("AAA", 100), ("BBB", 320)):
        want = order_cost(model, shares, 10.0, 0.01, 1e6, 0.02)
        got = ticket.loc[symbol, list(ORDER_COST_COLUMNS)]
        assert got["cost_commission"] == pytest.approx(want.commission)
        assert got["cost_spread"] == pytest.approx(want.spread) == pytest.approx(shares * 0.01)
        assert got["cost_impact"] == pytest.approx(want.impact) and want.impact > 0
        assert got["cost_total"] == pytest.approx(want.total)
        assert got["cost_bp"] == pytest.approx(want.total / (shares * 10.0) * 1e4)
    assert list(ticket["quantity"]) == [100, 320]
    assert list(ticket["whatif_attempts"]) == [1, 3]
    assert list(ticket["whatif_decision"]) == ["accepted", "resized"]
    assert ticket.loc["BBB", "notional"] == pytest.approx(3200.0)
    assert ticket.loc["BBB", "order_ref"] == "ref-BBB-320"
    assert final_orders(what_if, "MKT", costs)["limit_price"].isna().all()


@pytest.mark.backends("sim")
def test_rerun_appends_a_chained_row_and_an_edit_is_detected(happy, tmp_path):
    data_dir, _, resources = happy
    dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=SESSION,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=[journal.decision_journal],
    )
    log = data_dir / "decision_log"
    rows = read_journal(log)
    assert len(rows) == 2 and list(rows["partition"]) == [SESSION, SESSION]
    assert rows["prev_hash"].iloc[1] == rows["row_hash"].iloc[0]
    assert verify_journal(log, key=TEST_KEY).ok
    # tamper with a copy: change the first row's ex-ante return
    copy = tmp_path / "decision_log"
    shutil.copytree(log, copy)
    first = sorted(copy.glob("*.parquet"))[0]
    row = pd.read_parquet(first)
    row.loc[0, "ex_ante_return"] = row.loc[0, "ex_ante_return"] + 0.01
    row.to_parquet(first, index=False)
    result = verify_journal(copy, key=TEST_KEY)
    assert not result.ok and result.first_bad_row == 0
