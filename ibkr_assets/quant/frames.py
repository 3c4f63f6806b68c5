"""What every quant function checks first: that an input frame has the columns it reads."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def require_columns(frame: pd.DataFrame, what: str, columns: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the ``columns`` that ``frame`` (an input described as
    ``what``, e.g. "bars_long") lacks; return quietly when it has them all."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")
