"""Data that could not be fetched is named, not hidden: a symbol the broker cannot serve shows up
in a warning of the run's log and in the asset's metadata, and the run goes on without it."""

from __future__ import annotations

import logging

import dagster as dg
import pandas as pd

from ibkr_assets.assets import ingest
from ibkr_assets.assets.catalog import daily_asset_kwargs
from ibkr_assets.assets.market_data import UNIVERSE, named_failures
from ibkr_assets.assets.partition import with_partition
from ibkr_assets.resources import build_resources

SESSION = "2024-06-03"


def universe_with_a_ghost(aapl: int) -> dg.AssetsDefinition:
    """A ``universe`` of AAPL (conId ``aapl``) and a contract id the broker has never heard of."""

    @dg.asset(name="universe", **daily_asset_kwargs("test", UNIVERSE))
    def universe() -> pd.DataFrame:
        rows = [
            ("AAPL", aapl, "STK", "Technology", "Computers", 1, 5e7, "ib", "watchlist"),
            ("GHOST", 999_999_999, "STK", "Technology", "Computers", 1, 1e6, "ib", "watchlist"),
        ]
        frame = pd.DataFrame(rows, columns=UNIVERSE.names).astype(UNIVERSE.dtypes)
        return with_partition(frame, SESSION)

    return universe


def test_a_symbol_without_a_quote_is_named_in_a_warning_and_the_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", "30")
    instance = dg.DagsterInstance.ephemeral()
    resources = build_resources(str(tmp_path))
    aapl = resources["ib"].get_broker().resolve("AAPL").conid
    result = dg.materialize(
        [universe_with_a_ghost(aapl), ingest.quotes],
        partition_key=SESSION,
        resources=resources,
        instance=instance,
    )
    assert result.success
    frame = result.output_for_node("quotes")
    assert frame["symbol"].tolist() == ["AAPL"], "the run goes on with what could be fetched"
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("quotes")
    ]
    meta = event.materialization.metadata
    assert meta["missing"].value == 1
    assert "- GHOST: " in meta["missing_symbols"].value
    warnings = [
        record.user_message
        for record in instance.all_logs(result.run_id)
        if record.level == logging.WARNING and "GHOST" in record.user_message
    ]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"quotes {SESSION}: 1 could not be fetched (GHOST: ")


def test_one_cause_reads_once_however_many_symbols_it_hit():
    """A backend without news fails every symbol for the same reason: named once, with a
    few of the symbols, not 700 times."""
    same = {f"S{i}": "news is not available on the webapi backend" for i in range(700)}
    line = named_failures("headlines", {"GHOST": "no such symbol"} | same)
    assert line.startswith("headlines: 701 could not be fetched (GHOST: no such symbol; S0, S1")
    assert line.count("news is not available") == 1 and "S9 and 690 more: news" in line
