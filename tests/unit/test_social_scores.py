"""The social-chatter scores (:mod:`ibkr_assets.quant.social`) the daily job and the replay
compute: the replay's panel, read at a session's run time, gives the live feature matrix's
scores for the chatter known then, and never a count of a session not yet closed."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from ibkr_assets.partitions import as_of, previous_sessions
from ibkr_assets.quant.social import (
    SOCIAL_COLUMNS,
    known_row,
    lookback,
    social_features,
    social_panel,
)

SYMBOLS = [f"S{i}" for i in range(12)]
DAYS = previous_sessions(date(2024, 6, 12), 200)


def _chatter() -> pd.DataFrame:
    """200 sessions of overdispersed counts for 12 names, a few not counted (NaN), one name
    with a spike on the last session."""
    rng = np.random.default_rng(3)
    n = len(DAYS) * len(SYMBOLS)
    frame = pd.DataFrame(
        {
            "symbol": np.tile(SYMBOLS, len(DAYS)),
            "session": np.repeat(pd.DatetimeIndex(DAYS), len(SYMBOLS)),
            "posts": rng.poisson(rng.gamma(2.0, 3.0, n)).astype(float),
            "mentions": rng.poisson(rng.gamma(2.0, 80.0, n)).astype(float),
        }
    )
    frame.loc[rng.random(n) < 0.03, "mentions"] = np.nan
    frame.loc[(frame["symbol"] == "S0") & (frame["session"] == pd.Timestamp(DAYS[-1])), "posts"] = (
        200
    )
    return frame


def test_the_panel_read_at_a_run_time_is_the_live_score_of_the_chatter_known_then() -> None:
    chatter = _chatter()
    panel = social_panel(chatter, SYMBOLS)
    for k in (lookback(), 150, len(DAYS) - 1):
        session = DAYS[k]
        at = pd.Timestamp(as_of(session.isoformat()))  # the daily job's run, before the open
        known = chatter.loc[chatter["session"] < pd.Timestamp(session)]
        live = social_features(
            known.loc[known["session"] >= pd.Timestamp(DAYS[k - lookback()])], SYMBOLS
        )
        replay = known_row(panel, at, SYMBOLS)
        np.testing.assert_array_equal(replay.to_numpy(), live.to_numpy())
        assert list(replay.columns) == list(SOCIAL_COLUMNS)
        assert replay["social_volume_z"].notna().sum() >= 9  # a few counts are missing


def test_a_session_counts_from_its_close_and_a_spike_scores_high() -> None:
    panel = social_panel(_chatter(), SYMBOLS)
    last = DAYS[-1]
    before_close = pd.Timestamp(f"{last} 15:59", tz="America/New_York")
    after_close = pd.Timestamp(f"{last} 16:00", tz="America/New_York")
    early = known_row(panel, before_close, SYMBOLS)
    late = known_row(panel, after_close, SYMBOLS)
    assert late.loc["S0", "social_posts"] == 200 and early.loc["S0", "social_posts"] != 200
    assert late.loc["S0", "social_spike_z"] > 3 > early.loc["S0", "social_spike_z"]
    nothing = known_row(panel, pd.Timestamp(f"{DAYS[0]} 12:00", tz="UTC"), SYMBOLS)
    assert nothing.isna().all().all()
