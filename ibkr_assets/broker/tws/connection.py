"""The tws backend's connection: one ib_async client on its own event loop, connected with retry
and exponential backoff, reconnected (same clientId) by the first call after a drop, with
ib_async's message throttle set to ``max_msg_rate`` messages per second (IB allows 50, error 100)
unless ``IBKR_PACING=false``. That throttle is a sliding window (at most N messages in any
second) over every message ib_async sends, cancels and the handshake included, counted in its
synchronous ``sendMsg``. An ``aiolimiter`` leaky bucket could only be acquired around the requests
we await, so it would miss the messages ib_async sends on its own; and from idle it lets a burst
of N and then N per second through, up to 2N in one second (89 of AsyncLimiter(45, 1), measured).

Every other part of the backend runs as ``async def`` on this loop through :meth:`Connection.call`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import ib_async
from ib_async import IB
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ibkr_assets.broker.errors import NotConnected, error_from_ib
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_spec.errors import COULD_NOT_CONNECT, is_pacing

T = TypeVar("T")
log = logging.getLogger(__name__)


class _FailedAttemptFilter(logging.Filter):
    """ib_async logs every failed connection attempt at ERROR ("API connection failed: ...",
    "Make sure API port on TWS/IBG is open"); the backend reports all its attempts once, in the
    NotConnected it raises, so these lines would only repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("API connection failed", "Make sure API port"))


logging.getLogger("ib_async.client").addFilter(_FailedAttemptFilter())


class _Loop:
    """An asyncio loop in a daemon thread; ``run`` submits a coroutine and waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="ib_async-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise NotConnected(f"IB did not answer within {timeout:.0f} s") from None

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


class Connection:
    """ib_async's client (``ib``) on the backend's own loop, connected to the TWS / IB Gateway
    the settings name. ``pacing_violations`` keeps every pacing error IB sent (code, message)."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self._closed = False
        self._loop = _Loop()
        self.ib: IB = self._loop.run(self._make_ib(), timeout=10)
        try:
            self._loop.run(self._connect(), timeout=self._connect_budget())
        except BaseException:
            self._loop.stop()
            raise

    async def _make_ib(self) -> IB:
        """ib_async's client and the connection's asyncio primitives, created on its loop."""
        s = self.settings
        ib = IB()
        ib.RaiseRequestErrors = True
        ib.errorEvent += self._on_error
        ib.client.MaxRequests = s.max_msg_rate if s.pacing else 0
        ib.client.RequestsInterval = 1
        self._reconnect = asyncio.Lock()
        # requests ib_async files under a fixed name: one in flight per name
        self._named: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.pacing_violations: list[tuple[int, str]] = []
        return ib

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        """Keep every pacing error IB sent this connection (the backend should cause none)."""
        if is_pacing(code, message):
            log.warning("IB pacing error %d (reqId %d): %s", code, req_id, message)
            self.pacing_violations.append((code, message))

    def _connect_budget(self) -> float:
        """Seconds all connection attempts and their backoff may take."""
        s = self.settings
        return s.connect_attempts * (s.timeout + 8.0) + 5.0

    async def _connect(self) -> None:
        s = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.connect_attempts),
            wait=wait_exponential(multiplier=0.5, max=8),
            retry=retry_if_exception_type((ConnectionError, OSError, TimeoutError)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self.ib.connectAsync(
                        s.host,
                        s.port,
                        clientId=s.client_id,
                        timeout=s.timeout,
                        readonly=s.readonly,
                        account=s.account or "",
                    )
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise NotConnected(
                f"cannot reach TWS / IB Gateway at {s.host}:{s.port} (clientId {s.client_id}) "
                f"after {s.connect_attempts} attempts: {exc or type(exc).__name__}",
                code=COULD_NOT_CONNECT,
            ) from None
        self.ib.reqMarketDataType(1)

    async def _ensure(self) -> None:
        """Reconnect (once, whoever asks first) if the connection dropped."""
        if self.ib.isConnected():
            return
        async with self._reconnect:
            if not self.ib.isConnected():
                self.ib.disconnect()
                await self._connect()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run one of the backend's ``async def`` methods on the loop and wait for it (seconds:
        ``timeout``, default 3x the settings' timeout, plus the connection budget when the
        connection must first be restored).

        ``coro`` must come from an ``async def``: its body, and so every ib_async call it makes,
        then runs on the loop thread, never on the caller's.
        """
        if self._closed:
            coro.close()
            raise NotConnected("the tws broker was closed")
        budget = (timeout or self.settings.timeout * 3) + (
            0.0 if self.ib.isConnected() else self._connect_budget()
        )
        return self._loop.run(self._guarded(coro), budget)

    async def _guarded(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            await self._ensure()
            return await coro
        except ib_async.RequestError as exc:
            raise error_from_ib(exc.code, exc.message) from None
        except ConnectionError as exc:
            raise NotConnected(f"connection to IB lost: {exc}") from None
        finally:
            coro.close()  # never awaited when the connection could not be restored

    async def wait(self, awaitable: Awaitable[T], what: str) -> T:
        """``awaitable``'s result, or NotConnected naming ``what`` after the settings' timeout."""
        try:
            return await asyncio.wait_for(awaitable, self.settings.timeout)
        except TimeoutError:
            raise NotConnected(
                f"IB did not answer {what} within {self.settings.timeout:.0f} s"
            ) from None

    def named_lock(self, name: str) -> asyncio.Lock:
        """The lock of requests ib_async keys by ``name`` (not by reqId): a second one in flight
        would orphan the first."""
        return self._named[name]

    async def named_request(self, name: str, send: Callable[[], Awaitable[T]], what: str) -> T:
        """A request ib_async keys by ``name`` (not by reqId): one in flight at a time."""
        async with self._named[name]:
            return await self.wait(send(), what)

    async def now(self) -> datetime:
        """IB's current time (UTC)."""
        t = await self.named_request("currentTime", self.ib.reqCurrentTimeAsync, "the current time")
        return t.astimezone(UTC)

    def close(self) -> None:
        """Disconnect and stop the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._disconnect(), timeout=5)
        finally:
            self._loop.stop()

    async def _disconnect(self) -> None:
        self.ib.disconnect()
