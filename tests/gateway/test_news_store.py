"""The gateway's headline store answers what the market answers one stock at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ibkr_assets.broker.sim.backend import shared_market
from ibkr_sim.gateway import news
from ibkr_sim.gateway.news import NewsStore

END = datetime(2024, 6, 3, 13, 30, tzinfo=UTC)
START = END - timedelta(days=31)


def test_the_store_serves_each_stock_what_it_draws_alone() -> None:
    market = shared_market(7, 150)
    store = NewsStore()
    stocks = [inst.conid for inst in market.universe.stocks]
    etf = next(i.conid for i in market.universe.others if i.is_etf)
    for conid in [*stocks[::7], stocks[-1], etf]:
        got = store.columns(market, conid, START, END)
        alone = market.news_columns(conid, START, END)
        assert (got.conid, got.symbol) == (alone.conid, alone.symbol)
        for name in ("time_ns", "provider_code", "article_id", "headline", "tone"):
            assert np.array_equal(getattr(got, name), getattr(alone, name)), (conid, name)
    assert sum(len(store.columns(market, c, START, END)) for c in stocks) > len(stocks)


def test_the_store_keeps_its_last_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    market = shared_market(7, 150)
    monkeypatch.setattr(news, "KEPT_BLOCKS", 2)
    store = NewsStore()
    stocks = [inst.conid for inst in market.universe.stocks]
    for days in range(1, 5):
        store.columns(market, stocks[0], END - timedelta(days=days), END)
    assert len(store._blocks) == 2
