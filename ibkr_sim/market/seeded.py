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
draws itself. :class:`KeyedArrays` makes the same draws for many keys at once: the PCG64 steps in
128-bit arithmetic on pairs of uint64 arrays (:func:`raw_outputs`), the normal on numpy's
ziggurat read from numpy itself (:func:`_ziggurat`); a key whose draw leaves a fast path (a
Lemire rejection, a normal outside the ziggurat's rectangles) is flagged, to be drawn with
:class:`KeyedDraws`. The numbers are numpy 2's: tests/unit/test_seeded_draws.py checks them
against numpy for many keys, so a numpy that changed its algorithms would fail there first.
"""

from __future__ import annotations

import functools
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


def pcg64_state_words(
    prefix: Sequence[int], keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pcg64_states` as uint64 arrays: the state's high and low words, then the
    increment's, one element per row of ``keys``."""
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
    seed_hi, seed_lo, seq_hi, seq_lo = (
        state32[2 * j] | (state32[2 * j + 1] << np.uint64(32)) for j in range(4)
    )
    # pcg64_srandom_r: state 0, one step, add the seed, another step
    inc = (seq_hi << _ONE) | (seq_lo >> _SHIFT63), (seq_lo << _ONE) | _ONE
    return (*_step(_add(inc, (seed_hi, seed_lo)), inc), *inc)


def pcg64_states(prefix: Sequence[int], keys: np.ndarray) -> list[tuple[int, int]]:
    """The (state, increment) of ``np.random.PCG64(np.random.SeedSequence([*prefix, *row]))``
    for each row of ``keys`` (an n x m array of integers in [0, 2**32): one 32-bit word each;
    the ``prefix`` integers may be of any size), as ``PCG64.state["state"]`` reports them."""
    state_hi, state_lo, inc_hi, inc_lo = pcg64_state_words(prefix, keys)
    return [
        ((sh << 64) | sl, (ih << 64) | il)
        for sh, sl, ih, il in zip(
            state_hi.tolist(), state_lo.tolist(), inc_hi.tolist(), inc_lo.tolist(), strict=True
        )
    ]


# -- 128-bit arithmetic on (high, low) pairs of uint64 arrays, wrapping as PCG64's C does -----

_ONE, _SHIFT32, _SHIFT58, _SHIFT63 = np.uint64(1), np.uint64(32), np.uint64(58), np.uint64(63)
_LOW32 = np.uint64(_M32)
_MULT_HI, _MULT_LO = np.uint64(_PCG_MULT >> 64), np.uint64(_PCG_MULT & _M64)


def _mulhi(a: np.ndarray, b: np.uint64) -> np.ndarray:
    """The high 64 bits of the 128-bit product of ``a`` and ``b``, from 32-bit halves."""
    a0, a1, b0, b1 = a & _LOW32, a >> _SHIFT32, b & _LOW32, b >> _SHIFT32
    p01, p10 = a0 * b1, a1 * b0
    mid = ((a0 * b0) >> _SHIFT32) + (p01 & _LOW32) + (p10 & _LOW32)
    return a1 * b1 + (p01 >> _SHIFT32) + (p10 >> _SHIFT32) + (mid >> _SHIFT32)


def _add(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    low = a[1] + b[1]
    return a[0] + b[0] + (low < a[1]).astype(np.uint64), low


def _step(
    state: tuple[np.ndarray, np.ndarray], inc: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One LCG step of PCG64: ``state * multiplier + inc`` modulo 2**128."""
    hi, lo = state
    product = (_mulhi(lo, _MULT_LO) + hi * _MULT_LO + lo * _MULT_HI, lo * _MULT_LO)
    return _add(product, inc)


def raw_outputs(words: tuple[np.ndarray, ...], count: int) -> np.ndarray:
    """The first ``count`` 64-bit outputs (``PCG64.random_raw``) of each generator whose
    (state, increment) are ``words`` (:func:`pcg64_state_words`): an n x ``count`` array.
    PCG64 steps, then outputs its XSL-RR of the new state."""
    state_hi, state_lo, inc_hi, inc_lo = words
    state, inc = (state_hi, state_lo), (inc_hi, inc_lo)
    out = np.empty((len(state_hi), count), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(count):
            state = _step(state, inc)
            x = state[0] ^ state[1]
            rot = state[0] >> _SHIFT58
            out[:, j] = (x >> rot) | (x << ((np.uint64(64) - rot) & _SHIFT63))
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


# -- the same draws for many keys at once ----------------------------------------------------


def _crafted_state(raw: int) -> dict[str, object]:
    """A PCG64 state whose next output is ``raw``: the step lands on the state ``raw`` (its
    high word 0, so XSL-RR neither rotates nor mixes), from the state before it."""
    inc = 1
    before = ((raw - inc) * pow(_PCG_MULT, -1, 1 << 128)) & _M128
    return {
        "bit_generator": "PCG64",
        "state": {"state": before, "inc": inc},
        "has_uint32": 0,
        "uinteger": 0,
    }


@functools.cache
def _ziggurat() -> tuple[np.ndarray, np.ndarray]:
    """numpy's 256-layer ziggurat for ``Generator.standard_normal``, read from numpy itself
    (a few thousand probes, once): a 64-bit output's low byte picks the layer ``i``, the next
    bit the sign, the next 52 bits ``rabs``; the draw is ``rabs * w[i]`` when
    ``rabs < k[i]`` (99 % of draws), else numpy goes on drawing. Returns (k, w): ``w[i]`` is
    the draw of ``rabs`` 1, ``k[i]`` the first ``rabs`` it refuses (a search, each probe
    telling from the generator's state whether it drew once; a layer refusing ``rabs`` 1 has
    ``k`` 0 or 1 and ``w`` 0, which no fast draw reads but as 0)."""
    bits = np.random.PCG64(0)
    generator = np.random.Generator(bits)

    def draw(layer: int, rabs: int) -> tuple[float, bool]:
        raw = layer | (rabs << 9)
        bits.state = _crafted_state(raw)
        value = float(generator.standard_normal())
        return value, bits.state["state"]["state"] == raw

    w = np.empty(256)
    k = np.empty(256, dtype=np.uint64)
    for layer in range(256):
        value, once = draw(layer, 1)
        if not once:  # the top layer refuses every draw (numpy then samples its wedge)
            w[layer], k[layer] = 0.0, int(draw(layer, 0)[1])
            continue
        w[layer] = value
    for layer in range(256):
        if w[layer] == 0.0:
            continue
        accepted, refused = 1, 1 << 52
        # the layers' edges: k[i] is within a few of 2**52 w[i-1] / w[i] (numpy builds them
        # so); a bracket around it is checked, and the whole range searched when it fails
        guess = int(w[layer - 1] / w[layer] * 2.0**52) if layer and w[layer - 1] else 0
        if (
            16 < guess < (1 << 52) - 16
            and draw(layer, guess - 16)[1]
            and not draw(layer, guess + 16)[1]
        ):
            accepted, refused = guess - 16, guess + 16
        while refused - accepted > 1:
            middle = (accepted + refused) // 2
            accepted, refused = (middle, refused) if draw(layer, middle)[1] else (accepted, middle)
        k[layer] = refused
    return k, w


class KeyedArrays:
    """:class:`KeyedDraws` for many keys at once: draw ``j`` of every key's generator, call for
    call, from each key's first PCG64 outputs (:func:`raw_outputs`). A key whose draw would
    need what the fast path does not follow (a Lemire rejection, a normal outside the
    ziggurat's rectangle, more than the outputs computed) is flagged in :attr:`irregular`
    and its numbers are not to be used: draw that key with :class:`KeyedDraws`."""

    def __init__(self, prefix: Sequence[int], keys: np.ndarray, outputs: int) -> None:
        n = len(keys)
        self._raw = raw_outputs(pcg64_state_words(prefix, keys), outputs)
        self._next = np.zeros(n, dtype=np.int64)  # the next unused output
        self._half = np.zeros(n, dtype=np.uint64)  # a kept upper half
        self._has_half = np.zeros(n, dtype=bool)
        self.irregular = np.zeros(n, dtype=bool)
        self._all = np.arange(n)

    def _take(self, rows: np.ndarray) -> np.ndarray:
        """The next unused output of each key in ``rows`` (an irregular key past the computed
        outputs reads its last one)."""
        last = self._raw.shape[1] - 1
        self.irregular[rows[self._next[rows] > last]] = True
        raw = self._raw[rows, np.minimum(self._next[rows], last)]
        self._next[rows] += 1
        return raw

    def integers(
        self, low: int, high: np.ndarray | int, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """``integers(low, high)`` of the keys ``rows`` (all by default), ``high`` one for all
        or one a row; each range must hold 2 to 2**32 - 1 values."""
        rows = self._all if rows is None else rows
        span = np.broadcast_to(np.asarray(high, dtype=np.int64) - low, rows.shape)
        if span.size and (span.min() < 2 or span.max() > _M32):
            raise ValueError("KeyedArrays.integers: each range must hold 2 to 2**32 - 1 values")
        span = span.astype(np.uint64)
        kept = self._has_half[rows]
        fresh = rows[~kept]
        half = np.empty(len(rows), dtype=np.uint64)
        half[kept] = self._half[rows[kept]]
        raw = self._take(fresh)
        half[~kept] = raw & _LOW32
        self._half[fresh] = raw >> _SHIFT32
        self._has_half[rows] = ~kept
        product = half * span
        # numpy compares the low word with a threshold only below ``span``: call those irregular
        self.irregular[rows[(product & _LOW32) < span]] = True
        return low + (product >> _SHIFT32).astype(np.int64)

    def random(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``random()`` of the keys ``rows`` (all by default): 53-bit doubles in [0, 1)."""
        rows = self._all if rows is None else rows
        return (self._take(rows) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)

    def uniform(self, low: float, high: float, rows: np.ndarray | None = None) -> np.ndarray:
        """``uniform(low, high)`` of the keys ``rows`` (all by default)."""
        return low + (high - low) * self.random(rows)

    def standard_normal(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``standard_normal()`` of the keys ``rows`` (all by default), on numpy's ziggurat
        (:func:`_ziggurat`); a draw outside its fast path makes the key irregular."""
        rows = self._all if rows is None else rows
        k, w = _ziggurat()
        raw = self._take(rows)
        layer = (raw & np.uint64(0xFF)).astype(np.intp)
        rabs = (raw >> np.uint64(9)) & np.uint64(0x000FFFFFFFFFFFFF)
        value = rabs.astype(np.float64) * w[layer]
        value = np.where((raw >> np.uint64(8)) & _ONE, -value, value)
        self.irregular[rows[rabs >= k[layer]]] = True
        return value
