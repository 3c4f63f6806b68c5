"""Shared wiring of the daily assets: the partition's as-of time, table metadata, previews.

Every partitioned DataFrame asset carries a ``partition_date`` column (the session, as a
timestamp) so the DuckDB IO manager deletes the partition's rows before inserting — a rerun
replaces, never duplicates.
"""

from __future__ import annotations

import base64
import math
from datetime import date, datetime
from typing import Any

import dagster as dg
import pandas as pd

from ibkr_assets.partitions import DAILY_PARTITIONS, as_of

PARTITION_COLUMN = "partition_date"


def table_metadata(schema: str) -> dict[str, str]:
    """Asset metadata for the DuckDB IO manager: the schema and the partition column."""
    return {"schema": schema, "partition_expr": PARTITION_COLUMN}


def daily_asset_kwargs(group: str, schema: str | None = None) -> dict[str, Any]:
    """Keyword arguments shared by every daily asset of a stage."""
    return {
        "partitions_def": DAILY_PARTITIONS,
        "group_name": group,
        "metadata": table_metadata(schema or group),
        "kinds": {"pandas", "duckdb"},
    }


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


def preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first rows of a frame as a markdown table for the Dagster UI."""
    head = without_partition(frame).head(rows)
    return dg.MetadataValue.md(head.to_markdown(index=False, floatfmt=".4g"))


def frame_metadata(frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """Row count and preview of a frame, plus ``extra`` (None / NaN values dropped)."""
    meta: dict[str, Any] = {"dagster/row_count": len(frame), "preview": preview(frame)}
    for key, value in extra.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        meta[key] = value
    return meta


def listing(items: dict[str, str] | list[str], limit: int = 50) -> dg.MetadataValue:
    """A markdown bullet list (first ``limit`` items) — for missing or rejected symbols."""
    lines = (
        [f"- {k}: {v}" for k, v in list(items.items())[:limit]]
        if isinstance(items, dict)
        else [f"- {k}" for k in items[:limit]]
    )
    if len(items) > limit:
        lines.append(f"- ... and {len(items) - limit} more")
    return dg.MetadataValue.md("\n".join(lines) or "(none)")


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG inlined as markdown, so the Dagster UI shows the picture in the asset's metadata."""
    image = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{image})")
