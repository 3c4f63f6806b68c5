"""sector_exposure's sums are pandas' groupby sums to the bit (Kahan-compensated, in row order)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ibkr_assets.quant.risk_metrics import sector_exposure


def _by_groupby(weights: pd.Series, sectors: pd.Series) -> pd.DataFrame:
    held = weights[weights != 0]
    frame = pd.DataFrame({"sector": sectors.reindex(held.index).astype(str), "w": held})
    frame["gross"] = held.abs()
    out = frame.groupby("sector")[["w", "gross"]].sum().rename(columns={"w": "net"})
    return out.sort_values("gross", ascending=False)


def test_sector_sums_equal_the_groupby_frame_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    for _trial in range(200):
        k = int(rng.integers(1, 60))
        symbols = [f"S{i}" for i in range(k)]
        weights = pd.Series(rng.normal(0, 0.05, k) * 10.0 ** rng.integers(-6, 8, k), symbols)
        weights[rng.random(k) < 0.2] = 0.0
        sectors = pd.Series(rng.choice(["Tech", "Energy", "Health", "Utilities"], k), symbols)
        got = sector_exposure(weights, sectors)
        pd.testing.assert_frame_equal(got, _by_groupby(weights, sectors), check_exact=True)


def test_the_compensated_sum_keeps_what_a_plain_sum_loses() -> None:
    weights = pd.Series({"A": 1e16, "B": 1.0, "C": 1.0, "D": -1e16})
    got = sector_exposure(weights, pd.Series("X", index=weights.index))
    assert got.loc["X", "net"] == 2.0  # a plain left-to-right sum gives 0.0
