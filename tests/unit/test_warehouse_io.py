"""The warehouse file and its IO manager: the file attached to the process's DuckDB instance only
while in use (another process opens it between two uses), and a table written in a run handed to
the run's later steps as the file returns it, without reading the file again."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ibkr_assets.resources import warehouse_io
from ibkr_assets.resources.warehouse_file import check_warehouse, open_warehouse
from ibkr_assets.resources.warehouse_io import WarehouseIOManager

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-06-01")
DAY = "2024-06-03"
#: each table's partition column (dagster-duckdb's metadata key)
BY_SESSION = {"partition_expr": "session"}


def _other_process_opens(path: Path) -> str:
    """What another process gets when it opens ``path`` for writing: its row count of t.x, or
    DuckDB's error."""
    code = (
        "import duckdb, sys\n"
        "try:\n"
        f"    conn = duckdb.connect({str(path)!r})\n"
        "    print(conn.execute('select count(*) from t.x').fetchone()[0])\n"
        "except duckdb.Error as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_file_is_held_only_while_in_use(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with open_warehouse(path) as outer:
        outer.execute("create schema t")
        outer.execute("create table t.x as select range as n from range(3)")
        with open_warehouse(path) as inner:  # a second user in the process shares the file
            assert inner.execute("select sum(n) from t.x").fetchone() == (3,)
        assert outer.execute("select count(*) from t.x").fetchone() == (3,)
        assert _other_process_opens(path) == "IOException"  # DuckDB's lock, held in use
    assert _other_process_opens(path) == "3"  # released (and checkpointed) after
    with open_warehouse(path) as again:
        assert again.execute("select count(*) from t.x").fetchone() == (3,)


def test_a_file_locked_by_another_process_is_waited_for(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with open_warehouse(path) as conn:
        conn.execute("create schema t")
        conn.execute("create table t.x as select 1 as n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); "
            "time.sleep(1.5)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    check_warehouse(path)  # a locked file is taken as sound, at once
    with open_warehouse(path) as conn:  # waits until the holder exits
        assert conn.execute("select n from t.x").fetchone() == (1,)
    assert holder.wait(10) == 0


@pytest.fixture
def opened(monkeypatch) -> list[Path]:
    """The warehouse files the IO manager opens, one entry per opening."""
    paths: list[Path] = []

    def counted(path: Path):
        paths.append(path)
        return open_warehouse(path)

    monkeypatch.setattr(warehouse_io, "open_warehouse", counted)
    return paths


def _prices() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "CCC"],
            "session": pd.to_datetime([DAY] * 3),
            "close": [10.5, 20.25, None],
            "lots": [1, 2, 3],
        }
    )


def test_a_table_written_in_a_run_reaches_its_later_steps_as_the_file_returns_it(tmp_path, opened):
    database = tmp_path / "warehouse.duckdb"
    got: dict[str, pd.DataFrame] = {}

    @dg.asset(partitions_def=PARTITIONS, metadata={**BY_SESSION, "warehouse_schema": "market"})
    def prices() -> pd.DataFrame:
        return _prices()

    @dg.asset(partitions_def=PARTITIONS, metadata=BY_SESSION)
    def doubled(prices: pd.DataFrame) -> pd.DataFrame:
        got["doubled"] = prices.copy()
        prices["close"] *= 2  # writes to its input: no other step may see it
        return prices

    @dg.asset(partitions_def=PARTITIONS, metadata=BY_SESSION)
    def listed(prices: pd.DataFrame, doubled: pd.DataFrame) -> pd.DataFrame:
        got["listed"], got["listed_doubled"] = prices, doubled
        return prices[["symbol", "session"]]

    result = dg.materialize(
        [prices, doubled, listed],
        partition_key=DAY,
        resources={"io_manager": WarehouseIOManager(database=str(database))},
    )
    assert result.success
    assert len(opened) == 3  # the three tables written; no input read the file

    with duckdb.connect(str(database)) as conn:  # what a load from the file returns
        stored_prices = conn.execute("select * from market.prices").fetchdf()
        stored_doubled = conn.execute("select * from public.doubled").fetchdf()
    pd.testing.assert_frame_equal(got["doubled"], stored_prices, check_exact=True)
    pd.testing.assert_frame_equal(got["listed"], stored_prices, check_exact=True)
    pd.testing.assert_frame_equal(got["listed_doubled"], stored_doubled, check_exact=True)
    assert got["listed"]["close"].iloc[0] == 10.5  # doubled's write did not reach it

    # a run of the later steps alone reads this partition from the file
    opened.clear()
    got.clear()
    again = dg.materialize(
        [prices.to_source_asset(), doubled.to_source_asset(), listed],
        partition_key=DAY,
        resources={"io_manager": WarehouseIOManager(database=str(database))},
    )
    assert again.success and len(opened) == 3  # two inputs read, one table written
    pd.testing.assert_frame_equal(got["listed"], stored_prices, check_exact=True)


def test_a_table_beyond_the_memory_for_kept_frames_is_read_from_the_file(
    tmp_path, monkeypatch, opened
):
    database = tmp_path / "warehouse.duckdb"
    got: list[pd.DataFrame] = []

    @dg.asset(partitions_def=PARTITIONS, metadata=BY_SESSION)
    def prices() -> pd.DataFrame:
        return _prices()

    @dg.asset(partitions_def=PARTITIONS, metadata=BY_SESSION)
    def names(prices: pd.DataFrame) -> pd.DataFrame:
        got.append(prices)
        return prices[["symbol", "session"]]

    monkeypatch.setattr(warehouse_io, "KEEP_BYTES", warehouse_io.frame_bytes(_prices()) - 1)
    result = dg.materialize(
        [prices, names],
        partition_key=DAY,
        resources={"io_manager": WarehouseIOManager(database=str(database))},
    )
    assert result.success and len(opened) == 3  # two tables written, one read
    assert got[0]["close"].iloc[1] == 20.25


@pytest.mark.parametrize("columns", [["symbol"], None])
def test_an_input_of_a_column_subset_is_read_from_the_file(tmp_path, columns):
    database = tmp_path / "warehouse.duckdb"
    got: dict[str, pd.DataFrame] = {}

    @dg.asset(partitions_def=PARTITIONS, metadata=BY_SESSION)
    def prices() -> pd.DataFrame:
        return _prices()

    @dg.asset(
        partitions_def=PARTITIONS,
        metadata=BY_SESSION,
        ins={"prices": dg.AssetIn(metadata={"columns": columns} if columns else None)},
    )
    def names(prices: pd.DataFrame) -> pd.DataFrame:
        got["prices"] = prices
        return _prices()[["symbol", "session"]]

    result = dg.materialize(
        [prices, names],
        partition_key=DAY,
        resources={"io_manager": WarehouseIOManager(database=str(database))},
    )
    assert result.success
    assert list(got["prices"].columns) == (columns or list(_prices().columns))
