"""Feature computation for large universes with the symbols partitioned across workers.

A symbol's technical indicators read its own bars only
(:func:`~ibkr_assets.quant.technical.technical_history`), so the universe splits into groups of
symbols computed apart — on a Dask cluster's workers through a
:class:`~ibkr_assets.resources.compute.DaskMap` — and the groups' frames, concatenated in symbol
order, are the whole universe's to the bit.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from ibkr_assets.quant.backtest.calibration import MapFn
from ibkr_assets.quant.technical import TechnicalParams, technical_history


def symbol_groups(bars_long: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    """``bars_long`` split into at most ``parts`` frames of whole symbols, contiguous in sorted
    symbol order (the order :func:`technical_history` returns them in), none empty."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    symbols = bars_long["symbol"].astype(str)
    groups = np.array_split(np.unique(symbols.to_numpy()), min(parts, symbols.nunique()) or 1)
    return [bars_long.loc[symbols.isin(group).to_numpy()] for group in groups if len(group)]


def _history_of(
    windows: list[tuple[pd.Timestamp, pd.Timestamp]],
    params: TechnicalParams | None,
    bars_long: pd.DataFrame,
) -> list[pd.DataFrame]:
    return technical_history(bars_long, windows, params)


def technical_history_by_symbols(
    bars_long: pd.DataFrame,
    windows: list[tuple[pd.Timestamp, pd.Timestamp]],
    map_fn: MapFn = map,
    parts: int = 2,
    params: TechnicalParams | None = None,
) -> list[pd.DataFrame]:
    """:func:`~ibkr_assets.quant.technical.technical_history` of ``bars_long`` with its symbols
    in ``parts`` groups (:func:`symbol_groups`), each computed through ``map_fn``: one frame
    per window, equal to the one-pass result."""
    groups = symbol_groups(bars_long, parts)
    if not groups:
        return technical_history(bars_long, windows, params)
    computed = list(map_fn(partial(_history_of, windows, params), groups))
    out = []
    for k in range(len(windows)):
        frames = [part[k] for part in computed if len(part[k])]
        out.append(pd.concat(frames) if frames else computed[0][k])
    return out
