"""A simulated IB Gateway: the TWS API socket protocol over the simulated market and paper exchange.

Start one in-process with :func:`start_gateway` (a background thread; ``port=0`` picks a free
loopback port) or from the shell with ``ibkr-sim gateway``; then connect any TWS API client, e.g.
``ib_async.IB().connect("127.0.0.1", handle.port, clientId=1)``.
"""

from ibkr_sim.gateway.server import (
    SERVER_VERSION,
    Gateway,
    GatewayHandle,
    running_clock,
    start_gateway,
)

__all__ = ["SERVER_VERSION", "Gateway", "GatewayHandle", "running_clock", "start_gateway"]
