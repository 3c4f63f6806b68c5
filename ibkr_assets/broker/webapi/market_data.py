"""Market data through the Web API: snapshot quotes and historical bars.

**Snapshot** (``/iserver/marketdata/snapshot``): IBKR answers the first request for a conid with
no values (the pre-flight opens its stream), so conids are asked in chunks of 100 and a chunk's
rows without data are asked again every :data:`POLL_SECONDS` until ``IBKR_TIMEOUT``. Field 6509
says what was served: ``R`` live (type 1), ``Z`` frozen (2), ``D`` delayed (3), ``Y`` frozen
delayed (4), ``N`` not subscribed (no prices: MarketDataUnavailable). Values are strings: a last
price may carry ``C`` (previous close) or ``H`` (halted), sizes thousands separators or ``K`` /
``M``. A row names no trade time, only ``_updated`` (when the gateway last refreshed it), so a
quote is stamped ``_updated``, less IB's :data:`DELAY` for delayed data (``D``, ``Y``): delayed
prices are at least 15 minutes old, as the tws backend's last-trade time shows them, and the
order guard judges them against its delayed-quote bound rather than as fresh.

**History** (``/iserver/marketdata/history``): IB's durations and bar sizes of the protocol
(``"1 Y"``, ``"1 day"``) in IBKR's ``period`` / ``bar`` grammar (``1y``, ``1d``); ``t`` is epoch ms,
``v`` is in units of ``volumeFactor``. Bars of a day or longer are dated with their New York
session and stamped at its close, the bar still forming stamped with the request's end
(:func:`~ibkr_assets.broker.models.bars_as_of`).

**Scanners** (``/iserver/scanner/params``, ``/iserver/scanner/run``): the codes are asked once
per broker (IBKR: 1 request per 15 min); a run answers at most 50 contracts, best first, with
ranks and contracts only, so a snapshot adds the numbers a trader reads (as the tws backend
does). The Web API has no order book or historical-news endpoint (IBKR streams the book on its
websocket only): depth and news are the tws backend's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ibkr_assets.broker.errors import (
    BrokerError,
    InvalidRequest,
    MarketDataUnavailable,
    error_from_ib,
)
from ibkr_assets.broker.models import (
    Bar,
    Contract,
    Quote,
    ScanFilter,
    ScannerRow,
    bar_series,
    bars_as_of,
    history_spec,
)
from ibkr_assets.broker.timeutil import NEW_YORK, session_close_utc
from ibkr_assets.broker.webapi.contracts import Contracts
from ibkr_assets.broker.webapi.session import GatewayError, Session
from ibkr_spec import errors as ib
from ibkr_spec.webapi import SNAPSHOT_MAX_CONIDS

#: seconds between snapshot requests for rows still without data (IBKR refreshes every 500 ms)
POLL_SECONDS = 0.25
#: snapshot field ids the backend asks for
LAST, BID, ASK, BID_SIZE, ASK_SIZE, LAST_SIZE = "31", "84", "86", "88", "85", "7059"
VOLUME, HIGH, LOW, OPEN, PRIOR_CLOSE, AVG_VOLUME = "7762", "70", "71", "7295", "7741", "7282"
AVAILABILITY = "6509"
_PRICES = (LAST, BID, ASK, BID_SIZE, ASK_SIZE, LAST_SIZE, VOLUME, HIGH, LOW, OPEN, PRIOR_CLOSE)
FIELDS = ",".join((*_PRICES, AVG_VOLUME, AVAILABILITY))
#: 6509's first character -> IB's market-data type
DATA_TYPES = {"R": 1, "Z": 2, "D": 3, "Y": 4}
#: how late IB serves delayed data (types 3 and 4): "15-20 minutes" for US stocks; the least
DELAY = timedelta(minutes=15)
#: IB bar size -> IBKR ``bar``
BARS = {
    **{("1 min" if n == 1 else f"{n} mins"): f"{n}min" for n in (1, 2, 3, 5, 10, 15, 30)},
    **{("1 hour" if n == 1 else f"{n} hours"): f"{n}h" for n in (1, 2, 3, 4, 8)},
    "1 day": "1d",
    "1 week": "1w",
    "1 month": "1m",
}
#: IB whatToShow -> IBKR ``source``
SOURCES = {"TRADES": "Trades", "MIDPOINT": "Midpoint"}
_SCALE = {"K": 1e3, "M": 1e6, "B": 1e9}
#: a scan's filters: ScanFilter's field -> IBKR's filter code (/iserver/scanner/params)
SCAN_FILTERS = {
    "above_price": "priceAbove",
    "below_price": "priceBelow",
    "above_volume": "volumeAbove",
    "market_cap_above": "marketCapAbove",
    "market_cap_below": "marketCapBelow",
}


def number(text: object) -> float | None:
    """A snapshot value as a number: ``"C193.18"`` -> 193.18, ``"1,300"`` -> 1300,
    ``"1.2M"`` -> 1.2e6; None when absent or not a number."""
    if text is None:
        return None
    s = str(text).strip().replace(",", "")
    if s[:1] in ("C", "H"):
        s = s[1:]
    scale = _SCALE.get(s[-1:], 1.0)
    if scale != 1.0:
        s = s[:-1]
    try:
        return float(s) * scale
    except ValueError:
        return None


def _period(duration: str, symbol: str) -> str:
    count, unit = duration.split()
    n = int(count)
    if unit != "S":
        return f"{n}{unit.lower()}"
    if n % 3600 == 0 and n // 3600 <= 8:
        return f"{n // 3600}h"
    if n % 60 == 0 and n // 60 <= 30:
        return f"{n // 60}min"
    raise InvalidRequest(
        f"{symbol}: duration {duration!r}: the Web API takes seconds only as whole minutes up to "
        "30 or whole hours up to 8 (IBKR period {1-30}min, {1-8}h)"
    )


class MarketData:
    """Quotes and bars over one :class:`Session`."""

    def __init__(self, session: Session, timeout: float, now: Callable[[], datetime]) -> None:
        """``now``: the gateway's time, learned from an answer first when none has shown it
        (a daily history keeps only the sessions closed by then)."""
        self._s = session
        self._timeout = timeout
        self._now = now

    # -- snapshot ----------------------------------------------------------------------------
    def snapshot_rows(self, conids: list[int]) -> dict[int, dict[str, Any]]:
        """Each conid's snapshot row with data, past IBKR's pre-flight; rows that stay without
        data until the timeout (from their chunk's first request) are left out. Every chunk's
        pre-flight is sent before any chunk is asked again, so many chunks wait for their values
        once, not once each."""
        self._s.iserver_accounts()  # IBKR: /iserver/accounts before the first snapshot
        rows: dict[int, dict[str, Any]] = {}
        unique = list(dict.fromkeys(conids))
        # (conids still without data, the chunk's deadline once asked)
        pending: list[tuple[list[int], float | None]] = [
            (unique[i : i + SNAPSHOT_MAX_CONIDS], None)
            for i in range(0, len(unique), SNAPSHOT_MAX_CONIDS)
        ]
        while pending:
            started = time.monotonic()
            asked: list[tuple[list[int], float]] = []
            for chunk, deadline in pending:
                answer = self._s.get(
                    "/iserver/marketdata/snapshot",
                    conids=",".join(map(str, chunk)),
                    fields=FIELDS,
                )
                asked.append((chunk, deadline or time.monotonic() + self._timeout))
                for row in answer if isinstance(answer, list) else []:
                    if AVAILABILITY in row:
                        rows[int(row["conid"])] = row
                        self._s.observe_time(row.get("_updated"))
            now = time.monotonic()
            left = [([c for c in chunk if c not in rows], deadline) for chunk, deadline in asked]
            pending = [(chunk, deadline) for chunk, deadline in left if chunk and now <= deadline]
            if pending:
                time.sleep(max(0.0, started + POLL_SECONDS - now))
        return rows

    def quotes(self, contracts: list[Contract]) -> list[Quote]:
        """Snapshot quotes in the order given (see the module docstring)."""
        rows = self.snapshot_rows([c.conid for c in contracts])
        return [self._quote(c, rows.get(c.conid)) for c in contracts]

    def _quote(self, contract: Contract, row: dict[str, Any] | None) -> Quote:
        label = f"{contract.symbol} (conId {contract.conid})"
        if row is None:
            raise MarketDataUnavailable(
                f"{label}: the gateway sent no snapshot values within {self._timeout:g} s "
                "(IBKR_TIMEOUT)",
                code=ib.NO_MARKET_DATA,
            )
        served = str(row.get(AVAILABILITY, ""))
        data_type = DATA_TYPES.get(served[:1])
        if data_type is None:
            raise MarketDataUnavailable(
                f"{label}: no market data (field 6509 {served!r}: not subscribed); subscribe to "
                "its market data at IBKR",
                code=ib.NEEDS_SUBSCRIPTION,
            )
        updated = row.get("_updated")
        stamp = datetime.fromtimestamp(int(updated) / 1000, UTC) if updated else self._s.now()
        if data_type in (3, 4):
            stamp -= DELAY
        return Quote(
            contract=contract,
            time=stamp,
            bid=number(row.get(BID)),
            ask=number(row.get(ASK)),
            last=number(row.get(LAST)),
            bid_size=number(row.get(BID_SIZE)),
            ask_size=number(row.get(ASK_SIZE)),
            last_size=number(row.get(LAST_SIZE)),
            volume=number(row.get(VOLUME)),
            open=number(row.get(OPEN)),
            high=number(row.get(HIGH)),
            low=number(row.get(LOW)),
            close=number(row.get(PRIOR_CLOSE)),
            market_data_type=data_type,
        )

    def avg_volumes(self, conids: list[int]) -> dict[int, float | None]:
        """IBKR's 90-day average volume (field 7282, shares) of each conid, None when not sent
        (snapshots of 100 conids a request)."""
        rows = self.snapshot_rows(conids)
        return {c: number(rows[c].get(AVG_VOLUME)) if c in rows else None for c in conids}

    # -- history -----------------------------------------------------------------------------
    def history(
        self,
        contract: Contract,
        duration: str,
        bar_size: str,
        what_to_show: str,
        end: datetime | None,
        use_rth: bool,
    ) -> list[Bar]:
        """Historical bars (see the module docstring); InvalidRequest for what the Web API
        cannot ask, IBKR's HMDS errors as IB's 162."""
        symbol = contract.symbol
        span, size = history_spec(symbol, duration, bar_size, what_to_show)
        bar = BARS.get(size.text)
        if bar is None:
            raise InvalidRequest(
                f"{symbol}: bar size {bar_size!r}: the Web API serves {', '.join(BARS)}"
            )
        source = SOURCES.get(what_to_show)
        if source is None:
            raise InvalidRequest(
                f"{symbol}: whatToShow {what_to_show!r}: the webapi backend serves TRADES and "
                "MIDPOINT"
            )
        params: dict[str, Any] = {
            "conid": contract.conid,
            "period": _period(span.text, symbol),
            "bar": bar,
            "source": source,
            "outsideRth": "false" if use_rth else "true",
        }
        if end is not None:
            params["startTime"] = end.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")
        try:
            body = self._s.get("/iserver/marketdata/history", **params)
        except GatewayError as exc:  # HMDS errors: 500 {"error": text}
            raise ib_history_error(symbol, exc.text) from None
        if not isinstance(body, dict) or "data" not in body:
            raise BrokerError(f"{symbol}: the gateway answered no bars: {body!r}")
        factor = float(body.get("volumeFactor") or 1)
        daily = size.is_daily
        records = []
        for d in body["data"]:
            stamp = datetime.fromtimestamp(int(d["t"]) / 1000, UTC)
            session = stamp.astimezone(NEW_YORK).date() if daily else None
            records.append(
                {
                    "time": session_close_utc(session) if session else stamp,
                    "open": d["o"],
                    "high": d["h"],
                    "low": d["l"],
                    "close": d["c"],
                    "volume": float(d["v"]) * factor if what_to_show == "TRADES" else -1.0,
                    "session": session,
                }
            )
        bars = bar_series(records)
        return bars_as_of(bars, end or self._now()) if daily else bars


def ib_history_error(symbol: str, text: str) -> BrokerError:
    """An HMDS error text as IB's 162: a pacing violation when it says so, else InvalidRequest."""
    return error_from_ib(ib.HISTORICAL_DATA_ERROR, f"{symbol}: {text}")


class Scanner:
    """IBKR's market scanners over one :class:`Session` (see the module docstring)."""

    def __init__(self, session: Session, contracts: Contracts, market: MarketData) -> None:
        self._s = session
        self._contracts = contracts
        self._market = market
        self._codes: list[str] | None = None

    def codes(self) -> list[str]:
        """The scan types of ``/iserver/scanner/params``, asked once."""
        if self._codes is None:
            body = self._s.get("/iserver/scanner/params") or {}
            self._codes = [str(t["code"]) for t in body.get("scan_type_list") or []]
        return list(self._codes)

    def scan(self, code: str, location: str, f: ScanFilter, limit: int) -> list[ScannerRow]:
        """The best ``limit`` (at most 50) stocks of scan ``code`` at ``location``."""
        codes = self.codes()
        if code not in codes:
            raise InvalidRequest(
                f"unknown scanner code {code!r}; the gateway runs {', '.join(codes)}"
            )
        filters = [
            {"code": SCAN_FILTERS[name], "value": value}
            for name, value in f.model_dump().items()
            if value is not None
        ]
        body = {"instrument": "STK", "location": location, "type": code, "filter": filters}
        answer = self._s.post("/iserver/scanner/run", body) or {}
        rows = list(answer.get("contracts") or [])[: max(limit, 0)]
        contracts = []
        for r in rows:
            self._contracts.note_listing(int(r["con_id"]), r.get("listing_exchange"))
            contracts.append(self._contracts.contract(int(r["con_id"])))
        quotes = self._market.quotes(contracts) if contracts else []
        return [
            ScannerRow(
                rank=rank,
                contract=c,
                last=q.last,
                change_pct=(q.last / q.close - 1.0) * 100.0 if q.last and q.close else None,
                volume=q.volume,
            )
            for rank, (c, q) in enumerate(zip(contracts, quotes, strict=True))
        ]
