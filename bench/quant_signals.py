"""Benchmark the signal stack on the simulated 700-stock world, and show what it produces.

Times, for 700 symbols x ~300 sessions of bars:
* ``technical_features`` (contiguous numpy blocks per symbol) against the baseline a pandas
  user writes first: ``groupby("symbol").apply`` of the same per-symbol indicator function;
* the whole ``build_feature_matrix`` (technical + fundamental + sentiment) and
  ``compute_alpha_scores``.
Prints ratios against the baseline measured in the same run, and a sanity summary (Spearman
correlation of each block with the next 20 sessions' returns, which the simulator seeds with
a weak factor structure, so expect small numbers of either sign).

Run: ``.venv/bin/python bench/quant_signals.py``
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from ibkr_assets.quant.alpha import compute_alpha_scores
from ibkr_assets.quant.features import FeatureInputs, build_feature_matrix
from ibkr_assets.quant.macro import latest_regime, macro_features
from ibkr_assets.quant.sentiment import LexiconScorer, score_headlines
from ibkr_assets.quant.technical import FEATURE_COLUMNS, technical_features, technical_indicators
from ibkr_sim.market import SimMarket

AS_OF = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # 08:00 New York
FIRST = date(2024, 3, 1)


def _timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _attributes(items: Sequence[object], names: Sequence[str]) -> pd.DataFrame:
    """One row per item, one column per attribute in ``names`` (in that order)."""
    return pd.DataFrame({name: [getattr(item, name) for item in items] for name in names})


def main() -> None:
    market = SimMarket()
    stocks = market.universe.stocks
    t0 = time.perf_counter()
    end = AS_OF.date() - timedelta(days=1)
    bars = pd.concat(
        [
            market.daily_bars(s.conid, FIRST, end).reset_index().assign(symbol=s.symbol)
            for s in stocks
        ],
        ignore_index=True,
    )
    statements = pd.concat(
        [market.fundamentals(s.conid, end).assign(symbol=s.symbol) for s in stocks],
        ignore_index=True,
    )
    eps = pd.DataFrame(
        {
            "symbol": [s.symbol for s in stocks],
            "forward_eps": [market.forward_eps(s.conid, end) for s in stocks],
        }
    )
    news = [h for s in stocks for h in market.news(s.conid, AS_OF - timedelta(days=60), AS_OF)]
    headlines = _attributes(news, ("symbol", "time", "headline", "tone"))
    snaps = market.snapshots([s.conid for s in stocks], AS_OF)
    quotes = _attributes(snaps, ("bid", "ask", "last", "prev_close", "time"))
    quotes = quotes.rename(columns={"prev_close": "close"})
    quotes.insert(0, "symbol", [s.symbol for s in stocks])
    universe = _attributes(stocks, ("symbol", "conid", "sector", "industry", "lot_size", "adv"))
    print(
        f"inputs from the simulator: {time.perf_counter() - t0:.1f} s; bars {bars.shape}, "
        f"statements {statements.shape}, headlines {len(headlines)}"
    )

    fast, features = _timed(lambda: technical_features(bars))

    def baseline() -> pd.DataFrame:
        ordered = bars.sort_values(["symbol", "session"])
        return ordered.groupby("symbol").apply(
            lambda g: technical_indicators(g).iloc[-1][list(FEATURE_COLUMNS)], include_groups=False
        )

    slow, reference = _timed(baseline, repeat=1)
    np.testing.assert_allclose(
        features[list(FEATURE_COLUMNS)].to_numpy(), reference.to_numpy(), rtol=1e-12
    )
    print(
        f"technical_features: {fast * 1e3:.0f} ms vs groupby-apply baseline {slow * 1e3:.0f} ms "
        f"-> {slow / fast:.1f}x faster (identical values)"
    )

    lexicon = LexiconScorer()
    score_time, scored = _timed(lambda: score_headlines(headlines, lexicon), repeat=1)
    agree = np.corrcoef(scored["polarity"], scored["tone"])[0, 1]
    print(
        f"lexicon scoring: {len(scored)} headlines in {score_time * 1e3:.0f} ms; "
        f"correlation with the simulator's tone {agree:.2f}"
    )

    build, matrix = _timed(
        lambda: build_feature_matrix(
            bars, FeatureInputs(quotes, statements, eps, scored, universe), AS_OF
        )
    )
    macro_hist = pd.DataFrame(
        {"spy": bars.loc[bars["symbol"] == stocks[0].symbol].set_index("session")["close"]}
    )
    regime = latest_regime(macro_features(macro_hist))
    score, alpha = _timed(
        lambda: compute_alpha_scores(matrix, macro_adjustment=regime.macro_adjustment)
    )
    print(
        f"build_feature_matrix: {build * 1e3:.0f} ms ({matrix.shape[0]} rows x "
        f"{matrix.shape[1]} columns); compute_alpha_scores: {score * 1e3:.0f} ms"
    )
    print(f"  technical share of the matrix build: {fast / build:.0%}")

    after = pd.concat(
        [
            market.daily_bars(s.conid, AS_OF.date(), AS_OF.date() + timedelta(days=30))
            .reset_index()
            .assign(symbol=s.symbol)
            for s in stocks
        ]
    )
    fwd = after.groupby("symbol")["close"].agg(lambda c: c.iloc[min(19, len(c) - 1)])
    last = matrix.set_index("symbol")["close"]
    forward = (fwd / last - 1).rename("fwd_20d")
    table = alpha.set_index("symbol").join(forward)
    ic = table[["alpha_score", "technical", "fundamental", "sentiment"]].corrwith(
        table["fwd_20d"], method="spearman"
    )
    print("rank IC vs next 20 sessions:", ", ".join(f"{k} {v:+.3f}" for k, v in ic.items()))
    print("null share per column (top 5):")
    print(matrix.isna().mean().sort_values(ascending=False).head(5).to_string())
    print(alpha.sort_values("alpha_score", ascending=False).head(5).to_string(index=False))


if __name__ == "__main__":
    main()
