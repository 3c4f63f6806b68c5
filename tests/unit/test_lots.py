"""US round lots tiered by price (ibkr_spec.lots), and the simulated world serving them."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ibkr_assets.broker.sim.backend import SimBroker
from ibkr_sim.exchange import PaperExchange
from ibkr_sim.market import SimMarket
from ibkr_spec.lots import round_lot

OPEN = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("price", "lot"),
    [
        (0.5, 100),
        (250.0, 100),
        (250.01, 40),
        (1_000.0, 40),
        (1_000.01, 10),
        (1_379.0, 10),
        (10_000.0, 10),
        (10_000.01, 1),
        (650_000.0, 1),
    ],
)
def test_round_lot_follows_the_sec_tiers(price: float, lot: int) -> None:
    assert round_lot(price) == lot


@pytest.mark.parametrize("price", [0.0, -5.0, math.nan, math.inf])
def test_round_lot_refuses_a_price_that_is_not_positive(price: float) -> None:
    with pytest.raises(ValueError, match="positive finite price"):
        round_lot(price)


def test_sim_quotes_and_contract_details_use_the_tier_of_the_previous_close(tmp_path: Path) -> None:
    market = SimMarket(seed=7, n_stocks=60)
    snaps = market.snapshots([s.conid for s in market.universe.stocks], OPEN)
    tiers = {round_lot(s.prev_close) for s in snaps}
    assert {100, 40, 10} <= tiers, tiers  # the seed's world has names in three tiers
    for s in snaps:
        lot = round_lot(s.prev_close)
        assert s.bid_size % lot == 0 and s.ask_size % lot == 0 and s.bid_size >= lot
    bids, _ = market.depth(snaps[0].conid, OPEN, rows=4)
    assert all(size % round_lot(snaps[0].prev_close) == 0 for _, size, _ in bids)
    exchange = PaperExchange(market, tmp_path / "paper.sqlite", clock=lambda: OPEN)
    broker = SimBroker(market, exchange, clock=lambda: OPEN)
    ten = next(s for s in snaps if round_lot(s.prev_close) == 10)
    inst = market.universe.by_conid(ten.conid)
    details = broker.contract_details(broker.resolve(inst.symbol))
    assert details.lot_size == 10, (inst.symbol, ten.prev_close)
