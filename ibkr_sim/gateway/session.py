"""What every request handler works with: one connected API client (:class:`Session`) and the
world all clients share (:class:`GatewayState`).

The handlers (:mod:`~ibkr_sim.gateway.handlers`, :mod:`~ibkr_sim.gateway.accounts`,
:mod:`~ibkr_sim.gateway.orders`, :mod:`~ibkr_sim.gateway.market_data`) answer on a session; the
server (:mod:`~ibkr_sim.gateway.server`) reads, dispatches and runs each connection's
background work. Both import this module and it imports neither, so the gateway's modules form
no circle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ibkr_sim.exchange import PaperExchange
from ibkr_sim.gateway import wire
from ibkr_sim.gateway.news import NewsStore
from ibkr_sim.gateway.pacing import Pacer
from ibkr_sim.gateway.profile import IDEAL, RealismProfile
from ibkr_sim.market import SimMarket
from ibkr_spec.errors import IBError

Handler = Callable[["Session", wire.Reader], Any]


@dataclass
class GatewayState:
    """What every session shares: the simulated world, the clock, the pacing emulation, the
    realism profile and the outages in progress."""

    market: SimMarket
    exchange: PaperExchange
    clock: Callable[[], datetime]
    pacer: Pacer
    profile: RealismProfile = IDEAL
    #: between 1100 and 1101 / 1102, and while the data farms are broken: no streaming
    connectivity_down: bool = False
    farms_down: bool = False
    client_ids: set[int] = field(default_factory=set)
    #: exchange order id -> (clientId, orderId) of the API client that placed it
    order_owner: dict[int, tuple[int, int]] = field(default_factory=dict)
    sessions: set[Session] = field(default_factory=set)
    #: headlines drawn for the clients' news requests, a block of stocks at a time
    news: NewsStore = field(default_factory=NewsStore)

    def now(self) -> datetime:
        return self.clock()

    def managed_accounts(self) -> list[str]:
        """The accounts this login manages (``managedAccounts``), primary first: the first
        ``profile.accounts`` accounts of the paper exchange."""
        return [a.account_id for a in self.exchange.accounts()][: self.profile.accounts]

    @property
    def streaming(self) -> bool:
        """Whether market data flows (not during a connectivity loss or a farm outage)."""
        return not (self.connectivity_down or self.farms_down)

    def lines(self) -> int:
        """Market-data lines in use across all clients (streaming quotes and depth)."""
        return sum(len(x.tickers) + len(x.depth) for x in self.sessions)

    def scanner_count(self) -> int:
        return sum(len(x.scanners) for x in self.sessions)


class Session:
    """One connected API client: its subscriptions, order ids and outgoing messages."""

    def __init__(
        self, state: GatewayState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.state = state
        self.reader = reader
        self.writer = writer
        self.client_id: int | None = None
        self.client_version = 0
        # subscriptions, keyed by the client's reqId
        self.tickers: dict[int, int] = {}  # reqId -> conid (streaming market data)
        self.delayed: set[int] = set()  # reqIds of tickers served as delayed data (66-76)
        self.last_ticks: dict[int, dict[object, tuple[object, ...]]] = {}
        self.depth: dict[int, tuple[int, int, bool]] = {}  # reqId -> (conid, rows, smart)
        self.articles: dict[str, Any] = {}  # article id -> Headline sent to this client
        self.scanners: dict[int, dict[str, Any]] = {}
        self.pnl: dict[int, str] = {}
        self.pnl_single: dict[int, tuple[str, int]] = {}
        self.account_updates: str | None = None
        self.market_data_type = 1
        # order ids of this client -> exchange order ids, and what was already reported
        self.orders: dict[int, int] = {}
        self.seen_execs: set[str] = set()  # executions already accounted for (any client)
        self.exec_cursor: datetime | None = None  # time of the latest execution seen
        self.finished: set[int] = set()  # exchange ids of this client's orders that are done
        self.positions_subscribed = False
        self.reported_status: dict[int, tuple[str, float]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.closing = False  # set by a handler that must end the connection (error 326)
        self.arrival = time.monotonic()  # when the bytes being dispatched were received
        self.inbox: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._out: list[bytes] = []  # frames not yet handed to the transport

    # ---------------------------------------------------------------- sending
    def send(self, *fields: object) -> None:
        """Queue one message; the frames of one request (a snapshot is a dozen ticks) leave in
        one write when the request is done, or on the next turn of the event loop."""
        if self.closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self.flush)
        self._out.append(wire.frame(fields))

    def send_frame(self, frame: bytes) -> None:
        """Queue one message already framed (see :func:`wire.frame_text`)."""
        if self.closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self.flush)
        self._out.append(frame)

    def flush(self) -> None:
        """Hand the queued frames to the transport in one write."""
        if self._out:
            if not self.writer.is_closing():
                self.writer.write(b"".join(self._out))
            self._out.clear()

    async def drain(self) -> None:
        self.flush()
        await self.writer.drain()

    def error(self, req_id: int, code: int, message: str) -> None:
        """IB error message (id 4, version 2) with an empty advancedOrderRejectJson."""
        self.send(4, 2, req_id, code, message, "")

    def ib_error(self, req_id: int, exc: IBError) -> None:
        self.error(req_id, exc.code, exc.message)

    def drop_market_data(self) -> None:
        """Forget every streaming subscription (quotes and depth), as TWS does on 1101."""
        self.tickers.clear()
        self.last_ticks.clear()
        self.delayed.clear()
        self.depth.clear()

    async def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        for task in self.tasks:
            task.cancel()
        self.inbox.put_nowait((time.monotonic(), b""))  # wakes run() if it waits for input
        if self.client_id is not None:
            self.state.client_ids.discard(self.client_id)
            self.state.pacer.forget(self)
        self.state.sessions.discard(self)
        with contextlib.suppress(OSError):  # the client may already have hung up
            await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


__all__ = ["GatewayState", "Handler", "Session"]
