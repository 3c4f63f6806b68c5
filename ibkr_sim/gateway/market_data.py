"""Market data requests: quotes (snapshot and streaming), depth, historical bars, scanners, news.

Quotes come from :meth:`SimMarket.snapshot` at the gateway clock (15 minutes earlier and with
IB's delayed tick types 66-76 after ``reqMarketDataType(3)`` or ``(4)``); which type a request
is served with, or IB's entitlement error, is :mod:`ibkr_sim.gateway.entitlements`'s. A
snapshot is sent as ``tickReqParams``, one ``tickPrice`` per price (bid/ask/last carry their
sizes, as TWS sends them), ``tickSize`` volume, ``tickString`` last timestamp and
``tickSnapshotEnd``; a streaming request sends the same ticks (and tick 21 avVolume when it
asks for generic tick 165) and then the changes once per second until ``cancelMktData``.

Historical bars follow IB's request grammar (:mod:`ibkr_spec.historical`): the duration reaches back
from ``endDateTime`` (empty = now); bars of a day or longer count trading sessions, with the day
so far as the last bar while a session is open (:func:`ibkr_spec.historical.session_window`);
intraday bars reach back in calendar time and only bars complete at the end time are returned,
``formatDate=1`` writes ``YYYYMMDD`` / ``YYYYMMDD HH:MM:SS US/Eastern`` and ``formatDate=2``
epoch seconds for intraday bars. ``MIDPOINT``, ``BID`` and ``ASK`` shift the trade bars by the
quoted half spread; FX has no ``TRADES`` (error 162, as at IB). Volume is in shares. A symbol
the realism profile gives a history gap is answered with 162 "HMDS query returned no data"
(tws.md, "Historical data").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import chain
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ibkr_sim.gateway import wire
from ibkr_sim.gateway.accounts import push_pnl
from ibkr_sim.gateway.contracts import read_contract, resolve, scanner_contract_fields
from ibkr_sim.gateway.entitlements import served_type
from ibkr_sim.gateway.wire import Reader
from ibkr_sim.market.scanner import FILTERS as SCAN_FILTERS
from ibkr_spec import historical
from ibkr_spec.errors import HISTORICAL_DATA_ERROR, INVALID_REQUEST, IBError

if TYPE_CHECKING:
    from ibkr_sim.gateway.session import Session
    from ibkr_sim.universe import Instrument

NEW_YORK = ZoneInfo("America/New_York")
DELAY = timedelta(minutes=15)
HISTORY_START = date(2019, 1, 2)
MAX_INTRADAY_DAYS = 366
WHAT_TO_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK")

# tick types: live -> delayed
BID, ASK, LAST, HIGH, LOW, CLOSE, OPEN = 1, 2, 4, 6, 7, 9, 14
BID_SIZE, ASK_SIZE, LAST_SIZE, VOLUME = 0, 3, 5, 8
LAST_TIMESTAMP = 45
MISC_STATS, AV_VOLUME = "165", 21  # generic tick 165 -> tick 21 avVolume (tws.md, tick types)
DELAYED = {
    BID: 66,
    ASK: 67,
    LAST: 68,
    BID_SIZE: 69,
    ASK_SIZE: 70,
    LAST_SIZE: 71,
    HIGH: 72,
    LOW: 73,
    VOLUME: 74,
    CLOSE: 75,
    OPEN: 76,
    LAST_TIMESTAMP: 88,
}


def _quote_time(s: Session, delayed: bool | None = None) -> datetime:
    """The instant quotes are taken at: now, or 15 minutes ago for delayed data (``delayed``
    None: as the session's market-data type says)."""
    now = s.state.now()
    if delayed is None:
        delayed = s.market_data_type in (3, 4)
    return now - DELAY if delayed else now


def quote_ticks(
    s: Session, inst: Instrument, at: datetime, delayed: bool
) -> list[tuple[object, ...]]:
    """The tick messages describing one snapshot (delayed: tick types 66-76, 88), without the
    request id filled in."""
    snap = s.state.market.snapshot(inst.conid, at)
    t = lambda k: DELAYED[k] if delayed else k  # noqa: E731
    msgs: list[tuple[object, ...]] = [
        (1, 6, t(BID), float(snap.bid), float(snap.bid_size), 0),
        (1, 6, t(ASK), float(snap.ask), float(snap.ask_size), 0),
        (1, 6, t(LAST), float(snap.last), float(snap.last_size), 0),
        (1, 6, t(HIGH), float(snap.high), 0.0, 0),
        (1, 6, t(LOW), float(snap.low), 0.0, 0),
        (1, 6, t(CLOSE), float(snap.prev_close), 0.0, 0),
        (1, 6, t(OPEN), float(snap.open), 0.0, 0),
        (2, 6, t(VOLUME), float(snap.volume)),
        (46, 6, t(LAST_TIMESTAMP), str(int(snap.time.timestamp()))),
    ]
    return msgs


def _send_ticks(s: Session, req_id: int, msgs: list[tuple[object, ...]]) -> None:
    for m in msgs:
        s.send(m[0], m[1], req_id, *m[2:])


def req_mkt_data(s: Session, r: Reader) -> None:
    r.int()  # version
    req_id = r.int()
    req = read_contract(r)
    if req.sec_type == "BAG":
        s.error(req_id, INVALID_REQUEST, "Combo (BAG) market data is not supported")
        return
    if r.bool():  # deltaNeutralContract
        r.int(), r.float(), r.float()
    generic_ticks = {t.strip() for t in r.str().split(",")}
    snapshot = r.bool()
    regulatory = r.bool()
    r.str()  # mktDataOptions
    inst = resolve(s.state.market, req)
    served = served_type(s, req_id, inst)
    if served is None:
        return
    if not snapshot and not s.state.pacer.allow_market_data_line(s, req_id, s.state.lines()):
        return
    if served != 1 or s.state.profile.live_data is not None:
        s.send(58, 1, req_id, served)
    s.send(81, req_id, inst.min_tick, "SMART" if inst.sec_type == "STK" else inst.exchange, 3)
    delayed = served in (3, 4)
    msgs = quote_ticks(s, inst, _quote_time(s, delayed), delayed)
    _send_ticks(s, req_id, msgs)
    if MISC_STATS in generic_ticks and not snapshot and inst.adv:
        # generic tick 165 ("Misc. Stats", allowed in delayed mode [DELAYED]): of its ticks only
        # 21 avVolume, the average daily volume in shares, is served; generic ticks come on
        # streaming requests only (IB refuses them on snapshots; memory, UNCERTAIN)
        s.send(2, 6, req_id, AV_VOLUME, float(inst.adv))
    if snapshot or regulatory:
        s.send(57, 1, req_id)
    else:
        s.tickers[req_id] = inst.conid
        s.last_ticks[req_id] = {m[2]: m for m in msgs}
        if delayed:
            s.delayed.add(req_id)


def cancel_mkt_data(s: Session, r: Reader) -> None:
    r.int()
    req_id = r.int()
    s.tickers.pop(req_id, None)
    s.last_ticks.pop(req_id, None)
    s.delayed.discard(req_id)


def req_market_data_type(s: Session, r: Reader) -> None:
    r.int()
    kind = r.int()
    if kind not in (1, 2, 3, 4):
        s.error(-1, INVALID_REQUEST, f"Invalid market data type {kind}: expected 1, 2, 3 or 4")
        return
    s.market_data_type = kind


# ------------------------------------------------------------------ depth
def _send_depth(s: Session, req_id: int, conid: int, rows: int, smart: bool, op: int) -> None:
    bids, asks = s.state.market.depth(conid, _quote_time(s), rows=rows)
    for side, levels in ((1, bids), (0, asks)):
        for pos, (price, size, maker) in enumerate(levels):
            if smart:
                s.send(13, 1, req_id, pos, maker, op, side, float(price), float(size), True)
            else:
                s.send(12, 1, req_id, pos, op, side, float(price), float(size))


def req_mkt_depth(s: Session, r: Reader) -> None:
    r.int()
    req_id = r.int()
    req = read_contract(r)
    rows = r.int(5)
    smart = r.bool()
    r.str()
    inst = resolve(s.state.market, req)
    rows = max(1, min(rows, 10))
    if not s.state.pacer.allow_market_data_line(s, req_id, s.state.lines()):
        return
    if not s.state.pacer.allow_depth(s, req_id, sum(len(x.depth) for x in s.state.sessions)):
        return
    _send_depth(s, req_id, inst.conid, rows, smart, 0)
    s.depth[req_id] = (inst.conid, rows, smart)


def cancel_mkt_depth(s: Session, r: Reader) -> None:
    r.int()
    s.depth.pop(r.int(), None)


def push_stream_updates(s: Session) -> None:
    """Once per second: changed ticks of streaming quotes, depth refreshes, PnL updates."""
    for req_id, conid in list(s.tickers.items()):
        inst = s.state.market.universe.by_conid(conid)
        before = s.last_ticks.get(req_id, {})
        delayed = req_id in s.delayed
        at = _quote_time(s, delayed)
        now = {m[2]: m for m in quote_ticks(s, inst, at, delayed)}
        changed = [m for k, m in now.items() if before.get(k) != m]
        _send_ticks(s, req_id, changed)
        s.last_ticks[req_id] = now
    for req_id, (conid, rows, smart) in list(s.depth.items()):
        _send_depth(s, req_id, conid, rows, smart, 1)
    push_pnl(s)


# ------------------------------------------------------------------ historical bars
def parse_end(text: str, now: datetime) -> datetime:
    """IB's endDateTime: empty, ``YYYYMMDD HH:MM:SS [tz]`` or ``YYYYMMDD-HH:MM:SS`` (UTC)."""
    text = text.strip()
    if not text:
        return now
    try:
        if "-" in text and " " not in text:
            return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        parts = text.split()
        if len(parts) == 1:
            return datetime.strptime(parts[0], "%Y%m%d").replace(hour=23, minute=59, tzinfo=UTC)
        stamp = datetime.strptime(parts[0] + parts[1], "%Y%m%d%H:%M:%S")
        zone = ZoneInfo(parts[2]) if len(parts) > 2 else NEW_YORK
        return stamp.replace(tzinfo=zone).astimezone(UTC)
    except (ValueError, KeyError) as exc:
        raise IBError(
            INVALID_REQUEST, f"Invalid endDateTime {text!r}: expected 'YYYYMMDD HH:MM:SS [zone]'"
        ) from exc


def history_bars(
    s: Session, inst: Instrument, end: datetime, duration: str, bar_text: str, what: str
) -> tuple[datetime, pd.DataFrame, historical.BarSize]:
    """(start, bars, bar size): :func:`history_arrays` as a frame of open, high, low, close,
    volume indexed by ``time`` (UTC)."""
    start, times, ohlcv, bar = history_arrays(s, inst, end, duration, bar_text, what)
    index = pd.DatetimeIndex(times.view("datetime64[ns]"), name="time").tz_localize("UTC")
    columns = ("open", "high", "low", "close", "volume")
    return start, pd.DataFrame(dict(zip(columns, ohlcv, strict=True)), index=index), bar


def history_arrays(
    s: Session, inst: Instrument, end: datetime, duration: str, bar_text: str, what: str
) -> tuple[datetime, np.ndarray, np.ndarray, historical.BarSize]:
    """(start, bar times, bars, bar size): the market's bars within ``duration`` before
    ``end`` (see the module docstring for how bars of a day or longer are counted) as sent:
    times in UTC ns (bars,) int64 (daily bars: their session's close; intraday: their start),
    open/high/low/close (USD) and volume (shares; -1 unless TRADES) as (5, bars) float64.
    162 "HMDS query returned no data" if there is none."""
    span = historical.parse_duration(duration)
    bar = historical.parse_bar_size(bar_text)
    if what not in WHAT_TO_SHOW:
        raise IBError(
            HISTORICAL_DATA_ERROR,
            f"Historical Market Data Service error message:whatToShow {what!r} is not one of "
            f"{', '.join(WHAT_TO_SHOW)}",
        )
    if what == "TRADES" and inst.sec_type == "CASH":
        raise IBError(
            HISTORICAL_DATA_ERROR,
            f"Historical Market Data Service error message:No historical market data for "
            f"{inst.local_symbol}/CASH@IDEALPRO TRADES (use MIDPOINT, BID or ASK)",
        )
    if s.state.profile.history_gap(inst.symbol, inst.sec_type):
        raise IBError(
            HISTORICAL_DATA_ERROR,
            "Historical Market Data Service error message:HMDS query returned no data: "
            f"{inst.symbol}@{inst.primary_exchange or inst.exchange} {what.title()}",
        )
    try:
        if bar.is_daily:  # trading sessions, today's bar so far included (IB's count)
            first, times, ohlcv = s.state.market.session_history_arrays(
                inst.conid, end, span, bar, what
            )
            start = end if first is None else first
        else:
            start = historical.start_of(end, span)
            if (end - start).days > MAX_INTRADAY_DAYS:
                raise IBError(
                    HISTORICAL_DATA_ERROR,
                    f"{bar.text} bars for {duration} exceed {MAX_INTRADAY_DAYS} days; ask for a "
                    "shorter duration",
                )
            frame = s.state.market.history(inst.conid, start, end, bar, what)
            times = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
            ohlcv = frame[["open", "high", "low", "close", "volume"]].to_numpy(np.float64).T
    except IBError as exc:
        raise IBError(
            HISTORICAL_DATA_ERROR, f"Historical Market Data Service error message:{exc.message}"
        ) from exc
    if not len(times):
        raise IBError(
            HISTORICAL_DATA_ERROR,
            "Historical Market Data Service error message:HMDS query returned no data: "
            f"{inst.symbol} {bar.text} {duration} before {end:%Y%m%d %H:%M:%S} UTC",
        )
    if what != "TRADES":
        ohlcv = np.vstack([ohlcv[:4], np.full((1, len(times)), -1.0)])
    return start, times, ohlcv, bar


def req_historical_data(s: Session, r: Reader) -> None:
    req_id = r.int()
    req = read_contract(r)
    r.bool()  # includeExpired
    end_text = r.str()
    bar_text = r.str()
    duration = r.str()
    use_rth = r.bool()
    what = r.str().upper()
    format_date = r.int(1)
    if req.sec_type == "BAG":
        s.error(req_id, INVALID_REQUEST, "Combo (BAG) historical data is not supported")
        return
    r.bool()  # keepUpToDate: the bars are sent; no live updates follow in the simulation
    r.str()  # chartOptions
    inst = resolve(s.state.market, req)
    end = parse_end(end_text, s.state.now())
    key = (inst.conid, req.exchange, what, end_text, duration, bar_text, use_rth)
    bar_seconds = historical.BAR_SIZES.get(bar_text.strip(), 0)
    if not s.state.pacer.allow_historical(s, req_id, key, bar_seconds):
        return
    try:
        start, times, ohlcv, bar = history_arrays(s, inst, end, duration, bar_text, what)
    except historical.SpecError as exc:
        # TWS answers a malformed duration / bar size with a historical-data error that ends
        # the request (a bare 321 would leave ib_async waiting for its timeout)
        raise IBError(
            HISTORICAL_DATA_ERROR, f"Historical Market Data Service error message:{exc.message}"
        ) from exc
    header = [
        17,
        req_id,
        start.astimezone(NEW_YORK).strftime("%Y%m%d %H:%M:%S"),
        end.astimezone(NEW_YORK).strftime("%Y%m%d %H:%M:%S"),
        len(times),
    ]
    o, h, lo, c, v = ohlcv
    if bar.is_daily:  # stamped with the UTC close of the (last) session
        dates = _daily_labels(times, bar.text)
    elif format_date == 2:
        dates = [str(t) for t in (times // 1_000_000_000).tolist()]
    else:
        index = pd.DatetimeIndex(times.view("datetime64[ns]")).tz_localize("UTC")
        dates = list(index.tz_convert(NEW_YORK).strftime("%Y%m%d %H:%M:%S US/Eastern"))
    counts = np.where(v >= 0, np.maximum(1, np.abs(v) // 250), -1).astype(np.int64)
    wap = (h + lo + c) / 3.0  # bar VWAP proxy
    prices = np.round(np.vstack([o, h, lo, c, wap]), 6).tolist()
    rows = zip(dates, *prices[:4], v.tolist(), prices[4], counts.tolist(), strict=True)
    # one frame formatted in one call: three years of daily bars are ~6,000 fields a request.
    # Prices are rounded to 6 decimals and written with 6 ("%.6f" of the rounded double is
    # that decimal exactly), volume as Python writes a float, the bar count as an integer.
    body = (_BAR_TEXT * len(dates)) % tuple(chain.from_iterable(rows))
    s.send_frame(wire.frame_raw(("\0".join(map(wire.field, header)) + "\0" + body).encode()))


#: one bar of a historicalData message: date, open, high, low, close, volume, WAP, bar count
_BAR_TEXT = "%s\0%.6f\0%.6f\0%.6f\0%.6f\0%r\0%.6f\0%d\0"


#: (first close, last close, count, bar size) -> the bars' New York dates as IB writes them;
#: every stock shares the calendar, so one formatting serves all of them.
_DAILY_LABELS: dict[tuple[int, int, int, str], list[str]] = {}


def _daily_labels(times: np.ndarray, bar_text: str) -> list[str]:
    """``YYYYMMDD`` (New York) of daily, weekly or monthly bars stamped with their UTC close
    (ns, int64)."""
    if not len(times):
        return []
    key = (int(times[0]), int(times[-1]), len(times), bar_text)
    labels = _DAILY_LABELS.get(key)
    if labels is None:
        if len(_DAILY_LABELS) >= 1024:
            _DAILY_LABELS.clear()
        index = pd.DatetimeIndex(times.view("datetime64[ns]")).tz_localize("UTC")
        labels = _DAILY_LABELS[key] = list(index.tz_convert(NEW_YORK).strftime("%Y%m%d"))
    return labels


def cancel_historical_data(s: Session, r: Reader) -> None:
    r.rest()  # requests are answered at once; nothing is left to cancel


def req_head_timestamp(s: Session, r: Reader) -> None:
    req_id = r.int()
    inst = resolve(s.state.market, read_contract(r))
    r.bool(), r.bool(), r.str()
    format_date = r.int(1)
    first = s.state.market.sessions(HISTORY_START, HISTORY_START + timedelta(days=10))[0]
    opened = datetime(first.year, first.month, first.day, 9, 30, tzinfo=NEW_YORK)
    text = str(int(opened.timestamp())) if format_date == 2 else f"{opened:%Y%m%d-%H:%M:%S}"
    del inst
    s.send(88, req_id, text)


def cancel_head_timestamp(s: Session, r: Reader) -> None:
    r.rest()


# ------------------------------------------------------------------ scanners
def scanner_parameters_xml(codes: tuple[str, ...]) -> str:
    """A (small) ScanParameterResponse document in TWS's schema."""
    scans = "".join(
        f"<ScanType><displayName>{escape(c.replace('_', ' ').title())}</displayName>"
        f"<scanCode>{escape(c)}</scanCode><instruments>STK</instruments></ScanType>"
        for c in codes
    )
    filters = "".join(
        f"<SimpleFilter><id>{f}</id><AbstractField><code>{f}</code></AbstractField></SimpleFilter>"
        for f in SCAN_FILTERS
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ScanParameterResponse>'
        "<InstrumentList><Instrument><name>US Stocks</name><type>STK</type></Instrument>"
        "</InstrumentList><LocationTree><Location><displayName>US Stocks</displayName>"
        "<locationCode>STK.US</locationCode><LocationTree><Location><displayName>Listed/NASDAQ"
        "</displayName><locationCode>STK.US.MAJOR</locationCode></Location></LocationTree>"
        f"</Location></LocationTree><ScanTypeList>{scans}</ScanTypeList>"
        f"<FilterList>{filters}</FilterList></ScanParameterResponse>"
    )


def req_scanner_parameters(s: Session, r: Reader) -> None:
    r.int()
    s.send(19, 1, scanner_parameters_xml(tuple(s.state.market.SCANNER_CODES)))


def _opt(value: float) -> float | None:
    return None if value == 0.0 or value >= 1e300 else value


def req_scanner_subscription(s: Session, r: Reader) -> None:
    req_id = r.int()
    rows = r.int(-1)
    r.str()  # instrument
    location = r.str()
    code = r.str()
    above_price, below_price = r.float(0.0), r.float(0.0)
    above_volume = r.float(0.0)
    cap_above, cap_below = r.float(0.0), r.float(0.0)
    r.rest()  # ratings, maturities, coupons, stock type, tag-value options
    if not s.state.pacer.allow_scanner(s, req_id, s.state.scanner_count()):
        return
    limit = 50 if rows <= 0 or rows >= 2**31 - 1 else min(rows, 50)
    try:
        results = s.state.market.scan(
            code,
            s.state.now(),
            location=location or "STK.US.MAJOR",
            above_price=_opt(above_price),
            below_price=_opt(below_price),
            above_volume=_opt(above_volume),
            market_cap_above=_opt(cap_above),
            market_cap_below=_opt(cap_below),
            limit=limit,
        )
    except IBError as exc:  # TWS reports scanner failures through the HMDS error, 162
        raise IBError(
            HISTORICAL_DATA_ERROR,
            f"Historical Market Data Service error message:API scanner subscription "
            f"rejected: {exc.message}",
        ) from exc
    universe = s.state.market.universe
    fields: list[object] = [20, 3, req_id, len(results)]
    for res in results:
        inst = universe.by_conid(res.conid)
        fields += [res.rank, *scanner_contract_fields(inst)]
        fields += ["", "", "", ""]  # distance, benchmark, projection, legs
    s.scanners[req_id] = {"code": code, "location": location}
    s.send(*fields)


def cancel_scanner_subscription(s: Session, r: Reader) -> None:
    r.int()
    s.scanners.pop(r.int(), None)


# ------------------------------------------------------------------ news
def req_news_providers(s: Session, r: Reader) -> None:
    providers = s.state.market.news_providers()
    fields: list[object] = [85, len(providers)]
    for code, name in providers:
        fields += [code, name]
    s.send(*fields)


def _news_time(text: str, default: datetime) -> datetime:
    text = text.strip()
    if not text:
        return default
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y%m%d %H:%M:%S", "%Y%m%d-%H:%M:%S"):
        try:
            return datetime.strptime(text.replace(" UTC", ""), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return parse_end(text, default)


def req_historical_news(s: Session, r: Reader) -> None:
    """reqHistoricalNews: the contract's newest ``total`` headlines (300 at most) of the
    window, newest first. A window given in full is served from the shared
    :class:`~ibkr_sim.gateway.news.NewsStore` (drawn a block of stocks at a time); one left
    open (its end now) is drawn on its own."""
    req_id = r.int()
    conid = r.int()
    providers = {p for p in r.str().split("+") if p}
    start_text, end_text = r.str(), r.str()
    total = r.int(10)
    r.str()
    now = s.state.now()
    end = _news_time(end_text, now)
    start = _news_time(start_text, end - timedelta(days=30))
    market = s.state.market
    market.universe.by_conid(conid)
    if start_text.strip() and end_text.strip():
        found = s.state.news.columns(market, conid, start, end)
    else:
        found = market.news_columns(conid, start, end)
    if providers:
        found = found.take(np.isin(found.provider_code, list(providers)))
    newest = np.argsort(-found.time_ns, kind="stable")  # ties keep their order, as IB's
    total = max(1, min(total, 300))
    for h in found.take(newest[:total]).headlines():
        s.articles[h.article_id] = h
        stamp = h.time.strftime("%Y-%m-%d %H:%M:%S.0")
        s.send(86, req_id, stamp, h.provider_code, h.article_id, h.headline)
    s.send(87, req_id, len(found) > total)


def req_news_article(s: Session, r: Reader) -> None:
    req_id = r.int()
    r.str()  # provider
    article_id = r.str()
    r.str()
    headline = s.articles.get(article_id)
    if headline is None:
        s.error(req_id, 10172, f"Failed to request news article: unknown article {article_id!r}")
        return
    text = (
        f"{headline.headline}\n\n{headline.symbol} "
        f"({headline.provider_code}, {headline.time:%Y-%m-%d %H:%M} UTC)"
    )
    s.send(83, req_id, 0, text)
