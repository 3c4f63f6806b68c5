"""The ``webapi`` backend: the Broker protocol over IBKR's Client Portal Web API, against the
Client Portal gateway (``https://localhost:5000/v1/api``) or the simulated one
(``ibkr-sim webapi``).

**Client library: httpx, not ibind.** ibind (Voyz/ibind 0.2.x) is the best-kept Client Portal
client and does OAuth 1.0a for IBKR's hosted API, but what this backend must guarantee is the
part ibind leaves to its caller or does otherwise: it answers reply questions by matching the
question's text against a caller's table (here only known message ids are confirmed, the rest
declined with IB's text), it has no pacing under IBKR's per-endpoint limits (it retries, which
is how its users meet 429s and the penalty box; its REST base client retries on its own), and it
writes its own daily log files. httpx, already a dependency of the
project, gives a thread-safe pooled HTTPS client with certificate verification on by default;
the Web API itself is plain JSON over HTTPS. OAuth for IBKR's hosted API (no local gateway) is
the next step, where ibind's OAuth module is the reference to follow.

How it behaves:

* **Session** (:mod:`.session`): TLS verified (``IBKR_WEBAPI_VERIFY``, ``IBKR_WEBAPI_CA_FILE``);
  the login is the gateway's browser step, the brokerage session is opened by the backend, kept
  alive with ``/tickle`` every 60 s and reopened on a 401 (the request then sent once more: the
  gateway refused it unread). ``/iserver/accounts`` primes each brokerage session.
* **Pacing** (:mod:`.pacing`): every request waits for room under IBKR's limits
  (:mod:`ibkr_spec.webapi`: 10/s overall, the per-endpoint table, 5 history requests at once),
  so the gateway never answers 429; ``IBKR_PACING=false`` turns it off for a gateway without
  limits.
* **Contracts** (:mod:`.contracts`): secdef search -> conid -> contract info, kept per conid.
* **Market data** (:mod:`.market_data`): snapshots past IBKR's pre-flight, field 6509 as IB's
  market-data type; history in IBKR's period / bar grammar.
* **Accounts** (:mod:`.accounts`): /iserver/accounts and the /portfolio endpoints.
* **Orders** (:mod:`.orders`): reply questions confirmed only for the message ids the order guard
  already covers (o354, o163, o383, o451), others declined with IB's text; the order as IB holds
  it read from the day's orders.
* **Errors**: IBKR's HTTP statuses and ``{"error": text}`` bodies as the broker's typed errors.

Not served yet (a BrokerError naming the method): option chains and option contracts, depth,
news, P&L, scanners; trading hours in contract details.
"""

from __future__ import annotations

from ibkr_assets.broker.webapi.backend import WebApiBroker
from ibkr_assets.broker.webapi.orders import SAFE_REPLIES

__all__ = ["SAFE_REPLIES", "WebApiBroker"]
