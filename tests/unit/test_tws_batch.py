"""The tws backend's batch calls (broker/tws/batch.gather_each): every item's request in flight
together, at most ``limit`` at once, each item answered with its result or its own error, an
error of the connection raised with the waiting requests cancelled."""

from __future__ import annotations

import asyncio

import ib_async
import pytest

from ibkr_assets.broker.errors import ContractNotFound, InvalidRequest, NotConnected
from ibkr_assets.broker.tws.batch import gather_each


def test_answers_in_order_with_each_items_error_in_place() -> None:
    in_flight, most = 0, 0

    async def ask(item: int) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01 * (item % 3))  # answers arrive out of order
        in_flight -= 1
        if item == 2:
            raise ContractNotFound("no security definition for 2")
        if item == 4:
            raise ib_async.RequestError(7, 162, "HMDS query returned no data")
        return item * 10

    got = asyncio.run(gather_each(range(9), ask, limit=4))
    assert [g for i, g in enumerate(got) if i not in (2, 4)] == [0, 10, 30, 50, 60, 70, 80]
    assert isinstance(got[2], ContractNotFound)
    assert isinstance(got[4], InvalidRequest) and got[4].code == 162, "IB's error, typed"
    assert most == 4, "at most `limit` requests in flight, and that many"


def test_a_connection_error_is_raised_and_the_waiting_requests_cancelled() -> None:
    started: list[int] = []

    async def ask(item: int) -> int:
        started.append(item)
        if item == 1:
            raise NotConnected("IB did not answer details of 1 within 20 s")
        await asyncio.sleep(0.05)
        return item

    async def run() -> None:
        with pytest.raises(NotConnected):
            await gather_each(range(10), ask, limit=2)
        await asyncio.sleep(0.2)  # a request not cancelled would start meanwhile

    asyncio.run(run())
    assert len(started) <= 3, f"requests started after the connection failed: {started}"
