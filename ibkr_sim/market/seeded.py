"""Many small keyed numpy generators at the cost of one: the draws of
``np.random.default_rng(np.random.SeedSequence(key))`` for many keys, the same numbers.

The news (:mod:`ibkr_sim.market.news`) gives each headline its own generator, keyed by
(seed, 77, panel column, session, k), so a headline never depends on which others were asked
for. Building one in numpy (``SeedSequence`` hashing, then ``PCG64`` seeding) costs ~45 µs, more
than everything else a headline needs; a 6-month replay of 700 names reads ~150,000 headlines.
Here the keys are hashed together (numpy's ``SeedSequence`` mixing, vectorised over the keys:
:func:`pcg64_states`), each ``PCG64`` is seeded with integer arithmetic, and :class:`KeyedDraws`
moves one generator to each key's state in turn. Its draws follow numpy's algorithms on the raw
64-bit outputs (Lemire's bounded integers on 32-bit halves, buffered as ``PCG64`` buffers them;
53-bit doubles), except the standard normal (a ziggurat on numpy's tables), which the generator
draws itself. The numbers are numpy 2's: tests/unit/test_seeded_draws.py checks them against numpy
for many keys, so a numpy that changed its algorithms would fail there first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1
_M128 = (1 << 128) - 1
# numpy's SeedSequence hashing constants (numpy/random/bit_generator.pyx; Melissa O'Neill's
# seed_seq_fe), and its pool of four 32-bit words
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_XSHIFT = np.uint32(16)
_POOL_SIZE = 4
#: PCG64's 128-bit LCG multiplier (PCG_DEFAULT_MULTIPLIER_128 of numpy/random/src/pcg64)
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645


def _words(n: int) -> list[int]:
    """numpy's 32-bit words of a non-negative integer, least significant first ([0] for 0)."""
    if n < 0:
        raise ValueError(f"a seed sequence's entropy must be non-negative, got {n}")
    words = [n & _M32]
    n >>= 32
    while n:
        words.append(n & _M32)
        n >>= 32
    return words


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = _MIX_MULT_L * x - _MIX_MULT_R * y  # uint32 arrays wrap, as numpy's C does
    return result ^ (result >> _XSHIFT)


def pcg64_states(prefix: Sequence[int], keys: np.ndarray) -> list[tuple[int, int]]:
    """The (state, increment) of ``np.random.PCG64(np.random.SeedSequence([*prefix, *row]))``
    for each row of ``keys`` (an n x m array of integers in [0, 2**32): one 32-bit word each;
    the ``prefix`` integers may be of any size), as ``PCG64.state["state"]`` reports them."""
    keys = np.asarray(keys)
    if keys.ndim != 2 or (keys.size and (keys.min() < 0 or keys.max() > _M32)):
        raise ValueError("keys must be a 2-d array of integers in [0, 2**32), one key a row")
    n = len(keys)
    head = [w for part in prefix for w in _words(int(part))]
    entropy = [np.full(n, w, np.uint32) for w in head] + [
        keys[:, j].astype(np.uint32) for j in range(keys.shape[1])
    ]
    hash_const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal hash_const
        value = value ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_A) & _M32
        value = value * np.uint32(hash_const)
        return value ^ (value >> _XSHIFT)

    zero = np.zeros(n, np.uint32)
    pool = [hashmix(entropy[i] if i < len(entropy) else zero) for i in range(_POOL_SIZE)]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = _mix(pool[dst], hashmix(pool[src]))
    for src in range(_POOL_SIZE, len(entropy)):
        for dst in range(_POOL_SIZE):
            pool[dst] = _mix(pool[dst], hashmix(entropy[src]))
    # generate_state(4, np.uint64): eight 32-bit words, paired little-endian into four 64-bit
    hash_const = _INIT_B
    state32 = []
    for i in range(2 * _POOL_SIZE):
        value = pool[i % _POOL_SIZE] ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_B) & _M32
        value = value * np.uint32(hash_const)
        state32.append((value ^ (value >> _XSHIFT)).astype(np.uint64))
    state64 = [(state32[2 * j] | (state32[2 * j + 1] << np.uint64(32))).tolist() for j in range(4)]
    out = []
    for seed_hi, seed_lo, seq_hi, seq_lo in zip(*state64, strict=True):
        # pcg64_srandom_r: state 0, one step, add the seed, another step
        inc = ((((seq_hi << 64) | seq_lo) << 1) | 1) & _M128
        state = (((inc + ((seed_hi << 64) | seed_lo)) & _M128) * _PCG_MULT + inc) & _M128
        out.append((state, inc))
    return out


class KeyedDraws:
    """numpy ``Generator`` draws of one key's generator after another's, from a single
    ``PCG64`` moved to each key's state (:meth:`start`); the draws a ``Generator`` of that key
    would make, call for call. Not thread-safe: one per thread (or request)."""

    def __init__(self) -> None:
        self._bits = np.random.PCG64(0)
        self._generator = np.random.Generator(self._bits)
        self._half: int | None = None  # the upper half of a 64-bit output PCG64 keeps for later

    def start(self, state: tuple[int, int]) -> None:
        """Continue from a fresh generator of the key whose (state, increment) is ``state``
        (:func:`pcg64_states`)."""
        self._bits.state = {
            "bit_generator": "PCG64",
            "state": {"state": state[0], "inc": state[1]},
            "has_uint32": 0,
            "uinteger": 0,
        }
        self._half = None

    def integers(self, low: int, high: int | None = None) -> int:
        """``Generator.integers(low, high)`` (``integers(0, low)`` when ``high`` is None) for a
        range below 2**32: Lemire's multiply-and-reject on 32-bit draws, each the lower half of
        a 64-bit output or the upper half kept from the previous one."""
        low, high = (0, low) if high is None else (low, high)
        span = high - low
        if not 0 < span <= _M32:
            raise ValueError(f"integers({low}, {high}): the range must hold 1 to 2**32 - 1 values")
        if span == 1:
            return low  # numpy draws nothing for a single value
        threshold = -1  # computed only when a draw lands in the first ``span`` values
        while True:
            if self._half is None:
                raw = int(self._bits.random_raw())
                self._half = raw >> 32
                product = (raw & _M32) * span
            else:
                product = self._half * span
                self._half = None
            if (product & _M32) >= span:
                return low + (product >> 32)
            if threshold < 0:
                threshold = (_M32 + 1 - span) % span
            if (product & _M32) >= threshold:
                return low + (product >> 32)

    def random(self) -> float:
        """``Generator.random()``: a 53-bit double in [0, 1)."""
        return (int(self._bits.random_raw()) >> 11) * (1.0 / 9007199254740992.0)

    def uniform(self, low: float, high: float) -> float:
        """``Generator.uniform(low, high)``."""
        return low + (high - low) * self.random()

    def standard_normal(self) -> float:
        """``Generator.standard_normal()``, drawn by numpy itself (its ziggurat)."""
        return float(self._generator.standard_normal())
