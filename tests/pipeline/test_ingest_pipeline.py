"""Stages 1–3 materialised on the simulated world with a temporary data root.

One NYSE session (Monday 2024-06-03) of a 60-stock simulated market: every ingest asset writes
its staging payload, the feature matrix passes its Great Expectations checks, alpha scores and
the portfolio snapshot are written; daily bars are fetched once and then served from the
DuckDB cache; and a backfill of the session after later sessions were run gives the very same
features (nothing dated after the session leaks in).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from ibkr_assets.assets import features, ingest, portfolio, signals
from ibkr_assets.assets.market_data import fetch_each
from ibkr_assets.broker.models import Contract, Order
from ibkr_assets.partitions import as_of
from ibkr_assets.quant.movers import select_movers
from ibkr_assets.resources import build_resources

SESSION = "2024-06-03"
PREVIOUS = "2024-05-31"  # Friday
LATER = "2024-06-10"
N_SYMBOLS = 60
STAGING = {
    "universe.json",
    "top_movers.json",
    "quotes.json",
    "daily_bars.parquet",
    "fundamentals.parquet",
    "fundamentals_missing.json",
    "headlines.json",
    "headline_history.parquet",
    "macro_gauges.parquet",
    "social_chatter.parquet",
}
ASSETS = dg.load_assets_from_modules([ingest, features, signals, portfolio])


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.resources = build_resources(str(root))
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, partition: str, selection: list[str] | None = None) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            ASSETS,
            partition_key=partition,
            resources=self.resources,
            instance=self.instance,
            selection=selection,
        )
        assert result.success
        return result


def _meta(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey(asset)
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IBKR_SIM_SYMBOLS", str(N_SYMBOLS))
        mp.delenv("IBKR_WATCHLIST", raising=False)
        yield World(tmp_path_factory.mktemp("pipeline-data"))


@pytest.fixture(scope="module")
def first_run(world: World) -> dg.ExecuteInProcessResult:
    return world.run(SESSION)


def test_stages_one_to_three_write_every_output(world: World, first_run) -> None:
    staged = {p.name for p in (world.root / "staging" / SESSION).iterdir()}
    assert staged == STAGING
    assert not list(world.root.rglob("*.tmp")), "no temporary file left behind"
    assert (world.root / "sim" / "paper.sqlite").exists(), "the paper account is under the root"

    universe = json.loads((world.root / "staging" / SESSION / "universe.json").read_text())
    assert len(universe) == N_SYMBOLS and {u["reason"] for u in universe} == {"watchlist"}

    matrix = pd.read_parquet(world.root / "features" / f"{SESSION}.parquet")
    assert len(matrix) == N_SYMBOLS and matrix["symbol"].is_unique
    assert (matrix["price"] > 0).all() and (matrix["adv"] > 0).all()
    shares = pd.DataFrame(universe).set_index("symbol")["adv"]
    np.testing.assert_allclose(matrix["avg_volume"], shares.loc[matrix["symbol"]].to_numpy())
    # where the numbers came from: the sim backend serves live data (type 1) and IB's volume
    assert (matrix["market_data_type"] == "live").all()
    assert (matrix["avg_volume_source"] == "ib").all()
    assert _meta(first_run, "quotes")["market_data_types"] == {"live": N_SYMBOLS}
    assert _meta(first_run, "universe")["avg_volume_sources"] == {"ib": N_SYMBOLS}
    assert _meta(first_run, "feature_matrix")["market_data_types"] == {"live": N_SYMBOLS}
    assert matrix["piotroski"].between(0, 9).all()
    headlines = first_run.output_for_node("headlines", "headlines")
    assert matrix["headlines_24h"].sum() == len(headlines) > 0
    with_news = matrix["headlines_24h"] > 0
    assert (matrix.loc[with_news, "sentiment_z"] != 0).any()
    assert (matrix.loc[~with_news, "sentiment_z"] == 0).all(), "no news, no signal"

    checks = {c.check_name: c.passed for c in first_run.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(checks, True) and len(checks) == 5

    alpha = first_run.output_for_node("alpha_scores")
    assert len(alpha) == N_SYMBOLS and alpha["alpha_score"].between(-1, 1).all()
    assert (world.root / "plots" / SESSION / "alpha_scores.png").read_bytes()[:4] == b"\x89PNG"
    plot_md = _meta(first_run, "alpha_scores")["alpha_plot"]
    assert plot_md.startswith("![alpha scores](data:image/png;base64,")

    snapshot = json.loads((world.root / "positions" / f"{SESSION}.json").read_text())
    assert snapshot["session"] == SESSION and snapshot["net_liquidation"] > 0
    assert snapshot["positions"][-1]["symbol"] == "CASH"

    macro = _meta(first_run, "macro_gauges")
    assert macro["regime"] in ("risk_on", "neutral", "risk_off")
    assert 1.0 < macro["latest_ten_year_yield"] < 10.0, "TNX (yield x 10) is scaled to percent"


def test_daily_bars_are_fetched_once_then_cached(world: World, first_run) -> None:
    meta = _meta(first_run, "daily_bars")
    assert meta["bars_fetched"] == N_SYMBOLS * 600 and meta["bars_cached"] == 0
    again = _meta(world.run(SESSION, selection=["daily_bars"]), "daily_bars")
    assert again["bars_fetched"] == 0 and again["bars_cached"] == N_SYMBOLS * 600
    assert again["symbols_fetched"] == 0
    next_day = _meta(world.run("2024-06-04", selection=["universe", "daily_bars"]), "daily_bars")
    assert next_day["bars_fetched"] == N_SYMBOLS, "one new session per symbol"
    assert next_day["bars_cached"] == N_SYMBOLS * 599


def test_backfill_sees_nothing_after_the_session(world: World, first_run) -> None:
    before = pd.read_parquet(world.root / "features" / f"{SESSION}.parquet")
    world.run(LATER)  # the cache now holds bars, news and statements after SESSION
    rerun = world.run(SESSION)
    after = pd.read_parquet(world.root / "features" / f"{SESSION}.parquet")
    pd.testing.assert_frame_equal(before, after)

    assert (pd.to_datetime(after["last_session"]) == pd.Timestamp(PREVIOUS)).all()
    cutoff = pd.Timestamp(as_of(SESSION))
    headlines = rerun.output_for_node("headlines", "headlines")
    history = rerun.output_for_node("headlines", "headline_history")
    assert (pd.to_datetime(headlines["time"], utc=True) < cutoff).all()
    assert (pd.to_datetime(history["time"], utc=True) < cutoff).all()
    bars = rerun.output_for_node("daily_bars")
    assert pd.to_datetime(bars["session"]).max() == pd.Timestamp(PREVIOUS)
    statements = rerun.output_for_node("fundamentals")
    assert (pd.to_datetime(statements["report_date"]) < pd.Timestamp(SESSION)).all()

    with duckdb.connect(str(world.root / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            "select count(*) from features.feature_matrix where partition_date = ?", [SESSION]
        ).fetchone()
    assert rows == (N_SYMBOLS,), "a rerun replaces the partition's rows"


def test_movers_need_both_the_move_and_the_volume() -> None:
    movers = pd.DataFrame(
        {
            "symbol": ["UP", "DOWN", "QUIET", "THIN", "UP"],
            "change_pct": [6.0, -7.5, 5.0, 9.0, 6.0],
            "volume": [3e6, 5e6, 9e6, 1.5e6, 3e6],
            "avg_volume": [1e6, 2e6, 1e6, 1e6, 1e6],
        }
    )
    # QUIET moved exactly 5% (not more); THIN traded 1.5x its ADV; UP appears in two scanners
    assert select_movers(movers, 5.0, 2.0) == ["UP", "DOWN"]
    assert select_movers(movers, 4.0, 1.4) == ["UP", "DOWN", "QUIET", "THIN"]


def test_universe_adds_movers_and_records_unknown_symbols(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IBKR_SIM_SYMBOLS", str(N_SYMBOLS))
        mp.setenv("IBKR_WATCHLIST", '["AAPL", "msft", "ZZZZ"]')
        mp.setenv("IBKR_MOVER_MIN_CHANGE_PCT", "1.0")
        mp.setenv("IBKR_MOVER_MIN_VOLUME_RATIO", "1.0")
        world = World(tmp_path)
    result = world.run(SESSION, selection=["top_movers", "universe"])
    scans = result.output_for_node("top_movers")
    expected = scans.loc[
        (scans["change_pct"].abs() > 1.0) & (scans["volume"] > scans["avg_volume"])
    ]
    movers = set(expected["symbol"]) - {"AAPL", "MSFT"}
    assert movers, "the thresholds let some scanner hits through"
    universe = result.output_for_node("universe").set_index("symbol")
    assert universe.loc[["AAPL", "MSFT"], "reason"].tolist() == ["watchlist", "watchlist"]
    assert set(universe.index[universe["reason"] == "mover"]) == movers
    assert "ZZZZ" not in universe.index
    meta = _meta(result, "universe")
    assert meta["unknown_symbols"] == 1 and "ZZZZ" in meta["unknown_symbol_list"]


def test_holdings_join_the_universe_and_the_snapshot(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IBKR_SIM_SYMBOLS", str(N_SYMBOLS))
        mp.setenv("IBKR_WATCHLIST", '["AAPL"]')
        world = World(tmp_path)
    # buy on the Friday before, while the simulated market is open
    broker = world.resources["ib"].broker_at(datetime(2024, 5, 31, 15, 0, tzinfo=UTC))
    fill = broker.place(Order(contract=broker.resolve("KO"), action="BUY", quantity=100))
    assert fill.status == "Filled"

    result = world.run(SESSION, selection=["top_movers", "universe", "portfolio_snapshot"])
    universe = result.output_for_node("universe").set_index("symbol")
    assert (
        universe.loc["KO", "reason"] == "holding" and universe.loc["AAPL", "reason"] == "watchlist"
    )

    snapshot = result.output_for_node("portfolio_snapshot").set_index("symbol")
    assert (
        snapshot.loc["KO", "quantity"] == 100 and snapshot.loc["KO", "sector"] == "Consumer Staples"
    )
    saved = json.loads((tmp_path / "positions" / f"{SESSION}.json").read_text())
    np.testing.assert_allclose(snapshot["weight"].sum(), 1.0, rtol=1e-9)
    np.testing.assert_allclose(
        snapshot.loc["KO", "market_value"], snapshot.loc["KO", "weight"] * saved["net_liquidation"]
    )
    assert saved["positions"][0]["symbol"] == "KO" and saved["gross_position_value"] > 0


def test_empty_news_day_and_unknown_symbol_do_not_break_the_run(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IBKR_SIM_SYMBOLS", str(N_SYMBOLS))
        mp.setenv("IBKR_WATCHLIST", '["AAPL", "MSFT", "NOTREAL"]')
        mp.setenv("IBKR_HEADLINE_HOURS", "0.0001")  # a window too short for any headline
        mp.setenv("IBKR_HEADLINE_HISTORY_DAYS", "1")
        world = World(tmp_path)
    result = world.run(SESSION)
    assert len(result.output_for_node("headlines", "headlines")) == 0
    matrix = result.output_for_node("feature_matrix")
    assert sorted(matrix["symbol"]) == ["AAPL", "MSFT"]
    assert (matrix["headlines_24h"] == 0).all() and (matrix["sentiment_z"] == 0).all()
    assert "NOTREAL" in _meta(result, "universe")["unknown_symbol_list"]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        (count,) = conn.execute("select count(*) from ingest.headlines").fetchone()
    assert count == 0, "the empty day is stored as an empty table, so reruns and loads work"


def test_parallel_fetch_matches_serial_and_records_failures(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IBKR_SIM_SYMBOLS", str(N_SYMBOLS))
        broker = World(tmp_path).resources["ib"].broker_at(as_of(SESSION))
    contracts = [broker.resolve(s) for s in ("AAPL", "MSFT", "KO", "XOM")]
    contracts.append(Contract(conid=999_999_999, symbol="GHOST", sec_type="STK"))

    def fetch(contract: Contract) -> list:
        return broker.history(contract, duration="30 D", end=as_of(SESSION))

    serial, serial_failed = fetch_each(fetch, contracts, workers=1)
    parallel, parallel_failed = fetch_each(fetch, contracts, workers=4)
    assert list(serial) == ["AAPL", "MSFT", "KO", "XOM"] and serial == parallel
    assert set(serial_failed) == set(parallel_failed) == {"GHOST"}
    assert "200" in parallel_failed["GHOST"], "IB's 'no security definition' code is kept"
