"""A snapshot of a few contracts is computed column by column in Python floats, of many as numpy
arrays (:mod:`ibkr_sim.market.quotes`): both must give the same numbers to the last bit, for
every instrument (stocks, ETFs, FX, indices) during a session, before the open, after the close
and on an early close."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ibkr_sim.market import SimMarket
from ibkr_sim.market.quotes import FEW_COLUMNS, SNAPSHOT_COLUMNS, panel_snapshots

#: mid-session between minute marks, a minute mark, before the open, after the close, an early
#: close (the day after Thanksgiving) and the first minute of a session
INSTANTS = (
    datetime(2026, 11, 20, 15, 30, 41, 250_000, tzinfo=UTC),
    datetime(2026, 11, 20, 18, 7, tzinfo=UTC),
    datetime(2026, 11, 20, 13, 0, tzinfo=UTC),
    datetime(2026, 11, 20, 22, 0, tzinfo=UTC),
    datetime(2026, 11, 27, 17, 59, 59, 999_999, tzinfo=UTC),
    datetime(2026, 11, 23, 14, 30, 0, 1, tzinfo=UTC),
)


def _bits(values: list[float]) -> list[str]:
    return [float(v).hex() for v in values]


@pytest.mark.parametrize("at", INSTANTS, ids=lambda at: at.isoformat())
def test_one_column_at_a_time_equals_all_at_once(market: SimMarket, at: datetime) -> None:
    conids = list(market._cols)
    cols = np.array([market._cols[c] for c in conids], dtype=np.int64)
    assert len(cols) > FEW_COLUMNS  # the arrays' path
    together = panel_snapshots(market.seed, market.edge, conids, cols, at)
    for k in range(0, len(conids), FEW_COLUMNS):  # the floats' path, FEW_COLUMNS at a time
        alone = panel_snapshots(
            market.seed, market.edge, conids[k : k + FEW_COLUMNS], cols[k : k + FEW_COLUMNS], at
        )
        for a, b in zip(alone, together[k : k + FEW_COLUMNS], strict=True):
            assert (a.conid, a.time) == (b.conid, b.time)
            assert _bits([getattr(a, f) for f in SNAPSHOT_COLUMNS]) == _bits(
                [getattr(b, f) for f in SNAPSHOT_COLUMNS]
            ), f"conid {a.conid} at {at.isoformat()}"
            assert all(type(getattr(a, f)) is float for f in SNAPSHOT_COLUMNS)
