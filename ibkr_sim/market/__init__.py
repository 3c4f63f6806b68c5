"""The simulated market: deterministic prices, quotes, fundamentals, news, scanners and options.

:class:`SimMarket` answers every request for one seed; each concept lives in its own module,
with the model it follows and its references:

- :mod:`~ibkr_sim.market.calendar`: NYSE sessions 2019-01-02 .. 2028-12-29, trading hours, and
  where an instant falls (in a session, before the open, after the close);
- :mod:`~ibkr_sim.market.edge`: every link between an observable and future returns (news tone,
  quality, momentum, announcement timing), one named parameter each; ``Edge.none()`` is the
  edge-free world;
- :mod:`~ibkr_sim.market.paths`: the daily panel (a multi-factor GJR-GARCH return model with
  jumps and the edge's drifts, OHLCV for every stock and macro instrument) and each session's
  intraday price path;
- :mod:`~ibkr_sim.market.bars`: daily, weekly, monthly and intraday bars (``reqHistoricalData``);
- :mod:`~ibkr_sim.market.quotes`: top-of-book snapshots and the level-2 book;
- :mod:`~ibkr_sim.market.fundamentals`: point-in-time quarterly statements (Piotroski-ready)
  and consensus forward EPS;
- :mod:`~ibkr_sim.market.news`: dated headlines whose tone relates to returns;
- :mod:`~ibkr_sim.market.social`: per-session social post and mention counts, spiking with news
  and big moves;
- :mod:`~ibkr_sim.market.scanner`: IB's market scanners (top gainers and losers, most active,
  hot by volume);
- :mod:`~ibkr_sim.market.options`: monthly options on a strike ladder, priced by Black-Scholes.

The contracts themselves (symbols, conIds, sizes) are :mod:`ibkr_sim.universe`'s.

Everything is a pure function of ``seed``, the edge and the session: the whole panel is drawn
once per seed and edge from ``numpy.random.SeedSequence`` and cached per process, so two
processes see identical numbers and a stock's history does not depend on how many stocks the
universe holds.
"""

from ibkr_sim.market.calendar import FIRST_SESSION, LAST_SESSION
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.news import NEWS_PROVIDERS, Headline
from ibkr_sim.market.options import STRIKE_LADDER, black_scholes, monthly_expiry
from ibkr_sim.market.quotes import Snapshot
from ibkr_sim.market.scanner import ScanResult
from ibkr_sim.market.sim_market import SimMarket

__all__ = [
    "FIRST_SESSION",
    "LAST_SESSION",
    "NEWS_PROVIDERS",
    "STRIKE_LADDER",
    "Edge",
    "Headline",
    "ScanResult",
    "SimMarket",
    "Snapshot",
    "black_scholes",
    "monthly_expiry",
]
