"""The warehouse's IO manager: each asset's table in ``warehouse.duckdb``, in the DuckDB schema its
asset's ``warehouse_schema`` metadata names, written and read by dagster-duckdb's pandas IO
manager with two additions.

- **An empty partition is an empty table.** dagster-duckdb skips an empty frame, so a day
  without news would leave no table and the next stage would fail to load it.
- **A table written in a run is handed to the run's later steps.** A load converts the
  partition to pandas again (~0.1 s for the 700-stock daily bars, which four steps take), so a
  step that writes a table reads the partition back on the same connection — the rows and
  dtypes any later load returns — and the frame is kept for the inputs of the run's steps that
  take it (counted in the run's execution plan). The last of them gets the frame itself and
  it is dropped; the others a copy (a step may write to its input). Any other input (another
  run's partition, several partitions, a column subset, a table beyond the memory the kept
  frames may take, :data:`KEEP_BYTES`) is loaded from the file.

Every connection is the file attached to the process's DuckDB instance
(:mod:`~ibkr_assets.resources.warehouse_file`: ~2 ms, against ~25 ms for a new instance per
connection, dagster-duckdb's way), released when the step's read or write is done.

A schema or table name that is not a plain identifier is refused (dagster-duckdb writes both
into its statements as they are), and a warehouse DuckDB cannot open fails the run when it
starts (:func:`~ibkr_assets.resources.warehouse_file.check_warehouse`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from ibkr_assets.resources.warehouse_file import check_warehouse, open_warehouse

#: The asset metadata key naming the DuckDB schema of the asset's table in the warehouse.
WAREHOUSE_SCHEMA = "warehouse_schema"
#: A warehouse schema or table name: what DuckDB reads as one identifier without quotes.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TABLE_EXISTS = """
select count(*) from information_schema.tables
where table_catalog = current_database() and table_schema = ? and table_name = ?
"""

#: A table's partition as the run's frames are keyed: the asset key's path and the partition
#: key (None for an unpartitioned asset).
_Slice = tuple[tuple[str, ...], str | None]


#: The most memory (bytes) a run's kept frames may take together: the 700-stock daily job's
#: tables (~150 MB, the daily bars ~50 MB) fit; a 5,000-stock world's bars (~350 MB) and risk
#: model are read from the file by each step instead, which keeps its peak within 4 GiB.
KEEP_BYTES = 192 * 1024**2


#: values of an object column whose sizes estimate the column's (pandas' exact count reads every
#: value: 60 ms for the 700-stock bars' symbols, 0.8 s for 5,000 stocks')
_SAMPLE = 256


def frame_bytes(frame: pd.DataFrame) -> int:
    """The memory ``frame`` holds (bytes): its arrays, and the Python objects of its object
    columns (strings) estimated from :data:`_SAMPLE` evenly spaced values each."""
    size = int(frame.memory_usage(index=True, deep=False).sum())
    for at, dtype in enumerate(frame.dtypes):
        if dtype != np.dtype(object):
            continue
        column = frame.iloc[:, at]
        sample = column.iloc[:: max(1, len(column) // _SAMPLE)]
        size += len(column) * sum(map(sys.getsizeof, sample)) // max(len(sample), 1)
    return size


@dataclass
class _Kept:
    frame: pd.DataFrame
    size: int  # bytes
    takers: int  # inputs of the run's steps still to load it


class RunFrames:
    """The tables one run has written, as the warehouse returns them, until each of the run's
    inputs that takes one has loaded it; at most ``budget`` bytes of them at a time."""

    def __init__(self, budget: int) -> None:
        self._kept: dict[_Slice, _Kept] = {}
        self._room = budget

    def fits(self, size: int) -> bool:
        """True when a frame of ``size`` bytes can be kept now."""
        return size <= self._room

    def keep(self, written: _Slice, frame: pd.DataFrame, size: int, takers: int) -> None:
        """Keep ``frame`` (the partition ``written`` as read back, ``size`` bytes, which
        :meth:`fits`) for ``takers`` loads."""
        self._kept[written] = _Kept(frame, size, takers)
        self._room -= size

    def take(self, wanted: _Slice) -> pd.DataFrame | None:
        """The kept frame of ``wanted``, or None when this run has not kept it."""
        kept = self._kept.get(wanted)
        if kept is None:
            return None
        kept.takers -= 1
        if kept.takers <= 0:
            del self._kept[wanted]
            self._room += kept.size
            return kept.frame
        return kept.frame.copy()


def _written(context: dg.OutputContext) -> _Slice:
    partition = context.asset_partition_key if context.has_asset_partitions else None
    return tuple(context.asset_key.path), partition


def _wanted(context: dg.InputContext) -> _Slice | None:
    """The one partition of an upstream asset the input loads whole; None for anything else (a
    column subset, several partitions, an input that is not an asset)."""
    if not context.has_asset_key or (context.definition_metadata or {}).get("columns"):
        return None
    if not context.has_asset_partitions:
        return tuple(context.asset_key.path), None
    partitions = context.asset_partition_keys
    return (tuple(context.asset_key.path), partitions[0]) if len(partitions) == 1 else None


def _takers(context: dg.OutputContext) -> int:
    """The inputs of the run's steps (its execution plan, Dagster's) that load this output."""
    plan = context.step_context.execution_plan
    return sum(
        1
        for step in plan.get_steps_to_execute_in_topo_order()
        for step_input in step.step_inputs
        for handle in step_input.get_step_output_handle_dependencies()
        if handle.step_key == context.step_key and handle.output_name == context.name
    )


class _AttachedClient(DuckDbClient):
    """dagster-duckdb's client, its connection the warehouse attached to the process's DuckDB
    instance (:func:`~ibkr_assets.resources.warehouse_file.open_warehouse`)."""

    @staticmethod
    @contextmanager
    def connect(
        context: dg.OutputContext | dg.InputContext, table_slice: Any
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        with open_warehouse(Path(context.resource_config["database"])) as conn:
            yield conn


class _WarehouseFrames(DuckDBPandasTypeHandler):
    """dagster-duckdb-pandas's handler, with an empty frame written as an empty table and each
    table written kept in the run's :class:`RunFrames` for the inputs that take it."""

    def __init__(self, frames: RunFrames) -> None:
        self._frames = frames

    def handle_output(
        self,
        context: dg.OutputContext,
        table_slice: Any,  # dagster's TableSlice: schema, table, partition of the output
        obj: pd.DataFrame,
        connection: duckdb.DuckDBPyConnection,
    ) -> None:
        if obj.empty:
            schema, table = table_slice.schema, table_slice.table
            [(exists,)] = connection.execute(_TABLE_EXISTS, [schema, table]).fetchall()
            if not exists:
                connection.from_df(obj).create(f"{schema}.{table}")
            context.add_output_metadata({"dagster/partition_row_count": 0})
        else:
            super().handle_output(context, table_slice, obj, connection)
        takers = _takers(context)
        size = frame_bytes(obj) if takers else 0  # as written: about as read back
        if takers and self._frames.fits(size):
            back = connection.execute(DuckDbClient.get_select_statement(table_slice)).fetchdf()
            self._frames.keep(_written(context), back, size, takers)


def _identifier(name: str, what: str) -> str:
    """``name`` when it is a plain identifier (dagster-duckdb writes schema and table names into
    its statements as they are); otherwise a ValueError naming it."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} cannot name a warehouse table: use letters, digits and "
            "underscores only"
        )
    return name


class _InWarehouseSchema:
    """An output (or input) context as the DuckDB IO manager reads it: Dagster's ``schema``
    metadata key — the documented way to name an asset's DuckDB schema — taken from the
    asset's ``warehouse_schema`` (Dagster's own key reads in the UI as if it were the column
    schema, so the catalog does not carry it). Everything else is the context's own."""

    def __init__(self, context: dg.OutputContext | dg.InputContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    @property
    def definition_metadata(self) -> dict[str, Any]:
        meta = dict(self._context.definition_metadata or {})
        if WAREHOUSE_SCHEMA in meta:
            meta["schema"] = _identifier(str(meta[WAREHOUSE_SCHEMA]), WAREHOUSE_SCHEMA)
        return meta

    @property
    def upstream_output(self) -> _InWarehouseSchema:
        return _InWarehouseSchema(self._context.upstream_output)  # type: ignore[union-attr]


class _WarehouseTables(dg.IOManager):
    """dagster-duckdb's IO manager, reading each table's schema from ``warehouse_schema`` (schema
    and table, the asset's name, checked to be plain identifiers first) and handing a table this
    run wrote to its inputs from ``frames``."""

    def __init__(self, tables: dg.IOManager, frames: RunFrames) -> None:
        self._tables = tables
        self._frames = frames

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if context.has_asset_key:
            _identifier(context.asset_key.path[-1], "asset name")
        self._tables.handle_output(_InWarehouseSchema(context), obj)  # type: ignore[arg-type]

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        if context.has_asset_key:
            _identifier(context.asset_key.path[-1], "asset name")
        wanted = _wanted(context)
        kept = None if wanted is None else self._frames.take(wanted)
        if kept is not None:
            return kept
        return self._tables.load_input(_InWarehouseSchema(context))  # type: ignore[arg-type]


class WarehouseIOManager(DuckDBPandasIOManager):
    """The DuckDB pandas IO manager of the warehouse (see the module's docstring): empty
    partitions stored as such, each table in the DuckDB schema its asset's ``warehouse_schema``
    names, a table written in a run handed to the run's later steps.

    It opens the warehouse when a run starts: a damaged file fails the run before any step,
    with one message naming it, rather than each step after Dagster's own ten retries."""

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        check_warehouse(Path(self.database))
        frames = RunFrames(KEEP_BYTES)
        tables = DbIOManager(  # as dagster-duckdb's create_io_manager, with this handler
            db_client=_AttachedClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=[_WarehouseFrames(frames)],
            default_load_type=pd.DataFrame,
            io_manager_name="DuckDBIOManager",
        )
        return _WarehouseTables(tables, frames)
