"""The simulated market's edge: every link between something a trader can observe and future
returns, each one named parameter of the world.

Nothing else in :mod:`ibkr_sim.market` lets an observable predict returns: with
:meth:`Edge.none` headline tone, fundamentals and past returns carry no information about
tomorrow, so a strategy that shows an edge there is fitting noise. The defaults are sized so
each signal's daily information coefficient (IC: the cross-sectional rank correlation of a
signal with the next session's return, averaged over sessions) lands at about 0.01-0.03, the
range published for real signals, rather than the 0.10 a built-in drift gave before. By the
Grinold-Kahn rule (Grinold & Kahn, *Active Portfolio Management*, 2000) the expected return per
unit signal z-score is ``IC * sigma``: with the simulated stocks' cross-sectional daily
volatility of about 1.8 %, an IC of 0.015 is about 2.7 bp a day per standard deviation.

Measured on seed 7, 2019-2028, 700 stocks, daily IC (t-statistic) with the defaults: news tone
0.0175 (15.3), Piotroski F-score 0.0141 (19.8), 12-1 momentum 0.0124 (10.9); with
:meth:`Edge.none`: 0.0013 (1.1), -0.0007 (-1.0), -0.0006 (-0.5)
(``tests/unit/test_market_edge.py`` keeps them in their bands); social chatter's
(:attr:`Edge.social_attention_drift`) is measured in ``tests/unit/test_market_social.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

#: The worlds ``--edge`` / ``IBKR_SIM_EDGE`` name.
EdgeName = Literal["default", "none"]


@dataclass(frozen=True)
class Edge:
    """How strongly each observable predicts returns (all zero: :meth:`none`).

    - ``news_tone_drift``: daily drift (log return) per unit headline tone (tone in [-1, 1]) on
      the first session after the news, decaying by 0.8 a session over five sessions
      (:mod:`ibkr_sim.market.paths`). Tetlock (2007) finds media pessimism pushes the whole
      market down for a day, then reverts; for single firms, negative words in firm-specific
      news forecast low earnings and next-day returns with a small under-reaction (Tetlock,
      Saar-Tsechansky & Macskassy 2008), a few basis points per standard deviation of tone.
      The daily IC of 0.01-0.03 is a modelling choice in the range vendors publish for news
      sentiment, not a figure from these papers. Default 0.0004 (4 bp at tone 1, about
      2 bp per standard deviation of a news day's tone, plus the decaying tail): daily IC of
      the day's tone about 0.017.
    - ``quality_drift``: daily drift per standard deviation of the latent "quality" that the
      fundamentals reveal (:mod:`ibkr_sim.market.fundamentals` grows good companies' revenue,
      margins and cash flow, so the Piotroski F-score ranks it). Piotroski (2000, *Journal of
      Accounting Research*) studies only high book-to-market firms, 1976-1996: picking the
      strong ones raises a value investor's mean return by at least 7.5 % a year, and long
      high / short low F-score earns about 23 % a year, concentrated in small, thinly followed
      firms; it is weaker after publication (replicated as "PS" in Chen & Zimmermann's Open
      Source Asset Pricing, 2022). Quality factors' monthly ICs are a few hundredths (Asness,
      Frazzini & Pedersen 2019, "Quality minus junk"), about 0.01 a day for a slowly changing
      signal: the default is sized to the weaker, broad-universe evidence, not to 23 %. Default
      0.00025 (about 6 % a year per standard deviation): the F-score's daily IC about 0.014.
    - ``momentum``: daily drift per standard deviation of a stock's idiosyncratic return over
      the past 12 months skipping the last one (12-1 momentum). Jegadeesh & Titman (1993) find
      winners beat losers by about 1 % a month (decile spread, 3-12 month formation), a
      monthly IC of about 0.03-0.05 and so a daily IC of about 0.01. Default 0.00015 (3.8 % a
      year per standard deviation): daily IC of 12-1 momentum about 0.012 (``quality_drift``
      adds to it, as a persistent drift shows in past returns too).
    - ``jump_news_lead``: minutes a jump's first headline comes *before* the price can move
      (the open, as the simulated market has no pre-market trading). Any value above 0 lets a
      pre-market reader trade the jump from its headline's tone, which no real reader can: the
      move and the news arrive together. Default 0: the headline is stamped at or after the
      open, the minute the price gaps.
    - ``social_attention_drift``: daily drift per unit of abnormal social attention (the
      standardised surprise in a stock's chatter, :mod:`ibkr_sim.market.social`), as price
      pressure: weight 1 on the next session decaying to 0.2 on the fifth, then reversed
      evenly over sessions 6-25 (:func:`~ibkr_sim.market.social.price_pressure`). Positive:
      retail attention brings buying (Barber & Odean 2008) and higher prices over the next two
      weeks that reverse within the year (Da, Engelberg & Gao 2011, with search volume as the
      attention measure). Default 0.0002 (2 bp the next session per standard deviation of
      abnormal attention, 6 bp over the push, all of it given back): sized from the IC, not from
      Da et al.'s larger effect in small stocks; seed 7's daily IC of the post-spike z-score is
      about 0.007, of the mention anomaly about 0.017.
    """

    news_tone_drift: float = 0.0004
    quality_drift: float = 0.00025
    momentum: float = 0.00015
    jump_news_lead: int = 0
    social_attention_drift: float = 0.0002

    @classmethod
    def none(cls) -> Edge:
        """The edge-free world: every link zero, so no observable predicts returns."""
        return cls(**{f.name: type(f.default)(0) for f in fields(cls)})

    @classmethod
    def named(cls, name: str) -> Edge:
        """The world ``--edge`` / ``IBKR_SIM_EDGE`` names: ``default`` or ``none``."""
        if name == "default":
            return cls()
        if name == "none":
            return cls.none()
        raise ValueError(f"unknown edge {name!r}: use 'default' or 'none'")
