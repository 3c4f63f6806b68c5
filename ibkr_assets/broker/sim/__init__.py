"""The ``sim`` backend: the Broker protocol over the simulated IB world, in-process.

The fastest backend and the default: no socket, no gateway. It answers from
:class:`ibkr_sim.market.SimMarket` (deterministic prices, fundamentals, news, scanners) and trades
on :class:`ibkr_sim.exchange.PaperExchange`, whose state lives in one SQLite file under the data
root so that every process pointed at the same ``IBKR_DATA_DIR`` (the pipeline, the MCP server)
sees one paper account.

The clock is the wall clock unless ``IBKR_SIM_NOW`` pins it (backfills, tests); a pinned clock
stands still, so a backfill sees the market exactly as it was at that instant.

The package: :mod:`.backend` (:class:`SimBroker`), :mod:`.convert` (the simulator's records and
errors as the broker's models and errors), :mod:`.world` (what only the simulated world can
answer: its stock list and market, for the pipeline).
"""

from __future__ import annotations

from ibkr_assets.broker.sim.backend import SimBroker, shared_market
from ibkr_assets.broker.sim.convert import to_contract
from ibkr_assets.broker.sim.world import listed_stocks, simulated_market, simulated_stocks

__all__ = [
    "SimBroker",
    "listed_stocks",
    "shared_market",
    "simulated_market",
    "simulated_stocks",
    "to_contract",
]
