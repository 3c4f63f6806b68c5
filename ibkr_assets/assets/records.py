"""A frame as the JSON the reports hold and the journal hashes: one object per row."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe records of a frame (NaN -> null, timestamps ISO)."""
    return json.loads(frame.to_json(orient="records", date_format="iso", double_precision=12))
