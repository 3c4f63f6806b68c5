"""The column-wise calls of :class:`~ibkr_assets.broker.protocol.Broker` (``quotes_frame``,
``history_frame(s)``, ``news_frame(s)``) for a backend whose requests answer models, one
contract per request (tws: ib_async; webapi: the Client Portal's REST endpoints): each request
as the backend makes it, paced as it is, then converted by the one conversion of
:mod:`~ibkr_assets.broker.models`. The simulator's backend answers them from its arrays instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import pandas as pd

from ibkr_assets.broker import models
from ibkr_assets.broker.batch import frames_each
from ibkr_assets.broker.errors import BrokerError


class _Requests(Protocol):
    def quotes(self, contracts: Sequence[models.Contract]) -> list[models.Quote]: ...

    def history(
        self,
        contract: models.Contract,
        duration: str = ...,
        bar_size: str = ...,
        what_to_show: str = ...,
        end: datetime | None = ...,
        use_rth: bool = ...,
    ) -> list[models.Bar]: ...

    def news(
        self,
        contract: models.Contract,
        start: datetime | None = ...,
        end: datetime | None = ...,
        limit: int = ...,
    ) -> list[models.NewsHeadline]: ...


class FramesFromRequests:
    """Mixed into a backend with per-contract ``quotes``, ``history`` and ``news``."""

    def quotes_frame(self: _Requests, contracts: Sequence[models.Contract]) -> pd.DataFrame:
        return models.frame_of_quotes(self.quotes(contracts))

    def history_frame(
        self: _Requests,
        contract: models.Contract,
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> pd.DataFrame:
        bars = self.history(contract, duration, bar_size, what_to_show, end, use_rth)
        return models.frame_of_bars(bars)

    def history_frames(
        self,
        contracts: Sequence[models.Contract],
        duration: str = "1 Y",
        bar_size: str = "1 day",
        what_to_show: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = True,
    ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
        def one(contract: models.Contract) -> pd.DataFrame:
            return self.history_frame(contract, duration, bar_size, what_to_show, end, use_rth)

        return frames_each(contracts, one, models.frame_of_bars([]))

    def news_frame(
        self: _Requests,
        contract: models.Contract,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> pd.DataFrame:
        return models.frame_of_headlines(self.news(contract, start, end, limit))

    def news_frames(
        self,
        contracts: Sequence[models.Contract],
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
    ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
        def one(contract: models.Contract) -> pd.DataFrame:
            return self.news_frame(contract, start, end, limit)

        return frames_each(contracts, one, models.frame_of_headlines([]))
