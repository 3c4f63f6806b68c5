"""The tws backend's connection: one ib_async client on its own event loop, connected with retry
and exponential backoff, reconnected (same clientId) by the first call after a drop, paced by a
token bucket at IB's own message rate, and told what IB says on the side (farm notices,
connectivity loss and restore, entitlement refusals).

Every other part of the backend runs as ``async def`` on this loop through :meth:`Connection.call`.
IB's behaviour followed here is cited from ``shared/ibkr-behaviour/tws.md`` by its tags:

* **Message pacing** ("TWS API's inherent limitation of 50 messages per second" [ORDLIM]; error
  100 beyond it): :class:`MessageBucket` is a token bucket of ``msg_burst`` tokens refilled at
  ``max_msg_rate`` per second, installed at ``Client.sendMsg``, the one point every message
  ib_async sends passes (requests, cancels, the ones ib_async sends on its own), in place of
  ib_async's sliding window (``MaxRequests`` per ``RequestsInterval``). IB counts the same way (a
  burst, then a steady rate), so the client can run at IB's rate; the burst is kept a little
  under IB's 50 so that messages delayed and then bunched on the way (network jitter, a busy
  gateway) still arrive within IB's bucket.
* **Market-data type** ([MDTYPE], [DELAYED]): the connection asks for ``IBKR_MARKET_DATA_TYPE``
  (``reqMarketDataType``) on every (re)connect; when IB refuses live or frozen data for want of
  a subscription (10089, 354) :meth:`Connection.fall_back` asks for the delayed counterpart
  (live -> delayed 3, frozen -> delayed-frozen 4), which IB serves as delayed ticks 66-76 for the
  contracts without a subscription and still live for those with one.
* **Notices** [MSGCODES]: the farm messages 2103-2158 are information (logged, never an error);
  1100 (connectivity lost) is logged; on 1101 ("restored - data lost") every streaming
  subscription of :meth:`Connection.subscribe` is requested again; 1102 keeps them.
* **Reconnecting**: a dropped socket (a gateway restart, IB's nightly reset) is reconnected by
  the next call, with exponential backoff, for at most ``IBKR_RECONNECT_SECONDS``; a gateway
  that stays down that long fails that call, and every later call makes one attempt only
  (NotConnected at once while the port is closed), so a run fails in bounded time instead of
  retrying each request. A client id in use (326) is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import ib_async
from ib_async import IB
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from ibkr_assets.broker.errors import DuplicateClientId, NotConnected, error_from_ib
from ibkr_assets.broker.models import MARKET_DATA_TYPE_NAMES
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_spec.errors import (
    CONNECTIVITY_LOST,
    COULD_NOT_CONNECT,
    DATA_LOST,
    DUPLICATE_CLIENT_ID,
    is_pacing,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

#: IB's market-data types by the names of ``IBKR_MARKET_DATA_TYPE`` [MDTYPE]
MARKET_DATA_TYPES = {name: number for number, name in MARKET_DATA_TYPE_NAMES.items()}
#: a refused live / frozen type -> its delayed counterpart [MDTYPE]
_DELAYED = {1: 3, 2: 4}
#: farm notices, information only [MSGCODES]: 2103 / 2105 / 2157 broken, 2104 / 2106 / 2158 OK
FARM_NOTICES = frozenset({2103, 2104, 2105, 2106, 2157, 2158})
#: errors on a streaming request that do not end it: the farm and other 21xx notices (ib_async's
#: warnings) and 10167 "displaying delayed market data" [IBA wrapper.py error()]
_STREAM_WARNINGS = frozenset({10167, *range(2100, 2200)})
_ConnectErrors = (ConnectionError, OSError, TimeoutError)


class _FailedAttemptFilter(logging.Filter):
    """ib_async logs every failed connection attempt at ERROR ("API connection failed: ...",
    "Make sure API port on TWS/IBG is open"); the backend reports all its attempts once, in the
    NotConnected it raises, so these lines would only repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("API connection failed", "Make sure API port"))


class _HandledErrorFilter(logging.Filter):
    """ib_async logs every IB error at ERROR; those the backend handles itself (a refused
    market-data type it falls back from, the connectivity messages it logs in its own words)
    are kept at INFO, so a run's log shows errors only where something failed."""

    HANDLED = tuple(f"Error {code}," for code in (10089, 354, 1100, 1101, 1102))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(self.HANDLED):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("ib_async.client").addFilter(_FailedAttemptFilter())
logging.getLogger("ib_async.wrapper").addFilter(_HandledErrorFilter())


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


class MessageBucket:
    """IB's message pacing for one ib_async client: a token bucket of ``burst`` messages refilled
    at ``rate`` per second, at ``Client.sendMsg`` (see the module docstring). Messages wait in
    order; ``sent`` counts the messages written to the socket. ``rate`` 0 sends at once."""

    def __init__(self, client: ib_async.Client, rate: float, burst: int) -> None:
        self._client = client
        self.rate = float(rate)
        self.burst = float(max(1, burst))
        self._tokens = self.burst
        self._stamp: float | None = None
        self._queue: deque[str] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.sent = 0
        client.MaxRequests = 0  # ib_async's own sliding window off: this bucket replaces it
        client.sendMsg = self.send  # type: ignore[method-assign]  # every message passes here

    def send(self, msg: str | None) -> None:
        """Queue ``msg`` (ib_async's serialized message) and send what the bucket allows."""
        if msg:
            self._queue.append(msg)
        self._drain()

    def clear(self) -> None:
        """Forget what waits: messages of a connection that dropped must not reach the next."""
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.rate > 0:
            elapsed = 0.0 if self._stamp is None else now - self._stamp
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now
        conn = self._client.conn
        while self._queue and (self.rate <= 0 or self._tokens >= 1.0):
            payload = self._queue.popleft().encode()
            conn.sendMsg(struct.pack(">I", len(payload)) + payload)  # IB's length-prefixed frame
            self._tokens -= 1.0
            self.sent += 1
        if self._queue and self._timer is None:
            wait = (1.0 - self._tokens) / self.rate
            self._timer = loop.call_at(now + wait, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._drain()


@dataclass
class Stream:
    """A streaming market-data subscription (``reqMktData``, not a snapshot): ``ticker`` fills
    as IB's ticks come; ``failed`` is set with IB's error if IB ends the request."""

    req_id: int
    contract: ib_async.Contract
    generic_ticks: str
    ticker: ib_async.Ticker
    failed: asyncio.Future[None] = field(repr=False)


class Connection:
    """ib_async's client (``ib``) on the backend's own loop, connected to the TWS / IB Gateway
    the settings name. ``pacing_violations`` keeps every pacing error IB sent (code, message);
    ``data_type`` is the market-data type in effect (1 live ... 4 delayed-frozen)."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self._closed = False
        self.data_type = MARKET_DATA_TYPES[settings.market_data_type]
        self._loop = _Loop()
        self.ib: IB = self._loop.run(self._make_ib(), timeout=10)
        try:
            first = stop_after_attempt(settings.connect_attempts)
            self._loop.run(self._connect(first), timeout=self._connect_budget())
        except BaseException:
            self._loop.stop()
            raise

    async def _make_ib(self) -> IB:
        """ib_async's client and the connection's asyncio primitives, created on its loop."""
        s = self.settings
        ib = IB()
        ib.RaiseRequestErrors = True
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        ib.client.RequestsInterval = 1
        self.bucket = MessageBucket(ib.client, s.max_msg_rate if s.pacing else 0, s.msg_burst)
        self._reconnect = asyncio.Lock()
        # requests ib_async files under a fixed name: one in flight per name
        self._named: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.pacing_violations: list[tuple[int, str]] = []
        self.streams: dict[int, Stream] = {}
        self._refused: tuple[int, str] | None = None  # 326 while connecting
        self._refusal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._down_since: float | None = None  # monotonic, while reconnecting
        self.ib_time: datetime | None = None  # the latest time IB told us
        return ib

    # -- what IB says on the side ----------------------------------------------------------
    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        """IB's errors and notices beyond a request's own answer (see the module docstring)."""
        if is_pacing(code, message):
            log.warning("IB pacing error %d (reqId %d): %s", code, req_id, message)
            self.pacing_violations.append((code, message))
        if code in FARM_NOTICES:
            log.info("IB notice %d: %s", code, message)
        elif code == CONNECTIVITY_LOST:
            log.warning("IB %d: %s; waiting for IB to restore it", code, message)
        elif code == DATA_LOST:
            self._resubscribe(message)
        elif code == DUPLICATE_CLIENT_ID:
            self._refused = (code, message)
            if not self._refusal.done():
                self._refusal.set_result(None)
        stream = self.streams.get(req_id)
        if stream is not None and code not in _STREAM_WARNINGS and not stream.failed.done():
            stream.failed.set_exception(ib_async.RequestError(req_id, code, message))

    def _resubscribe(self, message: str) -> None:
        """1101: IB dropped every market-data subscription; request each stream again (same
        reqId, so its ticks keep filling the same ticker) [MSGCODES]."""
        log.warning(
            "IB %d: %s; requesting %d subscriptions again", DATA_LOST, message, len(self.streams)
        )
        for s in self.streams.values():
            self.ib.client.reqMktData(s.req_id, s.contract, s.generic_ticks, False, False, [])

    def _on_disconnected(self) -> None:
        """The socket closed: nothing queued may reach the next connection, and every stream
        waiting for ticks learns it."""
        self.bucket.clear()
        for s in self.streams.values():
            if not s.failed.done():
                s.failed.set_exception(ConnectionError("the connection to IB closed"))

    # -- connecting ----------------------------------------------------------------------------
    def _connect_budget(self) -> float:
        """Seconds all first connection attempts and their backoff may take."""
        s = self.settings
        return s.connect_attempts * (s.timeout + 8.0) + 5.0

    async def _connect(self, stop: Any = None) -> None:
        """Connect, retrying with exponential backoff (``stop``: tenacity's stop condition;
        None: one attempt); 326 is never retried."""
        s = self.settings
        retrying = AsyncRetrying(
            stop=stop or stop_after_attempt(1),
            wait=wait_exponential_jitter(initial=0.5, max=8, jitter=0.5),
            retry=retry_if_exception_type(_ConnectErrors),
            reraise=True,
        )
        self._refused = None
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        await self._connect_once()
                    except _ConnectErrors:
                        if self._refused is not None:
                            break  # IB said why: retrying cannot help
                        raise
        except _ConnectErrors as exc:
            raise NotConnected(
                f"cannot reach TWS / IB Gateway at {s.host}:{s.port} (clientId {s.client_id}): "
                f"{exc or type(exc).__name__}",
                code=COULD_NOT_CONNECT,
            ) from None
        if self._refused is not None:
            code, message = self._refused
            raise DuplicateClientId(
                f"{message} (clientId {s.client_id} at {s.host}:{s.port}): another API client "
                "holds it; set IBKR_CLIENT_ID to a free one",
                code=code,
            )

    async def _connect_once(self) -> None:
        """One connection attempt; it ends as soon as IB refuses the client id (326), which
        ib_async would otherwise wait out until its timeout."""
        s = self.settings
        self.ib.disconnect()
        self._refusal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        connect = asyncio.ensure_future(
            self.ib.connectAsync(
                s.host,
                s.port,
                clientId=s.client_id,
                timeout=s.timeout,
                readonly=s.readonly,
                account=s.account or "",
            )
        )
        await asyncio.wait({connect, self._refusal}, return_when=asyncio.FIRST_COMPLETED)
        if self._refusal.done():
            connect.cancel()
            self.ib.disconnect()
            raise ConnectionError("IB refused the connection")
        self._refusal.cancel()
        await connect
        if not self.ib.isConnected():
            raise ConnectionError("the connection closed during the handshake")
        self.ib.reqMarketDataType(self.data_type)

    async def _ensure(self) -> None:
        """Reconnect (once, whoever asks first) if the connection dropped: with backoff for at
        most ``reconnect_seconds`` since the drop was noticed; once that budget is spent, one
        attempt per call (a gateway that is back is used again; one that is still down fails
        the call at once)."""
        if self.ib.isConnected():
            return
        async with self._reconnect:
            if self.ib.isConnected():
                return
            s = self.settings
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "connection to IB lost; reconnecting for up to %.0f s", s.reconnect_seconds
                )
            left = s.reconnect_seconds - (time.monotonic() - self._down_since)
            try:
                await self._connect(stop=stop_after_delay(left) if left > 0 else None)
            except DuplicateClientId:
                raise
            except NotConnected as exc:
                raise NotConnected(
                    f"IB unreachable for {time.monotonic() - self._down_since:.0f} s, longer "
                    f"than IBKR_RECONNECT_SECONDS ({s.reconnect_seconds:g} s): {exc.message}",
                    code=COULD_NOT_CONNECT,
                ) from None
            log.info("reconnected to IB after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None

    # -- running requests ----------------------------------------------------------------------
    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run one of the backend's ``async def`` methods on the loop and wait for it (seconds:
        ``timeout``, default 3x the settings' timeout, plus the reconnect budget when the
        connection must first be restored). Sent once: for orders, whose fate is unknown when
        the connection drops while they are in flight.

        ``coro`` must come from an ``async def``: its body, and so every ib_async call it makes,
        then runs on the loop thread, never on the caller's.
        """
        return self._run(lambda: coro, 0, timeout)

    def read(
        self, request: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None
    ) -> T:
        """As :meth:`call`, for a request that only reads (``request()`` makes its coroutine):
        if the connection drops while it is in flight, it is sent once more after reconnecting."""
        return self._run(request, 1, timeout)

    def _run(
        self, make: Callable[[], Coroutine[Any, Any, T]], retries: int, timeout: float | None
    ) -> T:
        if self._closed:
            make().close()
            raise NotConnected("the tws broker was closed")
        s = self.settings
        budget = (timeout or s.timeout * 3) * (retries + 1) + (
            0.0 if self.ib.isConnected() and not retries else s.reconnect_seconds + s.timeout
        )
        return self._loop.run(self._guarded(make, retries), budget)

    async def _guarded(self, make: Callable[[], Coroutine[Any, Any, T]], retries: int) -> T:
        for attempt in range(retries + 1):
            coro = make()
            try:
                await self._ensure()
                return await coro
            except ib_async.RequestError as exc:
                raise error_from_ib(exc.code, exc.message) from None
            except ConnectionError as exc:
                if attempt == retries:
                    raise NotConnected(f"connection to IB lost: {exc}") from None
                log.info("connection to IB lost during a read (%s); reading again", exc)
            finally:
                coro.close()  # never awaited when the connection could not be restored
        raise AssertionError("unreachable: the last attempt returns or raises")

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
        """IB's current time (UTC); also kept as ``ib_time``, the latest time IB told us."""
        t = await self.named_request("currentTime", self.ib.reqCurrentTimeAsync, "the current time")
        t = t.astimezone(UTC)
        self.ib_time = max(t, self.ib_time) if self.ib_time else t
        return t

    # -- market-data type and streaming ----------------------------------------------------------
    def fall_back(self, asked: int) -> bool:
        """IB refused data of type ``asked`` for want of a subscription: switch the connection to
        its delayed counterpart [MDTYPE]. True when a request should be sent again (switched now,
        or already switched by another request); False when there is nothing to fall back to."""
        if self.data_type != asked:
            return True
        delayed = _DELAYED.get(asked)
        if delayed is None:
            return False
        log.info(
            "IB has no subscription for market-data type %d here; asking for type %d (delayed)",
            asked,
            delayed,
        )
        self.data_type = delayed
        self.ib.reqMarketDataType(delayed)
        return True

    def subscribe(self, contract: ib_async.Contract, generic_ticks: str = "") -> Stream:
        """Start a streaming subscription (requested again after a 1101); end it with
        :meth:`unsubscribe`."""
        req_id = self.ib.client.getReqId()
        ticker = self.ib.wrapper.startTicker(req_id, contract, "mktData")
        stream = Stream(req_id, contract, generic_ticks, ticker, asyncio.Future())
        self.streams[req_id] = stream
        self.ib.client.reqMktData(req_id, contract, generic_ticks, False, False, [])
        return stream

    def unsubscribe(self, stream: Stream) -> None:
        """End ``stream`` (cancelMktData, unless IB already ended it or the socket closed)."""
        self.streams.pop(stream.req_id, None)
        self.ib.wrapper.endTicker(stream.ticker, "mktData")
        if not stream.failed.done():
            stream.failed.cancel()
            if self.ib.isConnected():
                self.ib.client.cancelMktData(stream.req_id)

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
