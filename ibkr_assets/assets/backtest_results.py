"""What a backtest writes besides its metrics row: the equity curve and drawdown as a PNG
(:func:`backtest_plot`) and each session's results as Parquet under the data root
(:func:`save_results`), so any metric can be recomputed."""

import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ibkr_assets.quant.backtest import BacktestResult
from ibkr_assets.resources.storage import StorageResource


def backtest_plot(daily: pd.DataFrame, title: str) -> bytes:
    """PNG: the equity curve (net of costs, from 1) above its drawdown."""
    fig = Figure(figsize=(11, 5.5), dpi=90)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    index = pd.to_datetime(daily.index)
    top.plot(index, daily["equity"], color="#4c72b0", linewidth=1.4)
    top.axhline(1.0, color="grey", linewidth=0.8)
    top.set(title=f"{title}: equity after costs", ylabel="equity (start = 1)")
    bottom.fill_between(index, -daily["drawdown"] * 100, 0, color="#c44e52", alpha=0.6)
    bottom.set(ylabel="drawdown %")
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


#: Where each run's per-session results go, under the data root (one folder per label).
RESULTS_DIR = "backtest"


def save_results(storage: StorageResource, label: str, result: BacktestResult) -> Path:
    """Write the replay's sessions under ``<data root>/backtest/<label>/`` (a rerun replaces
    them): ``daily.parquet`` (:attr:`BacktestResult.daily`, index ``session``),
    ``positions.parquet`` (session, symbol, shares, close, weight) and ``trades.parquet``
    (every order: session, symbol, side, ordered and filled shares, fill price and kind,
    commission, spread, impact in USD). The folder."""
    folder = storage.root / RESULTS_DIR / label
    storage.write_parquet(folder / "daily.parquet", result.daily.reset_index())
    storage.write_parquet(folder / "positions.parquet", result.positions)
    storage.write_parquet(folder / "trades.parquet", result.trades)
    return folder
