"""The tws backend's column-wise reading of IB's historicalData message (broker/tws/history.py):
the bars it yields are the ones ib_async's per-bar decoding gave the backend (dates, stamps at
the session's close, IB's unset numbers), as models and as a frame."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from ibkr_assets.broker.models import BAR_COLUMNS
from ibkr_assets.broker.timeutil import session_close_utc
from ibkr_assets.broker.tws.history import columns_frame, decode
from ibkr_assets.broker.tws.wire import UNSET


def _message(*bars: tuple[str, ...]) -> list[str]:
    return ["17", "9", "start", "end", str(len(bars)), *(f for bar in bars for f in bar)]


DAILY = _message(
    ("20240603", "190.5", "192.25", "189.0", "191.75", "5000000.0", "191.0", "20000"),
    ("20241202", "240.0", "241.0", "239.5", "240.5", "4000000.0", repr(UNSET), "0"),
)


def test_daily_bars_are_sessions_stamped_at_their_close() -> None:
    bars = decode(DAILY).bars()
    assert [b.session for b in bars] == [date(2024, 6, 3), date(2024, 12, 2)]
    assert [b.time for b in bars] == [
        session_close_utc(date(2024, 6, 3)),  # 20:00 UTC in summer
        session_close_utc(date(2024, 12, 2)),  # 21:00 UTC in winter
    ]
    first, second = bars
    assert (first.open, first.high, first.low, first.close) == (190.5, 192.25, 189.0, 191.75)
    assert (first.volume, first.wap, first.bar_count) == (5_000_000.0, 191.0, 20000)
    assert second.wap is None and second.bar_count is None, "IB's unset numbers read as none"


def test_the_frame_holds_the_models_values() -> None:
    columns = decode(DAILY)
    frame = columns.frame()
    bars = columns.bars()
    assert list(frame["time"]) == [b.time for b in bars]
    assert list(frame["session"].dt.date) == [b.session for b in bars]
    assert frame["close"].tolist() == [191.75, 240.5]


def test_a_session_still_open_is_stamped_with_the_answers_instant() -> None:
    at = datetime(2024, 12, 2, 15, 0, tzinfo=UTC)  # before the 21:00 UTC close
    bars = decode(DAILY).as_of(at).bars()
    assert bars[-1].time == at and bars[-1].session == date(2024, 12, 2)
    assert bars[0].time == session_close_utc(date(2024, 6, 3)), "closed sessions keep theirs"
    later = datetime(2024, 12, 3, tzinfo=UTC)
    assert decode(DAILY).as_of(later).bars() == decode(DAILY).bars()


def test_volume_is_minus_one_unless_trades() -> None:
    columns = decode(DAILY)
    assert np.array_equal(columns.traded("MIDPOINT").volume, [-1.0, -1.0])
    assert columns.traded("TRADES") is columns


def test_intraday_bars_are_epoch_seconds_without_a_session() -> None:
    start = datetime(2024, 6, 3, 13, 30, tzinfo=UTC)
    stamp = str(int(start.timestamp()))
    columns = decode(_message((stamp, "1", "2", "0.5", "1.5", "100.0", "1.25", "3")))
    (bar,) = columns.bars()
    assert bar.time == start and bar.session is None
    assert not columns.daily
    dated = decode(
        _message(("20240603 09:30:00 US/Eastern", "1", "2", "0.5", "1.5", "100.0", "1", "3"))
    )
    assert dated.bars()[0].time == start, "IB's dated text, read in its zone"


def test_messages_with_the_same_sessions_get_arrays_of_their_own() -> None:
    """The closes of a run of sessions are computed once for every symbol answering them; each
    message's columns are still its own arrays (one changed leaves the other as decoded)."""
    first, second = decode(DAILY), decode(DAILY)
    assert np.array_equal(first.time, second.time)
    assert first.time is not second.time and first.session is not second.session
    first.time[0] = np.datetime64("2000-01-01T00:00:00", "ns")
    first.session[0] = np.datetime64("2000-01-01", "ns")
    assert decode(DAILY).bars() == second.bars()
    assert second.bars()[0].session == date(2024, 6, 3)


def test_the_numbers_are_read_as_float_reads_them() -> None:
    """Each price and volume field is read as Python's float() reads its text (signed zero,
    overflow to infinity, spaces, digit separators), field by field in bar order."""
    odd = ("20240603", "-0", "1e400", " 2.5", "1_000.25", "-1", "nan", "7")
    columns = decode(_message(odd, DAILY[5:13]))
    assert np.signbit(columns.open[0]) and columns.open[0] == 0.0
    assert columns.high[0] == np.inf and columns.low[0] == 2.5 and columns.close[0] == 1000.25
    assert columns.volume.tolist() == [-1.0, 5_000_000.0] and np.isnan(columns.wap[0])
    assert columns.bar_count.tolist() == [7, 20000]
    assert columns.close.tolist()[1] == 191.75 and columns.wap[1] == 191.0


def test_ibs_number_texts_are_read_bit_for_bit_as_float_reads_them() -> None:
    """The bulk read (one Arrow cast, which takes every text here) gives float()'s double for
    every text IB writes: fixed decimals, exponents, IB's unset number, signed zero, nan and
    infinity."""
    rng = np.random.default_rng(7)
    texts = [repr(UNSET), "-0", "0", "nan", "inf", "-inf", "1e400", "4.9e-324", "-1"]
    prices, decimals = rng.lognormal(3, 3, 4000), rng.integers(0, 9, 4000)
    texts += [f"{x:.{d}f}" for x, d in zip(prices, decimals, strict=True)]
    texts += [repr(float(x)) for x in rng.normal(0, 1e6, 4000)] + [f"{x:e}" for x in rng.random(7)]
    assert len(texts) % 6 == 0
    pa.array(texts).cast(pa.float64())  # no text left to float()
    bars = [("20240603", *texts[i : i + 6], "1") for i in range(0, len(texts), 6)]
    columns = decode(_message(*bars))
    names = ("open", "high", "low", "close", "volume", "wap")
    read = np.stack([getattr(columns, name) for name in names], axis=1).ravel()
    expected = np.array([float(t) for t in texts])
    wap = expected.reshape(-1, 6)[:, 5]
    wap[np.isnan(wap) | (np.abs(wap) >= UNSET)] = np.nan  # IB's unset average: none
    unread = np.isnan(expected)
    assert np.array_equal(np.isnan(read), unread)
    assert np.array_equal(read[~unread].view(np.int64), expected[~unread].view(np.int64))


def test_many_answers_make_one_frame_of_each_answers_frame() -> None:
    """``history_frames``' frame: each answer's frame in order, its conid on its rows."""
    daily, one = decode(DAILY), decode(_message(DAILY[5:13]))
    intraday = decode(_message(("1717423800", "1.0", "2.0", "0.5", "1.5", "10.0", "1.2", "3")))
    frame = columns_frame([(7, daily), (8, one), (9, decode(_message())), (10, intraday)])
    expected = pd.concat(
        [f.frame().assign(conid=k) for k, f in ((7, daily), (8, one), (10, intraday))],
        ignore_index=True,
    )[["conid", *BAR_COLUMNS]]
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    empty = columns_frame([])
    assert list(empty.columns) == ["conid", *BAR_COLUMNS] and empty.empty
    assert empty["conid"].dtype == np.int64
