"""The replay's bulk requests give what one request at a time gives: news in few requests within
IB's cap of 300 headlines, contract details and quotes of many contracts at once (sim backend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from ibkr_assets.assets.market_data import (
    IB_MAX_NEWS,
    QUOTE_CHUNK,
    quote_frame,
)
from ibkr_assets.assets.news_history import headline_frame
from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.frames import frame_of_headlines
from ibkr_assets.broker.models import Contract, NewsHeadline
from ibkr_assets.broker.sim.backend import SimBroker, shared_market
from ibkr_sim.exchange import PaperExchange

#: Friday 2026-11-20, 10:30 in New York
OPEN = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


class _Counting:
    """A broker's news requests (one a contract), counted; each answer must keep IB's cap.
    ``market_data_in_process``: whether it is asked for many contracts at once."""

    def __init__(self, broker: SimBroker, in_process: bool) -> None:
        self.broker, self.requests, self.market_data_in_process = broker, 0, in_process

    def news_frames(
        self, contracts: list[Contract], start: datetime, end: datetime, limit: int
    ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
        self.requests += len(contracts)
        assert limit <= IB_MAX_NEWS and (self.market_data_in_process or len(contracts) == 1)
        return self.broker.news_frames(contracts, start=start, end=end, limit=limit)

    def news(
        self, contract: Contract, start: datetime, end: datetime, limit: int
    ) -> list[NewsHeadline]:
        self.requests += 1
        assert limit <= IB_MAX_NEWS
        return self.broker.news(contract, start=start, end=end, limit=limit)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> SimBroker:
    market = shared_market(7, 60)
    state = tmp_path_factory.mktemp("sim") / "paper.sqlite"
    return SimBroker(market, PaperExchange(market, state, clock=lambda: OPEN), clock=lambda: OPEN)


@pytest.mark.parametrize("in_process", [True, False])
def test_headline_frame_pages_through_ibs_cap_span_by_span(
    broker: SimBroker, in_process: bool
) -> None:
    """Four years of 30-day spans: one request per span (the old way, each span under the cap)
    and the frame asked span after span in pages of 300 hold the same rows in the same order,
    from a few requests per symbol, whether the symbols are asked together or one by one."""
    contracts = [broker.resolve(s.symbol) for s in broker.market.universe.stocks[:3]]
    edges = [OPEN - timedelta(days=30 * k) for k in range(49, -1, -1)]
    spans = list(pairwise(edges))
    rows = []
    for c in contracts:
        for start, end in spans:
            answer = broker.news(c, start=start, end=end, limit=IB_MAX_NEWS)
            assert len(answer) < IB_MAX_NEWS
            rows += [
                (c.symbol, h.time, h.headline, h.provider_code, h.article_id)
                for h in answer
                if start <= h.time < end
            ]
    counting = _Counting(broker, in_process)
    frame, failed = headline_frame(counting, contracts, spans, workers=1)  # type: ignore[arg-type]
    assert not failed
    assert len(rows) > 3 * IB_MAX_NEWS  # some symbol needs more than one page
    assert list(frame.itertuples(index=False, name=None)) == [
        (s, pd.Timestamp(t), *rest) for s, t, *rest in rows
    ]
    assert len(contracts) < counting.requests <= 3 * len(contracts)


@pytest.mark.parametrize("in_process", [True, False])
def test_a_full_page_at_one_instant_is_the_symbols_error(in_process: bool) -> None:
    at = datetime(2024, 1, 2, 14, tzinfo=UTC)
    same = [
        NewsHeadline(
            time=at, provider_code="BZ", article_id=f"BZ${i}", headline="x", conid=1, symbol="X"
        )
        for i in range(IB_MAX_NEWS)
    ]

    class Flood:
        market_data_in_process = in_process

        def news_frames(
            self, contracts: list[Contract], start: datetime, end: datetime, limit: int
        ) -> tuple[pd.DataFrame, dict[int, BrokerError]]:
            return frame_of_headlines(same[:limit]).assign(conid=1), {}

        def news(
            self, contract: Contract, start: datetime, end: datetime, limit: int
        ) -> list[NewsHeadline]:
            return same[:limit]

    x = Contract(conid=1, symbol="X", sec_type="STK")
    frame, failed = headline_frame(Flood(), [x], [(at - timedelta(days=1), at)], 1)  # type: ignore[arg-type]
    assert frame.empty and list(failed) == ["X"]
    assert "more than 300 headlines at" in failed["X"] and "shorter span" in failed["X"]


def test_headline_frame_refuses_overlapping_spans(broker: SimBroker) -> None:
    spans = [(OPEN - timedelta(days=10), OPEN), (OPEN - timedelta(days=20), OPEN)]
    with pytest.raises(ValueError, match="disjoint and in time order"):
        headline_frame(broker, [], spans, workers=1)


def test_sim_bulk_details_and_quotes_are_the_single_ones(broker: SimBroker, tmp_path: Path) -> None:
    contracts = [broker.resolve(s.symbol) for s in broker.market.universe.stocks[:20]]
    contracts.append(broker.resolve("SPY"))
    for hours in (True, False):
        bulk = broker.contract_details_many(contracts, hours=hours)
        single = [broker.contract_details(c) for c in contracts]
        if not hours:
            single = [
                d.model_copy(update={"trading_hours": [], "liquid_hours": []}) for d in single
            ]
        assert bulk == single
    assert broker.quotes(contracts) == [broker.quotes([c])[0] for c in contracts]
    # an unknown contract makes the bulk answer fall back to one by one, its error in its place
    mixed = broker.contract_details_many(
        [contracts[0], Contract(conid=1, symbol="NOPE", sec_type="STK")]
    )
    assert mixed[0] == broker.contract_details(contracts[0])
    assert isinstance(mixed[1], BrokerError)


def test_quote_frame_asks_an_in_process_backend_once(broker: SimBroker) -> None:
    """An in-process backend is asked for every contract in one request (a replay asks for 700
    names on each of 127 sessions); any other in chunks of QUOTE_CHUNK; the same frame."""
    contracts = [broker.resolve(s.symbol) for s in broker.market.universe.stocks[:60]] * 4

    class Counting:
        def __init__(self, in_process: bool) -> None:
            self.market_data_in_process, self.sizes = in_process, []

        def quotes_frame(self, chunk: list[Contract]) -> pd.DataFrame:
            self.sizes.append(len(chunk))
            return broker.quotes_frame(chunk)

    local, remote = Counting(True), Counting(False)
    frame, missing = quote_frame(local, contracts)  # type: ignore[arg-type]
    chunked, _ = quote_frame(remote, contracts)  # type: ignore[arg-type]
    assert local.sizes == [240] and remote.sizes == [QUOTE_CHUNK, QUOTE_CHUNK, 40]
    assert not missing and len(frame) == 240
    pd.testing.assert_frame_equal(frame, chunked)
