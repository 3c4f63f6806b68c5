"""The warehouse: the daily-bar cache's named queries, and the IO manager storing each table in
the schema its asset names (``warehouse_schema``), an empty partition as an empty table."""

from datetime import date

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ibkr_assets.resources.storage import WAREHOUSE_SCHEMA, StorageResource, WarehouseIOManager

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-06-01")


def _bars(symbol: str, sessions: list[str], close: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "session": pd.to_datetime(sessions),
            **dict.fromkeys(("open", "high", "low", "close"), close),
            "volume": 1e6,
        }
    )


def test_the_cache_returns_the_window_of_the_symbols_asked(tmp_path):
    storage = StorageResource(data_dir=str(tmp_path))
    assert storage.cached_bars(["AAA"], date(2024, 6, 3), date(2024, 6, 4)).empty
    storage.cache_bars(_bars("AAA", ["2024-06-03", "2024-06-04", "2024-06-05"], 10.0))
    storage.cache_bars(_bars("BBB", ["2024-06-03"], 20.0))
    storage.cache_bars(_bars("AAA", ["2024-06-04"], 11.0))  # replaces, never duplicates
    got = storage.cached_bars(["AAA", "BBB", "O'BRIEN"], date(2024, 6, 3), date(2024, 6, 4))
    assert list(zip(got["symbol"], got["close"], strict=True)) == [
        ("AAA", 10.0),
        ("AAA", 11.0),
        ("BBB", 20.0),
    ]


def _asset(name: str, schema: str, rows: int) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        partitions_def=PARTITIONS,
        metadata={WAREHOUSE_SCHEMA: schema, "partition_expr": "day"},
    )
    def table(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return pd.DataFrame(
            {"x": pd.Series(range(rows), dtype="float64"), "day": context.partition_key}
        ).astype({"day": "datetime64[ns]"})

    return table


def test_tables_go_to_their_schema_and_an_empty_partition_is_an_empty_table(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    io_manager = WarehouseIOManager(database=str(database))
    for rows in (0, 3):
        result = dg.materialize(
            [_asset("ticks", "ingest", rows)],
            partition_key="2024-06-03",
            resources={"io_manager": io_manager},
        )
        assert result.success
        with duckdb.connect(str(database), read_only=True) as conn:
            (count,) = conn.execute("select count(*) from ingest.ticks").fetchone()
        assert count == rows


def test_a_table_name_that_is_not_a_plain_identifier_is_refused(tmp_path):
    io_manager = WarehouseIOManager(database=str(tmp_path / "warehouse.duckdb"))
    with pytest.raises(Exception, match=r"warehouse_schema .* cannot name a warehouse table"):
        dg.materialize(
            [_asset("ticks", "ingest; drop table x", 0)],
            partition_key="2024-06-03",
            resources={"io_manager": io_manager},
        )
