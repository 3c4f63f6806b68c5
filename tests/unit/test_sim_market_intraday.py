"""The simulated market within a session: minute bars that rebuild the daily bar, quotes
before, during and after the session, depth, history at IB's bar sizes, and scanners that rank
like the quotes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ibkr_sim.market import SimMarket
from ibkr_spec.errors import IBError
from ibkr_spec.historical import parse_bar_size, start_of
from tests.sim_direct import AFTER_CLOSE, DAY, OPEN, PRE_OPEN, _conid

# -- intraday --------------------------------------------------------------------------------


def test_minute_bars_rebuild_the_daily_bar(market: SimMarket) -> None:
    for symbol in ("AAPL", "TSLA", "MDB"):
        conid = _conid(market, symbol)
        day = market.daily_bars(conid, DAY, DAY).iloc[0]
        bars = market.intraday_bars(conid, DAY, 1)
        assert len(bars) == 390 and bars.index[0] == pd.Timestamp("2026-11-20 14:30", tz="UTC")
        assert bars["open"].iloc[0] == day["open"] and bars["close"].iloc[-1] == day["close"]
        assert bars["high"].max() == day["high"] and bars["low"].min() == day["low"]
        np.testing.assert_allclose(bars["volume"].sum(), day["volume"], rtol=1e-3)
        hourly = market.intraday_bars(conid, DAY, 60)
        assert len(hourly) == 7 and hourly["high"].max() == day["high"]


def test_early_close_session_is_shorter(market: SimMarket) -> None:
    bars = market.intraday_bars(_conid(market, "AAPL"), date(2026, 11, 27), 1)
    assert len(bars) == 210  # 09:30-13:00 the day after Thanksgiving


def test_snapshots_in_session_are_consistent(market: SimMarket) -> None:
    ids = [s.conid for s in market.universe.all()]
    snaps = market.snapshots(ids, OPEN)
    assert [s.conid for s in snaps] == ids
    for s in snaps:
        inst = market.universe.by_conid(s.conid)
        day = market.daily_bars(s.conid, DAY, DAY).iloc[0]
        assert 0 < s.bid < s.ask and s.low <= s.last <= s.high, inst.symbol
        assert day["low"] <= s.low <= s.high <= day["high"]
        assert s.open == day["open"]
        assert 0 < s.volume < day["volume"] or inst.adv == 0
        assert (s.bid <= s.last + 1e-9 and s.last <= s.ask + 1e-9) or inst.adv == 0
        if inst.sec_type == "STK":
            assert (s.ask - s.bid) / s.last < 0.01 and s.bid_size > 0 and s.ask_size > 0
    later = market.snapshots(ids, OPEN + timedelta(hours=2))
    assert all(b.volume >= a.volume for a, b in zip(snaps, later, strict=True))


def test_snapshot_before_the_open_and_after_the_close(market: SimMarket) -> None:
    aapl = _conid(market, "AAPL")
    bars = market.daily_bars(aapl, date(2026, 11, 18), DAY)
    pre = market.snapshot(aapl, PRE_OPEN)
    assert pre.last == pre.prev_close == bars["close"].iloc[-2] and pre.volume == 0
    assert pre.bid < pre.last < pre.ask
    post = market.snapshot(aapl, AFTER_CLOSE)
    assert post.last == bars["close"].iloc[-1] and post.prev_close == bars["close"].iloc[-2]
    assert post.volume == bars["volume"].iloc[-1] and post.high == bars["high"].iloc[-1]
    weekend = market.snapshot(aapl, datetime(2026, 11, 22, 15, tzinfo=UTC))
    assert weekend.last == post.last and weekend.volume == post.volume


def test_snapshot_outside_the_simulated_years_is_354(market: SimMarket) -> None:
    with pytest.raises(IBError) as err:
        market.snapshot(_conid(market, "AAPL"), datetime(2015, 1, 5, 15, tzinfo=UTC))
    assert err.value.code == 354
    with pytest.raises(IBError) as err:
        market.snapshot(424242, OPEN)
    assert err.value.code == 200


def test_depth_level_zero_is_the_quote(market: SimMarket) -> None:
    nvda = _conid(market, "NVDA")
    bids, asks = market.depth(nvda, OPEN, rows=5)
    snap = market.snapshot(nvda, OPEN)
    assert (bids[0][0], bids[0][1], asks[0][0], asks[0][1]) == (
        snap.bid,
        snap.bid_size,
        snap.ask,
        snap.ask_size,
    )
    assert len(bids) == len(asks) == 5
    assert [b[0] for b in bids] == sorted((b[0] for b in bids), reverse=True)
    assert [a[0] for a in asks] == sorted(a[0] for a in asks)
    assert len({b[0] for b in bids}) == 5 and all(b[1] > 0 and b[2] for b in bids + asks)
    aapl = _conid(market, "AAPL")
    expiry = market.option_chain(aapl, DAY)[0][0]
    call = market.option(aapl, expiry, 500.0, "C")
    (obid, *_), (oask, *_) = market.depth(call.conid, OPEN, rows=3)
    quote = market.snapshot(call.conid, OPEN)
    assert (obid[0], obid[1], oask[0], oask[1]) == (
        quote.bid,
        quote.bid_size,
        quote.ask,
        quote.ask_size,
    )


def test_history_follows_ib_bar_sizes(market: SimMarket) -> None:
    aapl = _conid(market, "AAPL")
    daily = market.history(aapl, start_of(OPEN, "1 Y"), OPEN, parse_bar_size("1 day"))
    assert 245 <= len(daily) <= 256 and daily.index[-1] == pd.Timestamp(
        "2026-11-19 21:00", tz="UTC"
    )
    weekly = market.history(aapl, start_of(OPEN, "3 M"), OPEN, parse_bar_size("1 week"))
    assert weekly["high"].max() == daily.loc[weekly.index[0] - timedelta(days=6) :, "high"].max()
    mins = market.history(aapl, start_of(OPEN, "1 D"), OPEN, parse_bar_size("5 mins"))
    assert (mins.index + timedelta(minutes=5) <= OPEN).all() and len(mins) == 66 + 12
    bid = market.history(aapl, start_of(OPEN, "1 M"), OPEN, parse_bar_size("1 day"), "BID")
    ask = market.history(aapl, start_of(OPEN, "1 M"), OPEN, parse_bar_size("1 day"), "ASK")
    assert (bid["close"] < ask["close"]).all()
    weekend = datetime(2026, 11, 22, tzinfo=UTC)
    empty = market.history(aapl, weekend - timedelta(days=1), weekend, parse_bar_size("1 min"))
    assert empty.empty and list(empty.columns) == ["open", "high", "low", "close", "volume"]
    secs = market.history(aapl, start_of(OPEN, "1800 S"), OPEN, parse_bar_size("5 secs"))
    minute = market.intraday_bars(aapl, DAY, 1).loc[secs.index[0] : secs.index[-1]]
    assert len(secs) == 360 and secs.index[-1] == OPEN - timedelta(seconds=5)
    assert (secs["low"] <= secs[["open", "close"]].min(axis=1)).all()
    assert secs["high"].max() <= minute["high"].max() and secs["low"].min() >= minute["low"].min()
    np.testing.assert_allclose(secs["volume"].sum(), minute["volume"].sum(), rtol=0.01)
    with pytest.raises(IBError) as err:
        market.history(424242, start_of(OPEN, "60 S"), OPEN, parse_bar_size("5 secs"))
    assert err.value.code == 200


# -- scanners ----------------------------------------------------------------------------------


def test_scanners_rank_like_the_quotes(market: SimMarket) -> None:
    ids = [s.conid for s in market.universe.stocks]
    snaps = {s.conid: s for s in market.snapshots(ids, OPEN)}
    gain = market.scan("TOP_PERC_GAIN", OPEN, limit=50)
    lose = market.scan("TOP_PERC_LOSE", OPEN, limit=50)
    active = market.scan("MOST_ACTIVE", OPEN, limit=20)
    hot = market.scan("HOT_BY_VOLUME", OPEN, limit=20)
    assert len(gain) == 50 and [r.rank for r in gain] == list(range(50))
    changes = {c: (s.last / s.prev_close - 1) * 100 for c, s in snaps.items()}
    expected = sorted((c for c in ids if changes[c] > 0), key=lambda c: -changes[c])[:50]
    assert [r.conid for r in gain] == expected
    assert [r.change_pct for r in lose] == sorted(r.change_pct for r in lose) and lose[
        0
    ].change_pct < 0
    assert gain[0].change_pct > 3 and lose[0].change_pct < -3
    assert [r.volume for r in active] == sorted((r.volume for r in active), reverse=True)
    assert active[0].volume == max(s.volume for s in snaps.values())
    rel = [r.volume / r.avg_volume for r in hot]
    assert rel == sorted(rel, reverse=True) and rel[0] > 1
    for r in gain[:5]:
        np.testing.assert_allclose(r.last, snaps[r.conid].last)


def test_scanner_filters(market: SimMarket) -> None:
    rows = market.scan(
        "MOST_ACTIVE",
        OPEN,
        above_price=50,
        below_price=200,
        above_volume=1e6,
        market_cap_above=2e10,
        limit=50,
    )
    assert rows
    for r in rows:
        inst = market.universe.by_conid(r.conid)
        assert 50 < r.last < 200 and r.volume > 1e6 and r.last * inst.shares_outstanding > 2e10
    small = market.scan("TOP_PERC_GAIN", OPEN, market_cap_below=2e10, limit=10)
    assert all(r.last * market.universe.by_conid(r.conid).shares_outstanding < 2e10 for r in small)
    nasdaq = market.scan("MOST_ACTIVE", OPEN, location="STK.NASDAQ", limit=10)
    assert all(market.universe.by_conid(r.conid).primary_exchange == "NASDAQ" for r in nasdaq)
    assert market.scan("TOP_PERC_GAIN", OPEN, above_price=1e9) == []


def test_pre_market_scan_shows_the_last_session(market: SimMarket) -> None:
    rows = market.scan("TOP_PERC_GAIN", PRE_OPEN, limit=5)
    previous = market.scan("TOP_PERC_GAIN", datetime(2026, 11, 19, 22, tzinfo=UTC), limit=5)
    assert rows == previous and rows[0].volume > 0


@pytest.mark.parametrize(
    ("code", "location"), [("TOP_GAINERS", "STK.US.MAJOR"), ("MOST_ACTIVE", "FUT.US")]
)
def test_unknown_scanner_code_or_location_is_321(
    market: SimMarket, code: str, location: str
) -> None:
    with pytest.raises(IBError) as err:
        market.scan(code, OPEN, location=location)
    assert err.value.code == 321 and (code in str(err.value) or location in str(err.value))
