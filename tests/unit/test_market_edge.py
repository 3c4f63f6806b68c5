"""Each signal's information coefficient on a seeded world: in its band with the default edge,
indistinguishable from zero without it (:class:`ibkr_sim.market.edge.Edge`).

The daily IC is the cross-sectional rank correlation of a signal known at a session's close with
the next session's close-to-close return, averaged over 2019-2028 (about 2,500 sessions, 700
stocks); its standard error is the daily ICs' standard deviation over the square root of their
number (about 0.001). Measured on seed 7 (IC, t-statistic):

=================  ===============  ===============
signal             default edge     ``Edge.none()``
=================  ===============  ===============
news tone          0.0175 (t=15.3)  0.0013 (t=1.1)
Piotroski F-score  0.0141 (t=19.8)  -0.0007 (t=-1.0)
12-1 momentum      0.0124 (t=10.9)  -0.0006 (t=-0.5)
=================  ===============  ===============
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.fundamental import piotroski_fscore
from ibkr_sim.market.calendar import schedule
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.fundamentals import statements
from ibkr_sim.market.paths import panel
from ibkr_sim.universe import LISTED_STOCKS

SEED = 7
#: the band the defaults are sized for (Edge's docstring: published daily ICs)
BAND = (0.01, 0.03)
#: with no edge an IC must lie within this many standard errors of zero
NONE_SE = 4.0


def _daily_ic(signal: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Per-session Spearman correlation of ``signal`` with ``forward`` (sessions x stocks; NaN
    where a stock has no signal), over sessions with at least 30 stocks."""
    known = ~np.isnan(signal) & ~np.isnan(forward)
    rows = known.sum(axis=1) >= 30
    known = known[rows]
    sig = pd.DataFrame(np.where(known, signal[rows], np.nan)).rank(axis=1).to_numpy()
    fwd = pd.DataFrame(np.where(known, forward[rows], np.nan)).rank(axis=1).to_numpy()
    sig -= np.nanmean(sig, axis=1, keepdims=True)
    fwd -= np.nanmean(fwd, axis=1, keepdims=True)
    cov = np.nansum(sig * fwd, axis=1)
    return cov / np.sqrt(np.nansum(sig**2, axis=1) * np.nansum(fwd**2, axis=1))


def _fscore() -> np.ndarray:
    """(sessions, stocks) Piotroski F-score as known at each session's close: the project's
    :func:`piotroski_fscore` over the simulated statements, recomputed after each quarter's
    reports are in (the last session of February, May, August and November), held until the
    next."""
    st = statements(SEED)
    n, k = LISTED_STOCKS, len(st.period_end)
    names = np.arange(n).astype(str)
    frame = pd.DataFrame(
        {
            "symbol": np.repeat(names, k),
            "period_end": np.tile(st.period_end, n),
            "report_date": st.report_date.ravel(),
            **{item: v.ravel() for item, v in st.items.items()},
        }
    )
    days = schedule()[0]
    month = days.astype("datetime64[M]").astype(int)
    ends = np.flatnonzero((np.diff(month) != 0) & (month[:-1] % 3 == 1))  # Feb, May, Aug, Nov
    score = np.full((len(days), n), np.nan)
    for a, b in zip(ends, [*ends[1:], len(days) - 1], strict=True):
        known = piotroski_fscore(frame, pd.Timestamp(days[a]))["piotroski"]
        score[a : b + 1] = known.reindex(names).to_numpy()
    return score


@pytest.fixture(scope="module")
def fscore() -> np.ndarray:
    return _fscore()


def _ics(edge: Edge, fscore: np.ndarray) -> dict[str, np.ndarray]:
    """Daily ICs of news tone, F-score and 12-1 momentum against the next session's return."""
    p = panel(SEED, edge)
    log_close = np.log(p.close[:, :LISTED_STOCKS])
    nxt = np.full_like(log_close, np.nan)
    nxt[:-1] = np.diff(log_close, axis=0)  # row t: the return of session t + 1
    tone = np.where(p.news_count[:, :LISTED_STOCKS] > 0, p.news_tone[:, :LISTED_STOCKS], np.nan)
    momentum = np.full_like(log_close, np.nan)
    momentum[252:] = log_close[231:-21] - log_close[:-252]  # sessions t-252 .. t-21
    return {
        "news tone": _daily_ic(tone.astype(np.float64), nxt),
        "Piotroski F-score": _daily_ic(fscore, nxt),
        "12-1 momentum": _daily_ic(momentum, nxt),
    }


def _report(name: str, ic: np.ndarray) -> tuple[float, float, float]:
    mean, se = float(ic.mean()), float(ic.std(ddof=1) / np.sqrt(len(ic)))
    print(f"{name}: IC {mean:+.4f} (t={mean / se:+.1f}, {len(ic)} sessions)")
    return mean, se, mean / se


@pytest.mark.slow
def test_default_edge_gives_each_signal_a_realistic_ic(fscore: np.ndarray) -> None:
    for name, ic in _ics(Edge(), fscore).items():
        mean, _, t = _report(name, ic)
        assert BAND[0] <= mean <= BAND[1], f"{name}: daily IC {mean:.4f} outside {BAND}"
        assert t > 5.0, f"{name}: daily IC {mean:.4f} is not significant (t={t:.1f})"


@pytest.mark.slow
def test_no_edge_leaves_no_signal_with_an_ic(fscore: np.ndarray) -> None:
    for name, ic in _ics(Edge.none(), fscore).items():
        mean, se, _ = _report(name, ic)
        assert abs(mean) < NONE_SE * se, f"{name}: IC {mean:.4f} without edge (se {se:.4f})"


def test_edge_none_zeroes_every_link_and_names_are_checked() -> None:
    none = Edge.none()
    assert all(getattr(none, f) == 0 for f in Edge.__dataclass_fields__)
    assert Edge.named("none") == none and Edge.named("default") == Edge()
    assert all(getattr(Edge(), f) >= 0 for f in Edge.__dataclass_fields__)
    with pytest.raises(ValueError, match="'default' or 'none'"):
        Edge.named("strong")
