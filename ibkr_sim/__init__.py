"""The simulated IB world: a deterministic market, a paper exchange and IB-protocol gateways.

``ibkr_sim.universe`` (contracts), ``ibkr_sim.market`` (prices, quotes, fundamentals, news,
scanners, options), ``ibkr_sim.ibspec`` (IB's duration / bar-size grammar) and
``ibkr_sim.errors`` (IB-coded errors). Nothing here imports ``ibkr_assets``.
"""
