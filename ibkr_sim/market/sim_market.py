"""The simulated market for one seed and edge: contracts resolved to panel columns, requests
answered by the package's concept modules (see :mod:`ibkr_sim.market`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
import pandas as pd

from ibkr_sim.market import (
    bars,
    calendar,
    fundamentals,
    news,
    options,
    paths,
    quotes,
    scanner,
)
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.news import Headline
from ibkr_sim.market.quotes import Snapshot
from ibkr_sim.market.scanner import ScanResult
from ibkr_sim.universe import LISTED_STOCKS, Instrument, Universe
from ibkr_spec.errors import (
    HISTORICAL_DATA_ERROR,
    INVALID_REQUEST,
    NO_FUNDAMENTALS,
    NO_MARKET_DATA,
    NO_SECURITY_DEFINITION,
    IBError,
)
from ibkr_spec.historical import BarSize, Duration


class SimMarket:
    """The deterministic simulated market for one seed (see :mod:`ibkr_sim.market`) and edge
    (how strongly observables predict returns, :class:`~ibkr_sim.market.edge.Edge`; the
    default world's unless given).

    Every stock of the universe and every macro instrument has a column in the daily panel
    (the listed stocks in universe order, then the macro instruments, then generated stocks:
    :func:`~ibkr_sim.market.paths.stock_column`); options are priced from their underlying's
    column. Timestamps are timezone-aware.
    """

    SCANNER_CODES: tuple[str, ...] = scanner.SCANNER_CODES
    LOCATIONS: tuple[str, ...] = scanner.LOCATIONS

    def __init__(self, seed: int = 7, n_stocks: int = 700, edge: Edge | None = None) -> None:
        self.seed = int(seed)
        self.edge = edge if edge is not None else Edge()
        self.universe = Universe(self.seed, n_stocks)
        paths.include_generated(n_stocks)
        self._cols: dict[int, int] = {
            inst.conid: paths.stock_column(i) for i, inst in enumerate(self.universe.stocks)
        }
        self._cols.update(
            {inst.conid: LISTED_STOCKS + j for j, inst in enumerate(self.universe.others)}
        )
        self._conid_of_col = {c: conid for conid, c in self._cols.items()}
        self.universe.resolver = self._decode_option
        self._tnx_col = self._cols[self.universe.lookup("TNX", "IND").conid]

    # -- calendar ---------------------------------------------------------------------------
    def sessions(self, start: date, end: date) -> list[date]:
        """NYSE sessions between ``start`` and ``end`` inclusive."""
        return calendar.sessions(start, end)

    def last_session(self, at: datetime) -> date:
        """The latest session whose close is at or before ``at``."""
        return calendar.last_session(at)

    def trading_hours(self, conid: int, day: date) -> list[tuple[datetime, datetime]]:
        """Regular trading hours in UTC (FX: IDEALPRO's 17:15 ET the day before to 17:00 ET)."""
        return calendar.trading_hours(self._instrument(conid).sec_type, day)

    # -- lookups ----------------------------------------------------------------------------
    def _instrument(self, conid: int) -> Instrument:
        return self.universe.by_conid(conid)

    def _col(self, conid: int) -> int:
        """The contract's panel column; IB's error 162 for a contract without price history."""
        col = self._cols.get(conid)
        if col is None:
            inst = self._instrument(conid)  # IBError(200) when unknown
            raise IBError(
                HISTORICAL_DATA_ERROR, f"no price history for {inst.symbol} ({inst.sec_type})"
            )
        return col

    def _stock(self, conid: int) -> int:
        """A stock's panel column; IB's error 430 for anything that has no fundamentals."""
        inst = self._instrument(conid)
        col = self._cols.get(conid)
        if inst.sec_type != "STK" or inst.is_etf or col is None:
            raise IBError(
                NO_FUNDAMENTALS,
                f"fundamentals data is not available for {inst.symbol} ({inst.sec_type})",
            )
        return col

    def _optionable(self, conid: int) -> tuple[Instrument, int]:
        """A stock and its panel column; IB's error 200 for anything without an option chain."""
        inst = self._instrument(conid)
        col = self._cols.get(conid)
        if inst.sec_type != "STK" or col is None:
            raise IBError(
                NO_SECURITY_DEFINITION, f"no option chain for {inst.symbol} ({inst.sec_type})"
            )
        return inst, col

    # -- bars -------------------------------------------------------------------------------
    def daily_bars(self, conid: int, start: date, end: date) -> pd.DataFrame:
        """Daily OHLCV for sessions in [start, end]; index ``session`` (datetime64), float64."""
        return bars.daily_bars(self.seed, self.edge, self._col(conid), start, end)

    def daily_close_panel(self, conids: list[int], start: date, end: date) -> pd.DataFrame:
        """Closes, sessions x conids, in one slice of the cached panel."""
        cols = [self._col(c) for c in conids]
        return bars.daily_close_panel(self.seed, self.edge, cols, conids, start, end)

    def intraday_bars(self, conid: int, session: date, minutes: int) -> pd.DataFrame:
        """Bars of ``minutes`` (1..390) within one session; index UTC bar start; o h l c volume."""
        return bars.intraday_bars(self.seed, self.edge, self._col(conid), session, minutes)

    def history(
        self,
        conid: int,
        start: datetime,
        end: datetime,
        bar_size: BarSize,
        what_to_show: str = "TRADES",
    ) -> pd.DataFrame:
        """Bars ending in (start, end], as ``reqHistoricalData`` would return them.

        Daily/weekly/monthly bars are indexed by the UTC close of their last session; intraday
        bars by their UTC start, only completed bars; sub-minute bars are interpolated along the
        minute path. BID/ASK shift prices by half the typical spread; MIDPOINT equals TRADES.
        """
        return bars.history(
            self.seed, self.edge, self._col(conid), start, end, bar_size, what_to_show
        )

    def session_history(
        self,
        conid: int,
        end: datetime,
        duration: Duration,
        bar_size: BarSize,
        what_to_show: str = "TRADES",
    ) -> tuple[datetime | None, pd.DataFrame]:
        """(start, bars) of bars of a day or longer reaching back ``duration`` trading sessions
        (IB's count) from ``end``, the day so far last while a session is open; see
        :func:`ibkr_sim.market.bars.session_history`."""
        return bars.session_history(
            self.seed, self.edge, self._col(conid), end, duration, bar_size, what_to_show
        )

    def session_history_arrays(
        self,
        conid: int,
        end: datetime,
        duration: Duration,
        bar_size: BarSize,
        what_to_show: str = "TRADES",
    ) -> tuple[datetime | None, np.ndarray, np.ndarray]:
        """:meth:`session_history` as arrays: (start, UTC close in ns (bars,), OHLCV (5, bars));
        see :func:`ibkr_sim.market.bars.session_history_arrays`."""
        return bars.session_history_arrays(
            self.seed, self.edge, self._col(conid), end, duration, bar_size, what_to_show
        )

    def daily_session_history(
        self, conids: Sequence[int], end: datetime, duration: Duration
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The daily TRADES bars :meth:`session_history` answers for each of ``conids``, all
        at once: the bars' UTC close in ns (sessions,) and OHLCV (sessions, len(conids))
        float64 arrays (:func:`~ibkr_sim.market.bars.daily_session_history`)."""
        cols = np.array([self._col(c) for c in conids], dtype=np.int64)
        _, times, columns = bars.daily_session_history(self.seed, self.edge, cols, end, duration)
        return times, columns

    # -- quotes -----------------------------------------------------------------------------
    def snapshot(self, conid: int, at: datetime) -> Snapshot:
        """Top of book at ``at`` (see :class:`Snapshot`)."""
        return self.snapshots([conid], at)[0]

    def snapshots(self, conids: Sequence[int], at: datetime) -> list[Snapshot]:
        """Snapshots for many contracts at once, in the order asked (options priced one by one)."""
        out: dict[int, Snapshot] = {}
        panel_ids = [c for c in conids if c in self._cols]
        if panel_ids:
            cols = np.fromiter(
                (self._cols[c] for c in panel_ids), dtype=np.int64, count=len(panel_ids)
            )
            found = quotes.panel_snapshots(self.seed, self.edge, panel_ids, cols, at)
            out.update(zip(panel_ids, found, strict=True))
        for c in conids:
            if c not in out:
                out[c] = self._option_snapshot(self._instrument(c), at)
        return [out[c] for c in conids]

    def snapshot_columns(self, conids: Sequence[int], at: datetime) -> dict[str, np.ndarray] | None:
        """:meth:`snapshots` of contracts that all have a panel column, as float64 arrays (one
        per field of :data:`~ibkr_sim.market.quotes.SNAPSHOT_COLUMNS`, in the order asked);
        None when one has none (an option: ask :meth:`snapshots`)."""
        cols = [self._cols.get(c) for c in conids]
        if any(c is None for c in cols):
            return None
        return quotes.panel_snapshot_columns(
            self.seed, self.edge, np.array(cols, dtype=np.int64), at
        )

    def _option_snapshot(self, inst: Instrument, at: datetime) -> Snapshot:
        if inst.sec_type != "OPT":
            raise IBError(NO_MARKET_DATA, f"no market data for {inst.symbol} ({inst.sec_type})")
        under = self.snapshot(inst.underlying_conid, at)
        under_col = self._cols[inst.underlying_conid]
        return options.snapshot(self.seed, self.edge, inst, under, under_col, self._tnx_col, at)

    def depth(
        self, conid: int, at: datetime, rows: int = 5
    ) -> tuple[list[tuple[float, float, str]], list[tuple[float, float, str]]]:
        """Level-2 book: (bids best-first, asks best-first) of (price, size, market maker)."""
        if not 1 <= rows <= 50:
            raise IBError(INVALID_REQUEST, f"depth rows must be 1..50, got {rows}")
        snap = self.snapshot(conid, at)
        return quotes.depth(self.seed, self._instrument(conid), snap, at, rows)

    def fx_rate(self, currency: str, at: datetime) -> float:
        """USD per one unit of ``currency`` (USD -> 1.0), from the FX pair's last price."""
        cur = currency.upper()
        if cur == "USD":
            return 1.0
        for inst in self.universe.others:
            if inst.sec_type == "CASH" and cur in (inst.symbol, inst.currency):
                last = self.snapshot(inst.conid, at).last
                return last if inst.currency == "USD" else 1.0 / last
        raise IBError(NO_SECURITY_DEFINITION, f"no FX rate for currency {currency!r}")

    # -- fundamentals -----------------------------------------------------------------------
    def fundamentals(self, conid: int, as_of: date) -> pd.DataFrame:
        """Quarterly statements reported on or before ``as_of`` (oldest first), USD / shares."""
        return fundamentals.fundamentals(self.seed, self._stock(conid), as_of)

    def fundamentals_many(
        self, conids: Sequence[int], as_of: date
    ) -> tuple[pd.DataFrame, dict[int, IBError]]:
        """:meth:`fundamentals` of many stocks in one frame (a ``conid`` column first, the
        stocks in the order asked, each oldest first; the same numbers), and the error of each
        conid :meth:`fundamentals` refuses (unknown, or no fundamentals: IB's 200 / 430)."""
        cols: dict[int, int] = {}
        failed: dict[int, IBError] = {}
        for conid in conids:
            try:
                cols[conid] = self._stock(conid)
            except IBError as exc:
                failed[conid] = exc
        frame = fundamentals.fundamentals_many(self.seed, list(cols.values()), as_of)
        frame.insert(0, "conid", np.array(list(cols), dtype=np.int64)[frame.pop("stock")])
        return frame, failed

    def forward_eps(self, conid: int, as_of: date) -> float:
        """Consensus EPS for the next twelve months: trailing EPS grown at the recent trend."""
        return fundamentals.forward_eps(self.seed, conid, self._stock(conid), as_of)

    def forward_eps_many(self, conids: Sequence[int], as_of: date) -> list[float]:
        """:meth:`forward_eps` of many stocks for one date (:meth:`forward_eps_history` of one
        day); the same numbers."""
        return self.forward_eps_history(conids, [as_of])[0].tolist()

    def forward_eps_history(self, conids: Sequence[int], days: Sequence[date]) -> np.ndarray:
        """:meth:`forward_eps` of many stocks on each of ``days``, an array (days, stocks) in
        the order asked, vectorised over the statements (a backtest asks for every stock on
        every session); the same numbers."""
        cols = [self._stock(c) for c in conids]
        return fundamentals.forward_eps_history(self.seed, conids, cols, days)

    # -- news -------------------------------------------------------------------------------
    def news_providers(self) -> list[tuple[str, str]]:
        """IB news provider codes and names."""
        return list(news.NEWS_PROVIDERS)

    def news(self, conid: int, start: datetime, end: datetime) -> list[Headline]:
        """Headlines with ``start <= time <= end``, oldest first (stocks only; others have none)."""
        inst = self._instrument(conid)
        return news.headlines(self.seed, self.edge, inst, self._cols.get(conid), start, end)

    def news_columns(self, conid: int, start: datetime, end: datetime) -> news.NewsColumns:
        """:meth:`news` as columns (:class:`~ibkr_sim.market.news.NewsColumns`), oldest first."""
        inst = self._instrument(conid)
        return news.news_columns(self.seed, self.edge, inst, self._cols.get(conid), start, end)

    def news_columns_many(
        self, conids: Sequence[int], start: datetime, end: datetime
    ) -> list[news.NewsColumns]:
        """:meth:`news_columns` of many contracts, drawn together, in the order asked."""
        insts = [self._instrument(c) for c in conids]
        cols = [self._cols.get(c) for c in conids]
        return news.news_columns_many(self.seed, self.edge, insts, cols, start, end)

    # -- social chatter ---------------------------------------------------------------------
    def _chatter_col(self, conid: int) -> int:
        """A stock's panel column; ``ValueError`` for anything but a stock (the simulated world
        has no chatter about ETFs or others)."""
        inst = self._instrument(conid)
        col = self._cols.get(conid)
        if inst.sec_type != "STK" or inst.is_etf or col is None:
            raise ValueError(
                f"the simulated world has no social chatter about {inst.symbol} "
                f"({'ETF' if inst.is_etf else inst.sec_type}): only stocks have it"
            )
        return col

    def social_chatter(self, conid: int, start: date, end: date) -> pd.DataFrame:
        """A stock's social chatter of the sessions in [start, end] (:mod:`.social`): columns
        ``session`` (datetime64, the window ends at its close and the counts are known from
        then), ``posts`` (Reddit-like) and ``mentions`` (X/StockTwits-like); ``ValueError``
        for anything but a stock (the simulated world has no chatter about ETFs or others)."""
        self._chatter_col(conid)
        return self.social_chatter_many([conid], start, end)[0].drop(columns="conid")

    def social_chatter_many(
        self, conids: Sequence[int], start: date, end: date
    ) -> tuple[pd.DataFrame, dict[int, IBError | ValueError]]:
        """:meth:`social_chatter` of many stocks from one slice of the panel: one frame with a
        ``conid`` column first (the stocks in the order asked, each session after session),
        and the error of each conid it refuses (unknown: IB's 200; not a stock: ValueError)."""
        cols: dict[int, int] = {}
        failed: dict[int, IBError | ValueError] = {}
        for conid in conids:
            try:
                cols[conid] = self._chatter_col(conid)
            except (IBError, ValueError) as exc:
                failed[conid] = exc
        rows = calendar.session_slice(start, end)
        picked = np.array(list(cols.values()), dtype=np.int64)
        posts, mentions = paths.chatter_counts(self.seed, picked, rows)
        days = calendar.schedule()[0][rows].astype("datetime64[ns]")
        frame = pd.DataFrame(
            {
                "conid": np.repeat(np.array(list(cols), dtype=np.int64), len(days)),
                "session": np.tile(days, len(picked)),
                "posts": posts.T.ravel().astype(np.int64),
                "mentions": mentions.T.ravel().astype(np.int64),
            }
        )
        return frame, failed

    # -- scanners ---------------------------------------------------------------------------
    def scan(
        self,
        code: str,
        at: datetime,
        location: str = "STK.US.MAJOR",
        above_price: float | None = None,
        below_price: float | None = None,
        above_volume: float | None = None,
        market_cap_above: float | None = None,
        market_cap_below: float | None = None,
        limit: int = 50,
    ) -> list[ScanResult]:
        """IB market scanner over the stocks (ETFs excluded).

        During a session it ranks live values; before the open it ranks the last completed
        session (what a pre-market screen of "yesterday's movers" shows). HOT_BY_VOLUME ranks
        volume relative to the average expected by this time of day.
        """
        return scanner.scan(
            self.seed,
            self.edge,
            self.universe.stocks,
            code,
            at,
            location,
            above_price,
            below_price,
            above_volume,
            market_cap_above,
            market_cap_below,
            limit,
        )

    # -- options ----------------------------------------------------------------------------
    def option_chain(self, underlying_conid: int, as_of: date) -> tuple[list[str], list[float]]:
        """Monthly expiries (third Fridays, next six) and strikes 70 %-130 % of the last close."""
        _, col = self._optionable(underlying_conid)
        return options.chain(self.seed, self.edge, col, as_of)

    def option(self, underlying_conid: int, expiry: str, strike: float, right: str) -> Instrument:
        """The listed option (OPT, multiplier 100), registered so ``by_conid``/``snapshot`` work.

        Listed means a monthly expiry (2019-01 .. 2029-08) and a strike on
        :data:`~ibkr_sim.market.options.STRIKE_LADDER`; anything else is IB's error 200, as for
        an unlisted contract.
        """
        under, col = self._optionable(underlying_conid)
        return self.universe.register(options.contract(under, col, expiry, strike, right))

    def _decode_option(self, conid: int) -> Instrument | None:
        """Rebuild an option from its conId (None when the conId is not a valid option's)."""
        return options.decode(conid, self._conid_of_col, self.universe)
