"""Hand-made upstream frames for the decision-stage tests: small fixed frames named like the
real ingest / signal assets (universe, quotes, daily_bars, portfolio_snapshot, alpha_scores,
feature_matrix, headlines), so every number downstream is known."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from ibkr_assets.assets.catalog import daily_asset_kwargs
from ibkr_assets.assets.partition import with_partition
from ibkr_assets.partitions import as_of, previous_sessions

SESSION = "2024-03-04"
OTHER_SESSION = "2024-03-05"
N = 20
SYMBOLS = [f"S{i:02d}" for i in range(N)]
SECTORS = ["Tech", "Health", "Energy", "Financials"] * (N // 4)


#: Alpha scores on the scale of the real alpha model (about ±0.25); the best-scored name also
#: has an "FDA ban" headline, so the news overlay must take it out of the book.
ALPHA = np.random.default_rng(1).normal(0.0, 0.12, N)
EVENT_SYMBOL = SYMBOLS[int(np.argmax(ALPHA))]


def _upstream() -> list[dg.AssetsDefinition]:
    rng = np.random.default_rng(0)
    sessions = pd.to_datetime(previous_sessions(OTHER_SESSION, 300))
    returns = rng.normal(0.0003, 0.015, (len(sessions), N))
    closes = 100 * np.exp(np.cumsum(returns, axis=0))
    frames = {
        "daily_bars": pd.DataFrame(
            {
                "symbol": np.repeat(SYMBOLS, len(sessions)),
                "session": np.tile(sessions, N),
                "close": closes.T.ravel(),
            }
        ),
        "universe": pd.DataFrame(
            {
                "symbol": SYMBOLS,
                "conid": range(1000, 1000 + N),
                "sector": SECTORS,
                "lot_size": 1,
                "adv": 1e6,
            }
        ),
        "quotes": pd.DataFrame(
            {
                "symbol": SYMBOLS,
                "bid": 99.95,
                "ask": 100.05,
                "last": 100.0,
                "close": 100.0,
                "mid": 100.0,
            }
        ),
        "portfolio_snapshot": pd.DataFrame(
            {
                "symbol": ["CASH"],
                "conid": [0],
                "sec_type": ["CASH"],
                "quantity": [1e6],
                "market_value": [1e6],
                "weight": [1.0],
                "sector": ["Cash"],
            }
        ),
        # expected daily returns by Grinold's rule with a composite IC of 0.05, a daily
        # volatility of 2% (0.05 x 0.02 = 1e-3) and the score standardised (its spread
        # 0.12): up to about 20 bp a day, a strong signal
        "alpha_scores": pd.DataFrame(
            {"symbol": SYMBOLS, "alpha_score": ALPHA, "expected_return": ALPHA / 0.12 * 1e-3}
        ),
        # adv: 20-session average dollar volume from the bars ($5e7), deliberately not the
        # universe's broker-reported 1e6 shares x $100
        "feature_matrix": pd.DataFrame({"symbol": SYMBOLS, "sentiment_z": 0.0, "adv": 5e7}),
        "headlines": pd.DataFrame(
            {
                "symbol": [EVENT_SYMBOL, "S01"],
                "time": [as_of(SESSION) - pd.Timedelta(hours=2)] * 2,
                "headline": [
                    f"{EVENT_SYMBOL} shares slide as FDA ban looms",
                    "S01 beats estimates",
                ],
            }
        ),
    }

    def source(name: str, frame: pd.DataFrame) -> dg.AssetsDefinition:
        @dg.asset(name=name, **daily_asset_kwargs("handmade"))
        def _asset(context) -> pd.DataFrame:
            return with_partition(frame, context.partition_key)

        return _asset

    return [source(name, frame) for name, frame in frames.items()]


UPSTREAM = _upstream()
