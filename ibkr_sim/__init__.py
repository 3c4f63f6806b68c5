"""The simulated IB world: a deterministic market, a paper exchange and IB-protocol gateways.

``ibkr_sim.universe`` (contracts), ``ibkr_sim.market`` (prices, quotes, fundamentals, news,
scanners, options), ``ibkr_sim.exchange`` (the paper exchange) and ``ibkr_sim.gateway`` (the
TWS-protocol gateway). IB's own rules (error codes, the duration / bar-size grammar, commissions,
margin) come from :mod:`ibkr_spec`. Nothing here imports ``ibkr_assets`` or ``mcp_server``.
"""
