"""What a materialisation shows in the Dagster UI: row count and preview of a frame, listings
of missing or rejected symbols, pictures. Floats go through
:func:`ibkr_assets.metadata.readable`.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import dagster as dg
import pandas as pd

from ibkr_assets.assets.partition import without_partition
from ibkr_assets.metadata import readable


def preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first rows of a frame as a markdown table for the Dagster UI."""
    head = without_partition(frame).head(rows)
    return dg.MetadataValue.md(head.to_markdown(index=False, floatfmt=".4g"))


def frame_metadata(frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """Row count and preview of a frame, plus ``extra`` (None / NaN values dropped, floats
    rounded for reading)."""
    meta: dict[str, Any] = {"dagster/row_count": len(frame), "preview": preview(frame)}
    for key, value in extra.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        meta[key] = value
    return readable(meta)


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
