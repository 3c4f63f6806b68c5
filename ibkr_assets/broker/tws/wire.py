"""IB's wire conventions for optional numbers, as the tws backend reads and writes them."""

from __future__ import annotations

import math
from typing import Any

#: IB's "no value" for doubles, and ib_async's.
UNSET = 1.7976931348623157e308


def num(value: Any) -> float | None:
    """IB's optional number: None for unset, NaN, IB's max-double or an empty string."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(x) or abs(x) >= UNSET:
        return None
    return x


def positive(x: Any) -> float | None:
    """IB's optional price: None unless it is a positive number."""
    v = num(x)
    return v if v is not None and v > 0 else None
