"""The ``tws`` backend: the Broker protocol on ib_async, against TWS, IB Gateway or the simulated
gateway (``ibkr-sim gateway``), which speak the same socket protocol.

How it behaves, for a trader who has fought IB's API before:

* **One event loop, many threads.** ib_async is asyncio; the protocol is synchronous and called
  from Dagster ops and the MCP server's worker threads. The backend runs ib_async on its own loop
  in a daemon thread and every call is submitted to it, so callers never share a loop.
  Everything that touches ib_async (its futures, its wrapper) runs as one ``async def`` on that
  loop; requests ib_async keys by name rather than by reqId (current time, open and completed
  orders, account updates, news providers, scanner parameters) are sent one at a time, since a
  second one in flight would orphan the first.
* **Pacing.** IB allows 50 messages per second per client (error 100), 100 simultaneous
  market-data lines (error 101), 3 depth subscriptions (error 309) and 50 simultaneous historical
  requests; for historical data it refuses an identical request within 15 s, a sixth request for
  one contract and tick type within 2 s, and more than 60 requests for bars of 30 s or less in
  10 minutes (error 162). Every message passes a token bucket at IB's own rate
  (``max_msg_rate`` 50/s, ``msg_burst`` 40) instead of ib_async's 45/s sliding window;
  snapshots, depth and historical requests go through semaphores below IB's limits, identical
  historical requests within 15 s are answered from memory, and the two historical windows are
  kept client-side (a request waits for its slot). A 700-symbol ingest therefore never trips a
  pacing violation. ``IBKR_PACING=false`` turns the client-side pacing off, for a gateway that
  does not enforce it (``ibkr-sim gateway --pacing off``).
* **Market data.** Asks for ``IBKR_MARKET_DATA_TYPE`` (live by default) and falls back to
  delayed data where IB has no subscription (10089 / 354), as a paper account without market
  data needs; every quote carries IB's time and the market-data type it was served with;
  average volume is IB's tick 21 (generic tick 165), else derived from daily bars.
* **Connection.** Connects once, with retry and exponential backoff; after a dropped connection
  (a gateway restart, IB's nightly reset) the next call reconnects (same clientId) with backoff
  for at most ``IBKR_RECONNECT_SECONDS`` and restores the market-data type; a read in flight when
  the connection dropped is sent again, an order never. Farm notices (2103-2158) are
  information; on 1101 the streaming subscriptions are requested again.
* **Errors.** ib_async is told to raise request errors; IB's codes become the typed errors of
  :mod:`ibkr_assets.broker.errors` (200 -> ContractNotFound, 162 pacing -> PacingViolation...).

The package, by concept: :mod:`.connection` (the loop, connecting and reconnecting, the message
throttle), :mod:`.pacing` (IB's historical-data pacing), :mod:`.contracts`, :mod:`.accounts`,
:mod:`.market_data` (quotes, bars, depth, news, scanners), :mod:`.orders`, and :mod:`.backend`,
the Broker whose methods run them.
"""

from __future__ import annotations

from ibkr_assets.broker.tws.backend import TwsBroker
from ibkr_assets.broker.tws.contracts import from_ib_contract, to_ib_contract
from ibkr_assets.broker.tws.orders import to_ib_order

__all__ = ["TwsBroker", "from_ib_contract", "to_ib_contract", "to_ib_order"]
