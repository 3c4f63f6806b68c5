"""The session partition of a run, and the partition column of the rows it stores.

Every partitioned DataFrame asset carries a ``partition_date`` column (the session, as a
timestamp) so the DuckDB IO manager deletes the partition's rows before inserting — a rerun
replaces, never duplicates. The partitions themselves and the as-of instant are in
:mod:`ibkr_assets.partitions`.
"""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
import pandas as pd

from ibkr_assets.partitions import as_of

PARTITION_COLUMN = "partition_date"
PARTITION_DESCRIPTION = "the NYSE session (partition) the row belongs to"


def session_of(context: dg.AssetExecutionContext) -> tuple[str, date, datetime]:
    """(partition key, session date, as-of instant in UTC) of the run."""
    key = context.partition_key
    return key, date.fromisoformat(key), as_of(key)


def with_partition(frame: pd.DataFrame, partition_key: str) -> pd.DataFrame:
    """``frame`` with the partition column set to the session."""
    return frame.assign(**{PARTITION_COLUMN: pd.Timestamp(partition_key)})


def without_partition(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the partition column (as loaded from the warehouse)."""
    return frame.drop(columns=[PARTITION_COLUMN], errors="ignore")
