"""The tws backend's batch calls (``resolve_many``, ``contract_details_many``): the requests of
all items in flight together on the connection's loop, each item answered with its result or
its own error, as :mod:`ibkr_assets.broker.batch` does one item at a time.

IB answers many contract-details requests in flight at once (each carries its own reqId); what
it limits is the message rate, 50 a second [ORDLIM in ``shared/ibkr-behaviour/tws.md``], which
the connection's :class:`~.connection.MessageBucket` keeps when pacing is on. Sending them one
after another instead costs a round trip per symbol (700 symbols: about 16 s through the
simulated gateway, measured, bench/daily_5000.py, session 16).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import ib_async

from ibkr_assets.broker.batch import CONNECTION_ERRORS
from ibkr_assets.broker.errors import BrokerError, error_from_ib

T = TypeVar("T")
R = TypeVar("R")

#: requests of one batch in flight at once: a bound on the answers waiting in memory and on the
#: burst a batch sends, not an IB limit (IB documents none for contract details)
IN_FLIGHT = 50


async def gather_each(
    items: Sequence[T], ask: Callable[[T], Awaitable[R]], limit: int = IN_FLIGHT
) -> list[R | BrokerError]:
    """``await ask(item)`` for every item, ``limit`` at a time, in the items' order, an item's
    BrokerError (or IB's error for its request) in its place. An error of the connection
    (:data:`~ibkr_assets.broker.batch.CONNECTION_ERRORS`, a dropped socket) is raised and the
    requests still waiting are cancelled: every later item would meet it too."""
    slots = asyncio.Semaphore(limit)

    async def one(item: T) -> R | BrokerError:
        async with slots:
            try:
                return await ask(item)
            except ib_async.RequestError as exc:
                error = error_from_ib(exc.code, exc.message)
            except CONNECTION_ERRORS:
                raise
            except BrokerError as exc:
                return exc
        if isinstance(error, CONNECTION_ERRORS):
            raise error
        return error

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # the ones still waiting when another raised; a no-op on the done
