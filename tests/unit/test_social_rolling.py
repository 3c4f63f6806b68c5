"""The social scores' trailing medians, every column in one rolling call, against pandas'
rolling median column by column (the definition in the docstring of
:func:`~ibkr_assets.quant.social.robust_zscores`), bit for bit, on a sparse random panel with
gaps and a column never counted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ibkr_assets.quant.social import CLIP, MIN_SCALE, robust_zscores


def _by_column(counts: pd.DataFrame, window: int, min_history: int) -> pd.DataFrame:
    logs = np.log1p(counts.astype("float64"))

    def trailing(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.shift(1).rolling(window, min_periods=min_history).median()

    median = trailing(logs)
    spread = trailing((logs - median).abs())
    return ((logs - median) / np.maximum(1.4826 * spread, MIN_SCALE)).clip(-CLIP, CLIP)


def test_robust_zscores_equal_the_column_by_column_rolling_medians():
    rng = np.random.default_rng(3)
    counts = rng.poisson(4.0, (150, 9)).astype("float64")
    counts[rng.random(counts.shape) < 0.2] = np.nan
    counts[:, 4] = np.nan  # never counted
    counts[100:, 2] = rng.poisson(300.0, 50)  # a lasting spike
    frame = pd.DataFrame(counts, columns=[f"S{j}" for j in range(9)])
    for window, min_history in ((60, 20), (5, 1), (10, 10)):
        out = robust_zscores(frame, window, min_history)
        pd.testing.assert_frame_equal(out, _by_column(frame, window, min_history), check_exact=True)
        assert out.notna().to_numpy().sum() > 0
