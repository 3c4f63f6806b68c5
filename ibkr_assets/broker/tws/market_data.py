"""The tws backend's market data: snapshot quotes, average volume, historical bars, market
depth, news headlines and scanners.

Snapshots, depth and historical requests go through semaphores below IB's limits (100
simultaneous market-data lines, error 101; 3 depth subscriptions, error 309; 50 simultaneous
historical requests), historical requests also through :class:`~.pacing.HistoryPacer`.

IB's behaviour followed here (``shared/ibkr-behaviour/tws.md``, by tag):

* the first quote of a connection goes alone: if IB refuses its market-data type for want of a
  subscription (10089, or 354 with delayed data off) the connection falls back to delayed data
  (:meth:`~.connection.Connection.fall_back`) and the request is sent again, before the other
  requests follow [MDTYPE] [DELAYED]; a quote records the type it was served with
  (``marketDataType`` callback: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen);
* a quote's time is IB's: the last-trade timestamp tick (45, delayed 88), else IB's current
  time, never the client's clock, so a quote is as old as IB says (15-20 minutes when delayed);
* average volume is IB's ``avVolume`` (generic tick 165 -> tick 21, allowed in delayed mode
  [DELAYED]), asked on a streaming request (IB does not serve generic ticks on snapshots), else
  the mean volume of the last complete daily sessions; ``avg_volume_source`` says which;
* while a session is open, daily bars end with the day so far (IB's count), stamped with the
  request's end rather than the session's close (:func:`~ibkr_assets.broker.models.bars_as_of`).
"""

from __future__ import annotations

import asyncio
import time as _time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import ib_async
from ib_async import ScannerSubscription

from ibkr_assets.broker.errors import (
    BrokerError,
    InvalidRequest,
    MarketDataUnavailable,
    NotConnected,
)
from ibkr_assets.broker.models import (
    MARKET_DATA_TYPE_NAMES,
    Contract,
    DepthLevel,
    NewsHeadline,
    OrderBook,
    Quote,
    ScanFilter,
    ScannerRow,
)
from ibkr_assets.broker.timeutil import session_close_utc
from ibkr_assets.broker.tws.connection import Connection
from ibkr_assets.broker.tws.contracts import from_ib_contract, to_ib_contract
from ibkr_assets.broker.tws.history import BarColumns, ColumnarHistory
from ibkr_assets.broker.tws.pacing import HistoryPacer, HistoryRequest
from ibkr_assets.broker.tws.wire import UNSET, num, positive
from ibkr_spec.errors import DELAYED_NOT_ENABLED, NEEDS_SUBSCRIPTION, NO_MARKET_DATA

T = TypeVar("T")

#: IB allows 3 simultaneous market-depth subscriptions (error 309).
_DEPTH_SUBSCRIPTIONS = 3
#: IB's refusals of a market-data type for want of a subscription [MDTYPE]
_REFUSED = frozenset({NEEDS_SUBSCRIPTION, NO_MARKET_DATA, DELAYED_NOT_ENABLED})
#: seconds to wait for IB's average volume (tick 21) on a streaming request
AVG_VOLUME_SECONDS = 4.0
#: complete daily sessions averaged when IB sends no average volume (about a trading month)
AVG_VOLUME_SESSIONS = 20


class MarketData:
    """Market-data requests, run on the connection's loop."""

    def __init__(self, conn: Connection) -> None:
        s = conn.settings
        self._conn = conn
        self._ib = conn.ib
        self._lines = asyncio.Semaphore(s.max_market_data_lines)
        self._depth_slots = asyncio.Semaphore(_DEPTH_SUBSCRIPTIONS)
        self._hist = asyncio.Semaphore(s.max_historical_requests)
        self._pacer = HistoryPacer()
        self._columns = ColumnarHistory(conn.ib)
        self._news_codes: str | None = None
        self._scan_codes: list[str] | None = None
        self._probe = asyncio.Lock()
        self._type_known = False  # IB served (or refused) a request at the current type

    # -- the market-data type ------------------------------------------------------------------
    async def _served(self, request: Callable[[], Awaitable[T]], symbol: str) -> T:
        """``request()`` at the connection's market-data type, falling back to delayed data once
        if IB refuses the type for want of a subscription. The first request of a connection
        goes alone, so a refusal is met once, not by every request in flight."""
        if not self._type_known:
            async with self._probe:
                if not self._type_known:  # else settled while this request waited
                    result = await self._with_fallback(request, symbol)
                    self._type_known = True
                    return result
        return await self._with_fallback(request, symbol)

    async def _with_fallback(self, request: Callable[[], Awaitable[T]], symbol: str) -> T:
        while True:
            asked = self._conn.data_type
            try:
                return await request()
            except ib_async.RequestError as exc:
                if exc.code not in _REFUSED:
                    raise
                if self._conn.fall_back(asked):
                    continue
                self._type_known = True
                raise MarketDataUnavailable(
                    f"no market data for {symbol}: IB refused {MARKET_DATA_TYPE_NAMES[asked]} data "
                    f"({exc.message.strip()}); subscribe to it in IB's Account Management, or "
                    "enable delayed data for the login",
                    code=exc.code,
                ) from None

    # -- quotes ----------------------------------------------------------------------------------
    async def quotes(self, contracts: list[Contract]) -> list[Quote]:
        fields = await asyncio.gather(*(self._quote_fields(c) for c in contracts))
        if any(f["time"] is None for f in fields):  # no timestamp tick: IB's clock, asked once
            now = await self._conn.now()
            fields = [f if f["time"] else {**f, "time": now} for f in fields]
        return [Quote(contract=c, **f) for c, f in zip(contracts, fields, strict=True)]

    async def _quote_fields(self, contract: Contract) -> dict[str, Any]:
        """One snapshot's fields as IB sent them (``time`` None without a timestamp tick)."""

        async def snapshot() -> ib_async.Ticker:
            async with self._lines:
                (t,) = await self._conn.wait(
                    self._ib.reqTickersAsync(to_ib_contract(contract)),
                    f"a quote for {contract.symbol}",
                )
            return t

        t = await self._served(snapshot, contract.symbol)
        stamp = t.lastTimestamp or t.delayedLastTimestamp
        fields = {
            "time": stamp.astimezone(UTC) if stamp else None,
            "bid": positive(t.bid),
            "ask": positive(t.ask),
            "last": positive(t.last),
            "bid_size": num(t.bidSize),
            "ask_size": num(t.askSize),
            "last_size": num(t.lastSize),
            "volume": num(t.volume),
            "open": positive(t.open),
            "high": positive(t.high),
            "low": positive(t.low),
            "close": positive(t.close),
            "market_data_type": t.marketDataType or self._conn.data_type,
        }
        if not any(fields[k] for k in ("bid", "ask", "last", "close")):
            raise MarketDataUnavailable(f"no quote at all for {contract.symbol}")
        return fields

    # -- average volume --------------------------------------------------------------------------
    async def avg_volume(
        self, contract: Contract
    ) -> tuple[float | None, Literal["ib", "daily_bars"] | None]:
        """(shares per day, source): IB's ``avVolume`` (generic tick 165 -> tick 21) on a
        streaming request, else the mean volume of the last complete daily sessions; (None,
        None) when neither is available."""
        volume = await self._ib_avg_volume(contract)
        if volume is not None:
            return volume, "ib"
        try:
            answer = await self.history(
                HistoryRequest(
                    contract, f"{AVG_VOLUME_SESSIONS + 1} D", "1 day", "TRADES", None, True, False
                )
            )
            bars = answer.bars()
        except (BrokerError, ib_async.RequestError):
            return None, None
        done = [b.volume for b in bars if b.session and b.time >= session_close_utc(b.session)]
        done = [v for v in done[-AVG_VOLUME_SESSIONS:] if v > 0]
        return (sum(done) / len(done), "daily_bars") if done else (None, None)

    async def _ib_avg_volume(self, contract: Contract) -> float | None:
        """IB's average daily volume (tick 21), or None if IB sends none in time or refuses."""

        async def stream() -> float | None:
            async with self._lines:
                s = self._conn.subscribe(to_ib_contract(contract), "165")
                try:
                    deadline = _time.monotonic() + AVG_VOLUME_SECONDS
                    while positive(s.ticker.avVolume) is None and _time.monotonic() < deadline:
                        if s.failed.done():
                            s.failed.result()  # IB ended the request: its error
                        await asyncio.sleep(0.02)
                    return positive(s.ticker.avVolume)
                finally:
                    self._conn.unsubscribe(s)

        try:
            return await self._served(stream, contract.symbol)
        except MarketDataUnavailable:
            return None

    async def history(self, r: HistoryRequest) -> BarColumns:
        """The bars ``r`` asks for, inside IB's historical pacing unless ``IBKR_PACING=false``."""
        if not self._conn.settings.pacing:
            return await self._fetch_history(r)
        return await self._pacer.paced(r, self._fetch_history)

    async def _fetch_history(self, r: HistoryRequest) -> BarColumns:
        timeout = self._conn.settings.timeout * 3
        async with self._hist:
            bars = await self._columns.request(
                to_ib_contract(r.contract),
                r.end,
                r.duration,
                r.bar_size,
                r.what_to_show,
                r.use_rth,
                timeout,
            )
        if bars is None:
            raise NotConnected(
                f"IB sent no {r.bar_size} bars for {r.contract.symbol} within {timeout:.0f} s"
            )
        bars = bars.traded(r.what_to_show)
        if bars.daily:
            bars = bars.as_of(await self._answered_at(r))
        return bars

    async def _answered_at(self, r: HistoryRequest) -> datetime:
        """The instant IB answered ``r`` as of: its end, unless that is later than IB's clock
        (or unset), then IB's current time (asked only when no earlier answer covers it)."""
        end = r.end.astimezone(UTC) if r.end else None
        known = self._conn.ib_time
        if end is not None and known is not None and end <= known:
            return end
        now = await self._conn.now()
        return min(end, now) if end else now

    async def depth(self, contract: Contract, rows: int) -> OrderBook:
        ib = self._ib
        async with self._depth_slots, self._lines:
            ticker = ib.reqMktDepth(to_ib_contract(contract), numRows=rows)
            try:
                deadline = _time.monotonic() + self._conn.settings.timeout
                while (len(ticker.domBids) < rows or len(ticker.domAsks) < rows) and (
                    _time.monotonic() < deadline
                ):
                    await asyncio.sleep(0.01)
                # cancelling clears the ticker's book: keep a copy
                bids, asks = list(ticker.domBids[:rows]), list(ticker.domAsks[:rows])
            finally:
                ib.cancelMktDepth(ticker.contract)
        if not bids or not asks:
            raise MarketDataUnavailable(f"no market depth for {contract.symbol}")
        return OrderBook(
            contract=contract,
            time=datetime.now(UTC),
            bids=[
                DepthLevel(
                    side="BID", position=i, price=d.price, size=d.size, market_maker=d.marketMaker
                )
                for i, d in enumerate(bids)
            ],
            asks=[
                DepthLevel(
                    side="ASK", position=i, price=d.price, size=d.size, market_maker=d.marketMaker
                )
                for i, d in enumerate(asks)
            ],
        )

    async def news(
        self, contract: Contract, start: datetime | None, end: datetime | None, limit: int
    ) -> list[NewsHeadline]:
        end = end or await self._conn.now()
        start = start or end - timedelta(days=1)
        if self._news_codes is None:
            providers = await self._conn.named_request(
                "newsProviders", self._ib.reqNewsProvidersAsync, "news providers"
            )
            self._news_codes = "+".join(p.code for p in providers)
        codes = self._news_codes
        ib, client = self._ib, self._ib.client
        # reqHistoricalNewsAsync in ib_async waits 4 s at most; a full page can take longer.
        req_id = client.getReqId()
        future = ib.wrapper.startReq(req_id)
        client.reqHistoricalNews(
            req_id,
            contract.conid,
            codes,
            ib_async.util.formatIBDatetime(start.astimezone(UTC)),
            ib_async.util.formatIBDatetime(end.astimezone(UTC)),
            limit,
            [],
        )
        items = await self._conn.wait(future, f"headlines of {contract.symbol}")
        heads = [
            NewsHeadline(
                time=h.time.astimezone(UTC) if h.time.tzinfo else h.time.replace(tzinfo=UTC),
                provider_code=h.providerCode,
                article_id=h.articleId,
                headline=h.headline,
                conid=contract.conid,
                symbol=contract.symbol,
            )
            for h in items or []
        ]
        return sorted(heads, key=lambda h: h.time, reverse=True)[:limit]

    async def scan(self, code: str, location: str, f: ScanFilter, limit: int) -> list[ScannerRow]:
        if code not in await self.scanner_codes():
            raise InvalidRequest(f"unknown scanner code {code!r}")
        sub = ScannerSubscription(
            instrument="STK",
            locationCode=location,
            scanCode=code,
            numberOfRows=limit,
            abovePrice=f.above_price if f.above_price is not None else UNSET,
            belowPrice=f.below_price if f.below_price is not None else UNSET,
            aboveVolume=int(f.above_volume) if f.above_volume is not None else 2**31 - 1,
            marketCapAbove=f.market_cap_above if f.market_cap_above is not None else UNSET,
            marketCapBelow=f.market_cap_below if f.market_cap_below is not None else UNSET,
        )
        rows = await self._conn.wait(self._ib.reqScannerDataAsync(sub), f"scanner {code}")
        contracts = [from_ib_contract(r.contractDetails.contract) for r in rows]
        # IB's scanner returns ranks and contracts only; a snapshot adds the numbers a trader reads.
        quotes = await self.quotes(contracts) if contracts else []
        return [
            ScannerRow(
                rank=r.rank,
                contract=c,
                last=q.last,
                change_pct=(q.last / q.close - 1.0) * 100.0 if q.last and q.close else None,
                volume=q.volume,
            )
            for r, c, q in zip(rows, contracts, quotes, strict=True)
        ]

    async def scanner_codes(self) -> list[str]:
        if self._scan_codes is None:
            xml = await self._conn.named_request(
                "scannerParams", self._ib.reqScannerParametersAsync, "scanner parameters"
            )
            self._scan_codes = scan_codes(xml)
        return list(self._scan_codes)


def scan_codes(xml: str) -> list[str]:
    """The scan codes listed in IB's scanner-parameters XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise BrokerError(f"IB sent unreadable scanner parameters: {exc}") from None
    return sorted({el.text.strip() for el in root.iter("scanCode") if el.text})
