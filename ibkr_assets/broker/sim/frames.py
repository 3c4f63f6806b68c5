"""The column-wise market-data calls of the sim backend (``quotes_frame``, ``history_frame(s)``,
``news_frame(s)``) answered from the simulated market's arrays: quotes from its snapshot columns,
daily bars of many contracts from one slice of its price panel, headlines as columns, framed once,
instead of one model per answer.

:class:`SimFrames` is mixed into :class:`~ibkr_assets.broker.sim.backend.SimBroker`, which sets
what it uses: ``market`` (the :class:`~ibkr_sim.market.SimMarket`), ``now()`` (the broker's
clock), ``_check_open()``, ``_instrument()`` (a contract's simulated instrument) and ``quotes()``
(the per-contract fallback when a contract has no panel column)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ibkr_assets.broker import frames, models
from ibkr_assets.broker.batch import frames_each
from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.sim.convert import (
    bar_frame_as_of,
    bar_frames_as_of,
    headline_frame_of,
    headline_frames_of,
    ib_errors,
)
from ibkr_sim.market import SimMarket
from ibkr_sim.market.news import NewsColumns
from ibkr_spec import historical

if TYPE_CHECKING:
    from ibkr_sim.universe import Instrument


class SimFrames:
    """The column-wise calls answered from the simulated market's arrays; mixed into
    :class:`~ibkr_assets.broker.sim.backend.SimBroker`, whose ``market``, ``now``,
    ``_check_open``, ``_instrument`` and ``quotes`` it uses."""

    market: SimMarket

    if TYPE_CHECKING:

        def now(self) -> datetime: ...

        def _check_open(self) -> None: ...

        def _instrument(self, contract: models.Contract) -> Instrument: ...

        def quotes(self, contracts: Sequence[models.Contract]) -> list[models.Quote]: ...

    def quotes_frame(self, contracts: Sequence[models.Contract]) -> pd.DataFrame:
        """Built from the simulator's arrays when every contract has a panel column (any but
        an option), else from :meth:`quotes`."""
        self._check_open()
        now = self.now()
        with ib_errors():
            columns = self.market.snapshot_columns([c.conid for c in contracts], now)
        if columns is None:
            return frames.frame_of_quotes(self.quotes(contracts))
        at = pd.Timestamp(now).tz_convert("UTC").tz_localize(None)
        return frames.quote_frame(contracts, at, columns | {"close": columns["prev_close"]}, 1)

    def history_frame(
        self,
        contract: models.Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> pd.DataFrame:
        frame, daily, end = self._history(contract, duration, bar_size, what_to_show, end)
        return bar_frame_as_of(frame, what_to_show, daily, end)

    def history_frames(
        self,
        contracts: Sequence[models.Contract],
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
        """Daily TRADES or MIDPOINT bars of contracts that all have a price history from one
        slice of the simulator's panel; any other request one :meth:`history_frame` per
        contract."""
        self._check_open()
        end = min(end or self.now(), self.now())
        found = self._daily_columns(contracts, duration, bar_size, what_to_show, end)
        if found is None:
            return frames_each(
                contracts,
                lambda c: self.history_frame(c, duration, bar_size, what_to_show, end, use_rth),
                frames.frame_of_bars([]),
            )
        frame = bar_frames_as_of(*found, what_to_show, True, end)
        times = len(found[0])
        frame.insert(0, "conid", np.repeat(np.array([c.conid for c in contracts]), times))
        return frame, {}

    def _daily_columns(
        self,
        contracts: Sequence[models.Contract],
        duration: str,
        bar_size: str,
        what_to_show: str,
        end: datetime,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """The simulator's daily bars of every contract at once (UTC ns of the bars,
        OHLCV (bars, contracts)); None unless the request is for daily TRADES or MIDPOINT bars
        and every contract has a price history (then each is asked alone, for its own answer
        or error)."""
        if not contracts or bar_size != "1 day" or what_to_show not in ("TRADES", "MIDPOINT"):
            return None
        try:
            span, _ = models.history_spec(contracts[0].symbol, duration, bar_size, what_to_show)
            conids = [self._instrument(c).conid for c in contracts]
            with ib_errors():
                return self.market.daily_session_history(conids, end, span)
        except BrokerError:
            return None

    def _history(
        self,
        contract: models.Contract,
        duration: str,
        bar_size: str,
        what_to_show: str,
        end: datetime | None,
    ) -> tuple[pd.DataFrame, bool, datetime]:
        """The simulator's OHLCV frame (index: bar time, UTC) a history request asks for,
        whether its bars are daily (or longer), and the request's end."""
        self._check_open()
        inst = self._instrument(contract)
        end = min(end or self.now(), self.now())
        span, size = models.history_spec(contract.symbol, duration, bar_size, what_to_show)
        with ib_errors():
            if size.is_daily:  # trading sessions, today's bar so far included, as the gateway
                _, frame = self.market.session_history(inst.conid, end, span, size, what_to_show)
            else:
                start = historical.start_of(end, span)
                frame = self.market.history(
                    inst.conid, start=start, end=end, bar_size=size, what_to_show=what_to_show
                )
        return frame, size.is_daily, end

    def news_frame(
        self,
        contract: models.Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> pd.DataFrame:
        return self._news(contract, start, end, limit)

    def news_frames(
        self,
        contracts: Sequence[models.Contract],
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
        """Every contract's headlines drawn together as columns and framed once for all."""
        self._check_open()
        known: list[int] = []
        failed: dict[int, BrokerError] = {}
        for contract in contracts:
            try:
                known.append(self._instrument(contract).conid)
            except BrokerError as exc:
                failed[contract.conid] = exc
        end, start = self._news_span(start, end)
        with ib_errors():
            drawn = self.market.news_columns_many(known, start, end)
        found = [(c, _newest(d, limit)) for c, d in zip(known, drawn, strict=True)]
        return headline_frames_of(found), failed

    def _news(
        self, contract: models.Contract, start: datetime | None, end: datetime | None, limit: int
    ) -> pd.DataFrame:
        """The newest ``limit`` headlines of a news request, newest first, as a headline frame
        (:data:`~ibkr_assets.broker.models.HEADLINE_COLUMNS`)."""
        self._check_open()
        return headline_frame_of(self._newest(contract, start, end, limit))

    def _newest(
        self, contract: models.Contract, start: datetime | None, end: datetime | None, limit: int
    ) -> NewsColumns:
        """The simulator's newest ``limit`` headlines of a news request, newest first."""
        inst = self._instrument(contract)
        end, start = self._news_span(start, end)
        with ib_errors():
            return _newest(self.market.news_columns(inst.conid, start, end), limit)

    def _news_span(self, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
        """A news request's (end, start): ``end`` at most now (default now), ``start`` by
        default a day before it."""
        end = min(end or self.now(), self.now())
        return end, start or end - timedelta(days=1)


def _newest(found: NewsColumns, limit: int) -> NewsColumns:
    """The newest ``limit`` of ``found``'s headlines, newest first."""
    return found.take(np.argsort(-found.time_ns, kind="stable")[:limit])
