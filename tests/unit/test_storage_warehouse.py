"""The warehouse: the daily-bar cache's named queries, and the IO manager storing each table in
the schema its asset names (``warehouse_schema``), an empty partition as an empty table."""

from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ibkr_assets.resources.storage import StorageResource
from ibkr_assets.resources.warehouse_io import WAREHOUSE_SCHEMA, WarehouseIOManager

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-06-01")
#: An as-of long after every session of these tests has closed.
LATER = datetime(2025, 1, 2, tzinfo=UTC)


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
    storage.cache_bars(_bars("AAA", ["2024-06-03", "2024-06-04", "2024-06-05"], 10.0), LATER)
    storage.cache_bars(_bars("BBB", ["2024-06-03"], 20.0), LATER)
    storage.cache_bars(_bars("AAA", ["2024-06-04"], 11.0), LATER)  # replaces, never duplicates
    got = storage.cached_bars(["AAA", "BBB", "O'BRIEN"], date(2024, 6, 3), date(2024, 6, 4))
    assert list(zip(got["symbol"], got["close"], strict=True)) == [
        ("AAA", 10.0),
        ("AAA", 11.0),
        ("BBB", 20.0),
    ]


def test_a_bar_of_a_session_still_open_is_not_cached(tmp_path):
    """IB's bar of the day so far (the session open at the request's end) is not final: only the
    sessions closed by then are cached, an early close (the day after Thanksgiving, 13:00 New
    York) counted at its own close."""
    storage = StorageResource(data_dir=str(tmp_path))
    days = ["2024-11-27", "2024-11-29", "2024-12-02"]
    # 14:00 New York on Friday 29 November: the early close (13:00) has passed
    storage.cache_bars(_bars("AAA", days, 10.0), datetime(2024, 11, 29, 19, tzinfo=UTC))
    # 15:59 New York on Monday 2 December: the session still open
    storage.cache_bars(_bars("BBB", days, 20.0), datetime(2024, 12, 2, 20, 59, tzinfo=UTC))
    got = storage.cached_bars(["AAA", "BBB"], date(2024, 11, 27), date(2024, 12, 2))
    assert list(zip(got["symbol"], got["session"].dt.strftime("%m-%d"), strict=True)) == [
        ("AAA", "11-27"),
        ("AAA", "11-29"),
        ("BBB", "11-27"),
        ("BBB", "11-29"),
    ]
    # at 16:00 New York the session has closed: its bar is final and cached
    storage.cache_bars(_bars("BBB", days[2:], 21.0), datetime(2024, 12, 2, 21, tzinfo=UTC))
    assert storage.cached_bars(["BBB"], date(2024, 12, 2), date(2024, 12, 2))["close"].tolist() == [
        21.0
    ]
    with pytest.raises(ValueError, match="no timezone"):
        storage.cache_bars(_bars("CCC", days, 1.0), datetime(2024, 12, 3))


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
