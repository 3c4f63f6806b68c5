"""The keyed draws of the simulated news (ibkr_sim.market.seeded) are numpy's own, call for call."""

from __future__ import annotations

import numpy as np
import pytest

from ibkr_sim.market.seeded import KeyedArrays, KeyedDraws, pcg64_states


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


def test_keyed_arrays_draw_what_keyed_draws_draw() -> None:
    """Many keys' draws at once are each key's own, call for call; a key whose draw leaves
    numpy's fast paths is flagged irregular (its numbers unused), and a few are."""
    rs = np.random.default_rng(3)
    keys = rs.integers(0, 2**32, size=(5000, 3))
    keys[:500] = rs.integers(0, 5, size=(500, 3))
    arrays = KeyedArrays([7, 77], keys, 12)
    script = [("int", 0, 15), ("normal",), ("random",), ("int", 0, 3), ("int", 0, 7)]
    script += [("int", 0, 12), ("int", 20, 600), ("int", 1, 20), ("uniform",), ("int", 1, 5)]
    script += [("normal",), ("int", 0, 1000)]
    drawn = []
    for op, *args in script:
        if op == "int":
            drawn.append(arrays.integers(*args))
        elif op == "normal":
            drawn.append(arrays.standard_normal())
        elif op == "random":
            drawn.append(arrays.random())
        else:
            drawn.append(arrays.uniform(0.02, 0.4))
    irregular = arrays.irregular
    assert 0 < irregular.sum() < 0.1 * len(keys)
    one = KeyedDraws()
    for i, state in enumerate(pcg64_states([7, 77], keys)):
        if irregular[i]:
            continue
        one.start(state)
        for (op, *args), values in zip(script, drawn, strict=True):
            if op == "int":
                expected = one.integers(*args)
            elif op == "normal":
                expected = one.standard_normal()
            elif op == "random":
                expected = one.random()
            else:
                expected = one.uniform(0.02, 0.4)
            assert values[i] == expected and np.signbit(values[i]) == np.signbit(expected), i
    # a subset of keys draws only for those rows
    subset = KeyedArrays([7, 77], keys[:10], 4)
    rows = np.array([1, 3, 5])
    assert subset.random(rows).tolist() == [
        np.random.default_rng(np.random.SeedSequence([7, 77, *keys[r].tolist()])).random()
        for r in rows.tolist()
    ]
    with pytest.raises(ValueError, match="2 to 2\\*\\*32 - 1 values"):
        subset.integers(5, 6)
