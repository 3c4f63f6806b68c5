"""Materialisation and check metadata as people read it: floats rounded to a few significant
digits. The assets and the asset checks both use it, so it lives below both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg

#: Significant digits a float keeps in metadata (never fewer than two decimals).
METADATA_DIGITS = 6


def readable_number(value: float) -> float:
    """``value`` rounded for reading: six significant digits, never fewer than two decimals
    (0.9500000005734556 -> 0.95, 764363.7050000001 -> 764363.71)."""
    if not math.isfinite(value) or value == 0:
        return float(value)
    decimals = max(2, METADATA_DIGITS - 1 - math.floor(math.log10(abs(value))))
    return round(float(value), decimals)


def readable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Materialisation metadata with every float (plain or ``MetadataValue.float``) rounded by
    :func:`readable_number`; everything else as given."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, float):
            value = readable_number(value)
        elif isinstance(value, dg.FloatMetadataValue) and value.value is not None:
            value = dg.MetadataValue.float(readable_number(value.value))
        out[key] = value
    return out
