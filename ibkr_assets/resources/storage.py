"""The data root: where every stage's files live, and how they are written.

Layout under ``IBKR_DATA_DIR`` (default ``./data``), as operators expect it::

    staging/YYYY-MM-DD/<asset>.json|parquet   raw payloads of the ingest stage
    features/YYYY-MM-DD.parquet               the feature matrix
    positions/YYYY-MM-DD.json                 the portfolio snapshot
    reports/order_ticket_YYYY-MM-DD.json      (and recommendation_*.md, risk_report_*.json)
    decision_log/                             hash-chained decision journal
    metrics/rolling_backtest.csv
    plots/YYYY-MM-DD/<name>.png               charts shown in the Dagster UI
    warehouse.duckdb                          tables (DuckDB IO manager, warehouse_io.py) and the
                                              daily-bar cache

Every file is written atomically — to a temporary file in the same directory, then
``os.replace`` — so a reader never sees half a file and a rerun replaces a partition's files
whole. A failed write leaves the previous version in place.

A ``warehouse.duckdb`` that DuckDB cannot open (damaged, truncated, not a DuckDB file) is a
:class:`~ibkr_assets.errors.ConfigurationError` naming the file and what to do: the IO manager
(:mod:`ibkr_assets.resources.warehouse_io`) checks it when a run starts, so the run fails before
any step. Only a lock held by another process is waited for. How the file is opened:
:mod:`ibkr_assets.resources.warehouse_file`.

Every statement on the warehouse is a constant with ``?`` parameters, in the named methods
here (the daily-bar cache: :meth:`StorageResource.cached_bars`, :meth:`StorageResource.cache_bars`)
and in the IO manager's module.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ibkr_assets.partitions import NEW_YORK, nyse_calendar
from ibkr_assets.resources.warehouse_file import open_warehouse


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


#: The daily-bar cache: one row per symbol and session, prices in USD per share, volume in shares.
_DAILY_BARS_DDL = """
create schema if not exists cache;
create table if not exists cache.daily_bars (
    symbol varchar, session date, open double, high double, low double, close double,
    volume double, primary key (symbol, session)
)
"""
_SELECT_BARS = """
select symbol, session, open, high, low, close, volume from cache.daily_bars
where session between ? and ? and symbol in (select unnest(?))
order by symbol, session
"""
_INSERT_BARS = """
insert or replace into cache.daily_bars
select symbol, session, open, high, low, close, volume from new_bars
"""
#: The cached bar columns after symbol and session: USD per share, then shares.
_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
#: NYSE's regular close, after midnight New York.
_USUAL_CLOSE = pd.Timedelta(hours=16)


def session_closed(sessions: pd.Series, as_of: datetime) -> pd.Series:
    """For each of ``sessions`` (dates or timestamps), True when its NYSE session had closed by
    ``as_of`` (timezone-aware): the calendar's close, early closes included, or 16:00 New York
    for a day the calendar does not list."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of!r} has no timezone: give the request's end in UTC")
    days = pd.DatetimeIndex(pd.to_datetime(sessions)).normalize()
    unique = days.unique()  # a day's close is looked up once, however many rows share it
    listed = pd.DatetimeIndex(nyse_calendar().closes.reindex(unique))
    usual = (unique + _USUAL_CLOSE).tz_localize(NEW_YORK).tz_convert("UTC")
    closed = listed.where(listed.notna(), usual) <= pd.Timestamp(as_of)
    return pd.Series(closed[unique.get_indexer(days)], index=sessions.index)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


class StorageResource(dg.ConfigurableResource):
    """Paths under the data root and atomic writers for JSON, parquet, text and bytes."""

    data_dir: str = "data"

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
        with open_warehouse(self.warehouse_path) as conn:
            yield conn

    # -- the daily-bar cache ----------------------------------------------------------------
    def cached_bars(self, symbols: Sequence[str], first: date, last: date) -> pd.DataFrame:
        """The cached daily bars of ``symbols`` for the sessions ``first`` to ``last``
        (inclusive), by symbol and session: symbol, session (date), open, high, low, close
        (USD per share), volume (shares)."""
        with self.warehouse() as conn:
            conn.execute(_DAILY_BARS_DDL)
            return conn.execute(_SELECT_BARS, [first, last, list(symbols)]).df()

    def cache_bars(self, bars: pd.DataFrame, as_of: datetime) -> None:
        """Add ``bars`` (the columns of :meth:`cached_bars`, session as a timestamp), fetched by
        a request that ended at ``as_of`` (timezone-aware), to the cache, replacing a bar of the
        same symbol and session. Only final bars are kept: the bar of a session that had not
        closed by ``as_of`` (IB's day so far, :func:`~ibkr_assets.broker.models.bars_as_of`) is
        left out, so a later request fetches the whole session."""
        bars = bars.loc[session_closed(bars["session"], as_of).to_numpy()]
        if bars.empty:
            return
        # one Arrow table scanned by one INSERT ... SELECT; sessions become date32 in numpy (a
        # column of Python dates costs ~0.2 s and doubles the insert for 415,800 bars)
        new_bars = pa.table(
            {
                "symbol": pa.Array.from_pandas(bars["symbol"], type=pa.string()),
                "session": pa.array(bars["session"].to_numpy(dtype="datetime64[D]"), pa.date32()),
                **{c: bars[c].to_numpy(dtype=np.float64) for c in _PRICE_COLUMNS},
            }
        )
        with self.warehouse() as conn:
            conn.execute(_DAILY_BARS_DDL)
            conn.register("new_bars", new_bars)
            conn.execute(_INSERT_BARS)

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

    def append_csv_row(self, path: Path, row: dict[str, Any], *, key: str | None = None) -> Path:
        """Append ``row`` to the CSV file ``path`` (header on first write; columns added later
        are kept; a value that is missing or NaN is left empty), rewriting it atomically (a
        crash leaves the rows already written). With ``key`` (a column), ``row`` replaces the
        rows whose ``key`` equals its own, and the rows are ordered by ``key`` (stable: rows of
        equal keys keep their order)."""
        new = pd.DataFrame([row])
        if not path.exists():
            return self.write_text(path, new.to_csv(index=False))
        old = pd.read_csv(path)
        if key is not None:
            old = old[old[key].astype(str) != str(row[key])]
        frame = pd.concat([old, new.dropna(axis=1, how="all")], ignore_index=True)
        if key is not None:
            frame = frame.sort_values(key, kind="stable", key=lambda k: k.astype(str))
        return self.write_text(path, frame.to_csv(index=False))
