"""The simulated news drawn for all headlines at once are each headline's own draws."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import numpy as np

from ibkr_sim.market import SimMarket
from ibkr_sim.market.calendar import NEW_YORK, schedule, to_ns
from ibkr_sim.market.news import (
    _AT_ONCE_FROM,
    _OPEN_MINUTE,
    _drawn_one_by_one,
    _session_headlines,
)
from ibkr_sim.market.paths import panel
from ibkr_sim.universe import stable_int


def test_news_drawn_at_once_are_the_one_by_one_draws(market: SimMarket) -> None:
    """Every headline of a few stocks over six years (jump days and strong news included)
    drawn for all at once equals its own generator's draws one by one, and its article id is
    the low 32 bits of stable_int(seed, conid, session, k)."""
    p = panel(market.seed, market.edge)
    first = _OPEN_MINUTE - market.edge.jump_news_lead
    for inst in market.universe.stocks[3:700:97]:
        col = market._cols[inst.conid]
        sessions = np.flatnonzero(p.news_count[:1500, col])
        found = _session_headlines(market.seed, market.edge, [inst], np.array([col]), 0, 1500)[0]
        counts = p.news_count[sessions, col].astype(np.int64)
        rows = np.repeat(sessions, counts)
        ks = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        keys = np.column_stack([np.full(len(rows), col), rows, ks])
        base = p.news_tone[rows, col].astype(np.float64)
        insts = [inst] * len(keys)
        one = _drawn_one_by_one(market.seed, insts, keys, base, p.jump[rows, col], first)
        noon = np.array(
            [to_ns(datetime.combine(d, time(12), NEW_YORK)) for d in schedule()[0][rows].tolist()]
        )
        times = noon + (np.array([m for m, *_ in one]) - 12 * 60) * 60_000_000_000
        ids = [
            f"{code}${stable_int(market.seed, inst.conid, t, k) % 2**32:08x}"
            for (_, _, code, _), t, k in zip(one, rows.tolist(), ks.tolist(), strict=True)
        ]
        order = np.lexsort((times, rows))
        assert found.time_ns.tolist() == times[order].tolist()
        assert found.tone.tolist() == [one[i][1] for i in order]
        assert found.provider_code.tolist() == [one[i][2] for i in order]
        assert found.headline.tolist() == [one[i][3] for i in order]
        assert found.article_id.tolist() == [ids[i] for i in order]
        assert p.jump[rows, col].any(), "jump days are among them"


def test_a_short_request_drawn_one_by_one_equals_a_long_one(market: SimMarket) -> None:
    """A request with few headlines (drawn one generator after another) gives the headlines a
    long request (drawn all at once) gives for the same days."""
    end = datetime(2024, 6, 28, 20, tzinfo=UTC)
    for inst in market.universe.stocks[:5]:
        long = market.news_columns(inst.conid, end - timedelta(days=400), end)
        short = market.news_columns(inst.conid, end - timedelta(days=20), end)
        assert len(short) < _AT_ONCE_FROM <= len(long)
        tail = long.take(long.time_ns >= short.time_ns[0])
        for field in ("time_ns", "provider_code", "article_id", "headline", "tone"):
            assert getattr(short, field).tolist() == getattr(tail, field).tolist(), field


def test_stocks_drawn_together_are_each_drawn_alone(market: SimMarket) -> None:
    """Many stocks' headlines drawn together (one request of a backend asking for all, an ETF
    and a long and a short span among them) are each stock's headlines asked alone."""
    end = datetime(2024, 6, 28, 20, tzinfo=UTC)
    etf = market.universe.lookup("SPY", "STK")
    conids = [*(i.conid for i in market.universe.stocks[::37]), etf.conid]
    for days in (10, 400):
        together = market.news_columns_many(conids, end - timedelta(days=days), end)
        assert len(together) == len(conids) and len(together[-1]) == 0
        assert sum(len(t) for t in together) > (5 * _AT_ONCE_FROM if days > 10 else 0)
        for conid, found in zip(conids, together, strict=True):
            alone = market.news_columns(conid, end - timedelta(days=days), end)
            assert (found.conid, found.symbol) == (alone.conid, alone.symbol)
            for field in ("time_ns", "provider_code", "article_id", "headline", "tone"):
                assert getattr(found, field).tolist() == getattr(alone, field).tolist(), field
