"""The tws backend's historical bars, read column-wise off IB's ``historicalData`` message.

ib_async decodes that message (id 17) into one ``BarData`` per bar and parses each bar's date
on its own; at 700 symbols x 756 daily bars that is half a million objects, the largest cost of
the daily job's bars through the gateway (about 12 s of the client's loop under cProfile,
session 17). :class:`ColumnarHistory` puts a decoder of its own in front of ib_async's for
message 17: a request made through :meth:`ColumnarHistory.request` gets its bars as
:class:`BarColumns` (numpy arrays: a message's numbers read by one Arrow cast, the closes of a
run of sessions computed once for every symbol that answers them); every other historical
request (``reqHistoricalData`` called directly) still goes through ib_async's decoder.

IB's message, as ib_async's decoder reads it [IBA ``ib_async/decoder.py`` ``historicalData``]:
``17, reqId, startDate, endDate, numBars``, then per bar ``date, open, high, low, close,
volume, average, barCount``. With ``formatDate=2`` a daily (weekly, monthly) bar's date is
``YYYYMMDD`` and an intraday bar's the epoch second of its start.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import ib_async
import numpy as np
import pandas as pd
import pyarrow as pa

from ibkr_assets.broker.frames import bar_frame, frame_of_bars
from ibkr_assets.broker.models import Bar, bar_series
from ibkr_assets.broker.tws.wire import UNSET

#: ib_async's message id of a historical-data answer
HISTORICAL_DATA = 17
#: a daily bar's UTC stamp: its session's regular close, 16:00 New York
#: (:func:`~ibkr_assets.broker.timeutil.session_close_utc`)
_CLOSE = pd.Timedelta(hours=16)


@dataclass(frozen=True)
class BarColumns:
    """IB's bars of one request, one array per field: ``time`` (datetime64[ns], UTC, naive),
    ``open``/``high``/``low``/``close`` (float64), ``volume`` (float64 shares; -1 unless
    TRADES), ``wap`` (float64, NaN when IB sends none), ``bar_count`` (int64, 0 when none) and
    ``session`` (datetime64[ns] dates; NaT for intraday bars). Never modified in place."""

    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    wap: np.ndarray
    bar_count: np.ndarray
    session: np.ndarray

    def __len__(self) -> int:
        return len(self.time)

    @property
    def daily(self) -> bool:
        """Bars of sessions (daily, weekly, monthly), not intraday ones."""
        return len(self) > 0 and not np.isnat(self.session[-1])

    def as_of(self, at: datetime) -> BarColumns:
        """The bars as known at ``at`` (see :func:`~ibkr_assets.broker.models.bars_as_of`): a
        last bar later than ``at`` (a session still open) is stamped ``at``."""
        stamp = np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "ns")
        if not len(self) or self.time[-1] <= stamp:
            return self
        time = self.time.copy()
        time[-1] = stamp
        return replace(self, time=time)

    def traded(self, what_to_show: str) -> BarColumns:
        """The volume as the backend reports it: IB's for TRADES, -1 otherwise."""
        if what_to_show == "TRADES":
            return self
        return replace(self, volume=np.full(len(self), -1.0))

    def frame(self) -> pd.DataFrame:
        """A bar frame (:data:`~ibkr_assets.broker.models.BAR_COLUMNS`)."""
        return bar_frame(
            pd.DatetimeIndex(self.time).tz_localize("UTC"),
            (self.open, self.high, self.low, self.close),
            self.volume,
            self.session,
        )

    def bars(self) -> list[Bar]:
        """The bars as :class:`~ibkr_assets.broker.models.Bar` models."""
        times = pd.DatetimeIndex(self.time).tz_localize("UTC").to_pydatetime()
        sessions = [None if pd.isna(s) else s.date() for s in pd.DatetimeIndex(self.session)]
        records: list[dict[str, Any]] = [
            {
                "time": t,
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": v,
                "wap": None if np.isnan(w) else w,
                "bar_count": n or None,
                "session": s,
            }
            for t, o, h, lo, c, v, w, n, s in zip(
                times,
                self.open.tolist(),
                self.high.tolist(),
                self.low.tolist(),
                self.close.tolist(),
                self.volume.tolist(),
                self.wap.tolist(),
                self.bar_count.tolist(),
                sessions,
                strict=True,
            )
        ]
        return bar_series(records)


def columns_frame(answers: Sequence[tuple[int, BarColumns]]) -> pd.DataFrame:
    """The bar frames of many requests (conid, its bars) in one, a ``conid`` column (int64)
    first, the answers in order: their columns joined, one frame built."""
    bars = [b for _, b in answers]
    if not bars:
        frame = frame_of_bars([])
    else:
        joined = {
            f.name: np.concatenate([getattr(b, f.name) for b in bars]) for f in fields(BarColumns)
        }
        frame = BarColumns(**joined).frame()
    conids = np.array([conid for conid, _ in answers], np.int64)
    frame.insert(0, "conid", np.repeat(conids, [len(b) for b in bars]))
    return frame


def decode(fields: list[str]) -> BarColumns:
    """The bars of one ``historicalData`` message (its fields as ib_async splits them)."""
    n = int(fields[4])
    body = fields[5 : 5 + 8 * n]
    dates = body[0::8]
    stamped = all(map(str.isdigit, dates))  # YYYYMMDD or epoch seconds: read as numbers
    if not stamped:
        body[0::8] = ["0"] * n  # IB's dated text, parsed on its own below
    # each bar: date, open, high, low, close, volume, average, barCount
    numbers = _floats(body).reshape(n, 8).T.copy()
    wap = numbers[6]
    wap[np.isnan(wap) | (np.abs(wap) >= UNSET)] = np.nan
    if stamped and all(map((8).__eq__, map(len, dates))):  # sessions, stamped with their close
        ymd = numbers[0].astype(np.int64).tobytes()
        time, session_days = (a.copy() for a in _session_closes(ymd))
    else:  # intraday: the epoch second each bar starts at (or IB's dated text)
        if stamped:
            stamps = pd.to_datetime(numbers[0].astype(np.int64), unit="s").as_unit("ns")
        else:
            parsed = [ib_async.util.parseIBDatetime(d).astimezone(UTC) for d in dates]
            stamps = pd.DatetimeIndex(parsed).tz_convert(None).as_unit("ns")
        time = stamps.to_numpy()
        session_days = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    return BarColumns(
        time=time,
        open=numbers[1],
        high=numbers[2],
        low=numbers[3],
        close=numbers[4],
        volume=numbers[5],
        wap=wap,
        bar_count=numbers[7].astype(np.int64),
        session=session_days,
    )


def _floats(texts: list[str]) -> np.ndarray:
    """``texts`` read as Python's ``float()`` reads them (float64), in bulk: one Arrow cast
    (about 4x faster than ``float()`` a field; both round correctly). Text Arrow refuses but
    ``float()`` reads (spaces, ``_`` between digits) is read by ``float()``, field by field."""
    # the joined text's separators give each field's bounds; the fields are the text without them
    joined = "\0".join(texts).encode()
    cuts = np.flatnonzero(np.frombuffer(joined, np.uint8) == 0)
    offsets = np.empty(len(texts) + 1, np.int32)
    offsets[0], offsets[-1] = 0, len(joined) - len(cuts)
    offsets[1:-1] = cuts - np.arange(len(cuts))
    data = pa.py_buffer(joined.replace(b"\0", b""))
    strings = pa.StringArray.from_buffers(len(texts), pa.py_buffer(offsets), data)
    try:
        return strings.cast(pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        return np.fromiter(map(float, texts), np.float64, len(texts))


@functools.lru_cache(maxsize=16)
def _session_closes(ymd: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The UTC close instants (datetime64[ns], naive) and the dates (datetime64[ns]) of the
    sessions written as the int64 integers YYYYMMDD in ``ymd``: computed once for all the
    symbols of a daily request that answer the same sessions (read-only: callers copy)."""
    session_days = _days(np.frombuffer(ymd, dtype=np.int64))
    closes = pd.DatetimeIndex(session_days + _CLOSE.to_timedelta64())
    return closes.tz_localize("America/New_York").tz_convert(None).to_numpy(), session_days


def _days(ymd: np.ndarray) -> np.ndarray:
    """Dates written as the integers YYYYMMDD, as datetime64[ns]."""
    months = (ymd // 10000 - 1970) * 12 + ymd // 100 % 100 - 1
    days = months.astype("datetime64[M]").astype("datetime64[D]") + (ymd % 100 - 1)
    return days.astype("datetime64[ns]")


class ColumnarHistory:
    """Historical requests whose answers are decoded by :func:`decode`, on one ib_async
    client; made on the connection's loop only."""

    def __init__(self, ib: ib_async.IB) -> None:
        self._ib = ib
        self._wanted: dict[int, list[BarColumns]] = {}
        handlers = ib.client.decoder.handlers
        self._ib_decoder = handlers[HISTORICAL_DATA]
        handlers[HISTORICAL_DATA] = self._on_message

    def _on_message(self, fields: list[str]) -> None:
        box = self._wanted.pop(int(fields[1]), None)
        if box is None:  # a request made through ib_async
            self._ib_decoder(fields)
            return
        box.append(decode(fields))
        self._ib.wrapper.historicalDataEnd(int(fields[1]), fields[2], fields[3])

    async def request(
        self,
        contract: ib_async.Contract,
        end: datetime | None,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        timeout: float,
    ) -> BarColumns | None:
        """IB's bars for the request (``formatDate=2``), or None when IB sent none within
        ``timeout`` seconds (the request is then cancelled). IB's error for the request is
        raised as ib_async's ``RequestError``."""
        client, box = self._ib.client, []
        req_id = client.getReqId()
        future = self._ib.wrapper.startReq(req_id, contract, container=box)
        self._wanted[req_id] = box
        end_text = ib_async.util.formatIBDatetime(end.astimezone(UTC)) if end else ""
        client.reqHistoricalData(
            req_id, contract, end_text, duration, bar_size, what_to_show, use_rth, 2, False, []
        )
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            client.cancelHistoricalData(req_id)
            return None
        finally:
            self._wanted.pop(req_id, None)
        return box[0]
