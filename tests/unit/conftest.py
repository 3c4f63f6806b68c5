"""Fixtures shared by the unit tests split across several files: the order guard's data
directory, the simulated market and the paper exchange used directly (their helpers are
tests/order_guard_sim.py and tests/sim_direct.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ibkr_sim.exchange import PaperExchange
from ibkr_sim.market import SimMarket
from tests.sim_direct import OPEN, Clock


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory (the order-guard tests' simulator keeps its account there)."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def market() -> SimMarket:
    """The 700-stock simulated market of seed 7, built once per test module."""
    return SimMarket(seed=7, n_stocks=700)


@pytest.fixture
def clock() -> Clock:
    """The exchange's clock, at :data:`OPEN` until a test moves it."""
    return Clock(OPEN)


@pytest.fixture
def ex(market: SimMarket, tmp_path: Path, clock: Clock) -> PaperExchange:
    """A fresh paper exchange on ``tmp_path`` reading ``clock``."""
    return PaperExchange(market, tmp_path / "sim" / "paper.sqlite", clock=clock)
