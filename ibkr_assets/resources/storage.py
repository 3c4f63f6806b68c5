"""The data root: where every stage's files live, and how they are written.

Layout under ``IBKR_DATA_DIR`` (default ``./data``), as operators expect it::

    staging/YYYY-MM-DD/<asset>.json|parquet   raw payloads of the ingest stage
    features/YYYY-MM-DD.parquet               the feature matrix
    positions/YYYY-MM-DD.json                 the portfolio snapshot
    reports/order_ticket_YYYY-MM-DD.json      (and recommendation_*.md, risk_report_*.json)
    decision_log/                             hash-chained decision journal
    metrics/rolling_backtest.csv
    plots/YYYY-MM-DD/<name>.png               charts shown in the Dagster UI
    warehouse.duckdb                          tables (DuckDB IO manager) and the daily-bar cache

Every file is written atomically — to a temporary file in the same directory, then
``os.replace`` — so a reader never sees half a file and a rerun replaces a partition's files
whole. A failed write leaves the previous version in place.

A ``warehouse.duckdb`` that DuckDB cannot open (damaged, truncated, not a DuckDB file) is a
:class:`~ibkr_assets.errors.ConfigurationError` naming the file and what to do: the IO manager
checks it when a run starts, so the run fails before any step. Only a lock held by another
process is waited for.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.errors import ConfigurationError


def _locked(exc: BaseException) -> bool:
    """True when DuckDB refused the file because another process holds its lock."""
    return isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc)


def _unusable(path: Path, exc: duckdb.Error) -> ConfigurationError:
    reason = str(exc).removeprefix("IO Error: ").rstrip("!.")
    return ConfigurationError(
        f"cannot open the warehouse {path}: {reason}. If it is damaged, move it aside "
        f"(mv {path} {path}.damaged) and run again: its tables are rebuilt as partitions are "
        "materialised again, and the daily-bar cache (cache.daily_bars) refetches from IB."
    )


def open_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    """Connect to the DuckDB file ``path``, waiting up to a minute while another process holds
    its lock (DuckDB lets one process write at a time). A file DuckDB cannot open for another
    reason raises :class:`~ibkr_assets.errors.ConfigurationError` naming it and what to do."""

    @retry(
        retry=retry_if_exception(_locked),
        stop=stop_after_delay(60),
        wait=wait_random_exponential(multiplier=0.05, max=2),
        reraise=True,
    )
    def connect() -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(path))

    try:
        return connect()
    except duckdb.Error as exc:
        if _locked(exc):
            raise
        raise _unusable(path, exc) from None


def check_warehouse(path: Path) -> None:
    """Raise :class:`~ibkr_assets.errors.ConfigurationError` when the DuckDB file ``path``
    exists and cannot be opened; a file locked by another process is taken as sound."""
    if not path.exists():
        return
    try:
        duckdb.connect(str(path)).close()
    except duckdb.Error as exc:
        if not _locked(exc):
            raise _unusable(path, exc) from None


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` through ``write(tmp_path)`` then rename over it; the old file survives a
    failure of ``write``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


class StorageResource(dg.ConfigurableResource):
    """Paths under the data root and atomic writers for JSON, parquet, text and bytes."""

    data_dir: str = "data"

    @classmethod
    def from_env(cls) -> StorageResource:
        """The data root from ``IBKR_DATA_DIR`` (the same one the broker uses)."""
        return cls(data_dir=str(BrokerSettings().data_dir))

    # -- paths ------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def staging_dir(self, partition_key: str) -> Path:
        return self.root / "staging" / partition_key

    def staging_path(self, partition_key: str, name: str, ext: str = "json") -> Path:
        return self.staging_dir(partition_key) / f"{name}.{ext}"

    def features_path(self, partition_key: str) -> Path:
        return self.root / "features" / f"{partition_key}.parquet"

    def positions_path(self, partition_key: str) -> Path:
        return self.root / "positions" / f"{partition_key}.json"

    def report_path(self, kind: str, partition_key: str, ext: str = "json") -> Path:
        """``reports/<kind>_YYYY-MM-DD.<ext>`` (order_ticket, recommendation, risk_report)."""
        return self.root / "reports" / f"{kind}_{partition_key}.{ext}"

    def plot_path(self, partition_key: str, name: str) -> Path:
        return self.root / "plots" / partition_key / f"{name}.png"

    @property
    def decision_log_dir(self) -> Path:
        return self.root / "decision_log"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection to ``warehouse.duckdb`` (see :func:`open_warehouse`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        conn = open_warehouse(self.warehouse_path)
        try:
            yield conn
        finally:
            conn.close()

    # -- writers ----------------------------------------------------------------------------
    def write_json(self, path: Path, payload: Any) -> Path:
        """Write ``payload`` as indented JSON (dates as ISO strings)."""
        text = json.dumps(payload, indent=2, default=_json_default, allow_nan=False)
        return atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))

    def write_text(self, path: Path, text: str) -> Path:
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def write_bytes(self, path: Path, data: bytes) -> Path:
        return atomic_write(path, lambda tmp: tmp.write_bytes(data))

    def write_parquet(self, path: Path, frame: pd.DataFrame) -> Path:
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))

    def write_frame_json(self, path: Path, frame: pd.DataFrame) -> Path:
        """A DataFrame as a JSON list of records (ISO dates), the staging format of raw payloads."""
        text = frame.to_json(orient="records", date_format="iso", indent=1)
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class _EmptyFrameTypeHandler(DuckDBPandasTypeHandler):
    """dagster-duckdb-pandas skips empty frames, so a partition with no rows (a day without
    news) leaves no table behind and the next stage fails to load it. Here an empty frame
    still creates the table with its columns and types; its partition is then simply empty."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection
    ) -> None:
        if not obj.empty:
            super().handle_output(context, table_slice, obj, connection)
            return
        table = f"{table_slice.schema}.{table_slice.table}"
        connection.execute(f"create table if not exists {table} as select * from obj")
        context.add_output_metadata({"dagster/partition_row_count": 0})


#: The asset metadata key naming the DuckDB schema of the asset's table in the warehouse.
WAREHOUSE_SCHEMA = "warehouse_schema"


class _WarehouseTables(DbIOManager):
    """Dagster's database IO manager, taking each table's DuckDB schema from the asset's
    ``warehouse_schema`` metadata (Dagster's own key, ``schema``, reads in the UI as if it
    were the column schema)."""

    def _get_table_slice(
        self, context: dg.OutputContext | dg.InputContext, output_context: dg.OutputContext
    ) -> TableSlice:
        table_slice = super()._get_table_slice(context, output_context)
        schema = (output_context.definition_metadata or {}).get(WAREHOUSE_SCHEMA)
        return table_slice._replace(schema=str(schema)) if schema else table_slice


class WarehouseIOManager(DuckDBPandasIOManager):
    """The DuckDB pandas IO manager of the warehouse, with empty partitions stored as such.

    It opens the warehouse when a run starts: a damaged file fails the run before any step,
    with one message naming it, rather than each step after Dagster's own ten retries."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [_EmptyFrameTypeHandler()]

    def create_io_manager(self, context: dg.InitResourceContext) -> DbIOManager:
        check_warehouse(Path(self.database))
        return _WarehouseTables(
            db_client=DuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="WarehouseIOManager",
        )
