"""What only the simulated world can answer: the pipeline reaches it through these (the default
watch-list, the demo's ticker list, the simulated fundamentals source), never through IB."""

from __future__ import annotations

from ibkr_assets.broker.guarded import GuardedBroker
from ibkr_assets.broker.protocol import Broker
from ibkr_assets.broker.sim.backend import SimBroker, shared_market
from ibkr_sim.market import SimMarket
from ibkr_sim.universe import Universe


def _sim_backend(broker: Broker) -> SimBroker | None:
    """The sim backend behind ``broker`` (bare or behind the order guard), else None."""
    inner = broker.inner if isinstance(broker, GuardedBroker) else broker
    return inner if isinstance(inner, SimBroker) else None


def listed_stocks(broker: Broker) -> list[str]:
    """Tickers of every stock the sim backend's market lists, in universe order: the default
    watch-list when none is configured. IB itself has no such list, so any other backend is a
    ``TypeError`` naming it."""
    sim = _sim_backend(broker)
    if sim is None:
        raise TypeError(f"the {broker.name!r} backend cannot list its stocks; only 'sim' can")
    return _tickers(sim.market.universe)


def simulated_stocks(seed: int, n_stocks: int) -> list[str]:
    """Tickers of the stocks the simulated world of ``seed`` and ``n_stocks`` lists (what the
    simulated gateway serves), in universe order, without drawing its prices."""
    return _tickers(Universe(seed, n_stocks))


def _tickers(universe: Universe) -> list[str]:
    return [inst.symbol for inst in universe.stocks]


def simulated_market(broker: Broker, seed: int, n_stocks: int, edge: str) -> SimMarket:
    """The simulated market behind ``broker``: the sim backend's own, else (the ``tws`` or
    ``webapi`` backend against a simulated gateway) the same deterministic market rebuilt from
    ``seed``, ``n_stocks`` and ``edge`` (``IBKR_SIM_SEED``, ``IBKR_SIM_SYMBOLS``,
    ``IBKR_SIM_EDGE``)."""
    sim = _sim_backend(broker)
    return sim.market if sim is not None else shared_market(seed, n_stocks, edge)
