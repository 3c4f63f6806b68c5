"""The keyed draws of the simulated news (ibkr_sim.market.seeded) are numpy's own, call for call."""

from __future__ import annotations

import numpy as np
import pytest

from ibkr_sim.market.seeded import KeyedDraws, pcg64_states


@pytest.mark.parametrize("prefix", [[7, 77], [2**40 + 3, 77], [0], []])
def test_keyed_draws_are_numpys(prefix: list[int]) -> None:
    """Each key's PCG64 state is numpy's ``PCG64(SeedSequence(key))``'s, and a mixed run of
    bounded integers (up to 2**32 - 1 values), doubles, uniforms and normals gives numpy's
    numbers."""
    rs = np.random.default_rng(1)
    keys = rs.integers(0, 2**32, size=(400, 3))
    keys[:40] = rs.integers(0, 5, size=(40, 3))  # small words, as the news' keys are
    draws = KeyedDraws()
    for row, state in zip(keys.tolist(), pcg64_states(prefix, keys), strict=True):
        ref = np.random.default_rng(np.random.SeedSequence([*prefix, *row]))
        expected = ref.bit_generator.state["state"]
        assert state == (expected["state"], expected["inc"]), row
        draws.start(state)
        for op in rs.integers(0, 6, size=12).tolist():
            if op == 0:
                n = int(rs.integers(1, 2**32))
                assert draws.integers(n) == ref.integers(n)
            elif op == 1:
                low = int(rs.integers(0, 100))
                high = low + int(rs.integers(1, 700))
                assert draws.integers(low, high) == ref.integers(low, high)
            elif op == 2:
                assert draws.random() == ref.random()
            elif op == 3:
                assert draws.uniform(0.02, 0.4) == ref.uniform(0.02, 0.4)
            elif op == 4:
                assert draws.standard_normal() == ref.standard_normal()
            else:  # a single value draws nothing
                assert draws.integers(5, 6) == ref.integers(5, 6) == 5


def test_keys_outside_one_word_are_refused() -> None:
    with pytest.raises(ValueError, match="2-d array of integers in"):
        pcg64_states([7], np.array([[2**32]]))
    with pytest.raises(ValueError, match="non-negative"):
        pcg64_states([-1], np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError, match="range must hold"):
        KeyedDraws().integers(0)
