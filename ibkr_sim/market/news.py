"""News of the simulated market: dated headlines whose tone relates to returns.

How many headlines a stock gets on a session, their common tone and the jumps they report are
drawn with the daily panel (:mod:`ibkr_sim.market.paths`), where the tone adds a decaying drift
of ``Edge.news_tone_drift`` per unit tone to the next five sessions' returns (none in the
edge-free world). Here each headline gets its time (06:00-20:00 New York; on a jump's session
every headline comes once the price can move, from the open less ``Edge.jump_news_lead``
minutes, 0 by default, the first within 15 minutes of it: no headline tells a jump's sign
before the price shows it), a provider, a stable article id and its text: a template picked by
tone (positive, neutral, negative), with event phrases ("beats estimates", "guidance cut", "SEC
probe", "FDA ban" for health care) when the news is strong, as it always is for a jump. Only
stocks have news; ETFs and other instruments have none. Each headline draws from its own numpy
generator, keyed by its stock and session, so it is the same whichever span it is asked in; the
draws are numpy's without building a generator per headline, made for all of a request's
headlines at once (:class:`~ibkr_sim.market.seeded.KeyedArrays`), and served as columns
(:func:`news_columns`) or as :class:`Headline` objects (:func:`headlines`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from hashlib import blake2b

import numpy as np

from ibkr_sim.market.calendar import NEW_YORK, schedule, to_ns
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.paths import panel
from ibkr_sim.market.seeded import KeyedArrays, KeyedDraws, pcg64_states
from ibkr_sim.universe import Instrument

NEWS_PROVIDERS = (
    ("BRFG", "Briefing.com General Market Columns"),
    ("DJNL", "Dow Jones Newsletters"),
    ("BZ", "Benzinga Pro"),
)


@dataclass(frozen=True)
class Headline:
    """One news headline, IB-style (provider code, article id)."""

    time: datetime
    provider_code: str
    article_id: str
    headline: str
    conid: int
    symbol: str
    tone: float  # -1 (very negative) .. 1 (very positive)


_BROKERS = (
    "Morgan Stanley",
    "Goldman Sachs",
    "JPMorgan",
    "BofA Securities",
    "Citi",
    "Barclays",
    "UBS",
    "Jefferies",
    "Wells Fargo",
    "Evercore ISI",
    "Bernstein",
    "Piper Sandler",
)
_POSITIVE = (
    "{name} shares rise after {broker} upgrades to Overweight",
    "{name} raises full-year outlook on strong demand",
    "{sym}: {broker} lifts price target to ${target}",
    "{name} wins multi-year contract; shares climb",
    "{name} announces ${buyback} billion share buyback",
    "Insiders add to stakes in {name}",
    "{name} margins expand as input costs ease",
)
_NEUTRAL = (
    "{name} to present at {broker} {sector} conference",
    "{name} declares quarterly dividend",
    "{name} names new chief financial officer",
    "{name} files quarterly report with the SEC",
    "{name} schedules Q{q} earnings call",
    "Options traders position in {sym} ahead of earnings",
)
_NEGATIVE = (
    "{name} downgraded to Underweight at {broker}",
    "{name} shares slip as sales growth slows",
    "{sym}: {broker} cuts price target to ${target}",
    "{name} warns of supply-chain delays",
    "Short interest in {name} climbs to a one-year high",
    "{name} CFO departs unexpectedly",
)
_STRONG_POSITIVE = (
    "{name} beats estimates and raises guidance; shares jump",
    "{name} Q{q} EPS beats estimates by ${beat}",
)
_STRONG_NEGATIVE = (
    "{name} guidance cut sends shares lower",
    "{name} discloses SEC probe into revenue recognition",
    "{name} misses estimates as demand weakens",
)
_FDA = "FDA ban on {name} drug candidate weighs on shares"


def _headline_text(rng: KeyedDraws, inst: Instrument, tone: float, strong: bool) -> str:
    if strong and tone > 0:
        pool: tuple[str, ...] = _STRONG_POSITIVE
    elif strong:
        pool = (*_STRONG_NEGATIVE, _FDA) if inst.sector == "Health Care" else _STRONG_NEGATIVE
    else:
        pool = _POSITIVE if tone > 0.25 else _NEGATIVE if tone < -0.25 else _NEUTRAL
    template = pool[rng.integers(len(pool))]
    return template.format(
        name=inst.name,
        sym=inst.symbol,
        broker=_BROKERS[rng.integers(len(_BROKERS))],
        sector=inst.sector or "Investor",
        target=rng.integers(20, 600),
        buyback=rng.integers(1, 20),
        q=rng.integers(1, 5),
        beat=f"{rng.uniform(0.02, 0.4):.2f}",
    )


@dataclass(frozen=True)
class NewsColumns:
    """Headlines of one stock as columns, oldest first: what :func:`news_columns` returns
    (a frame-building caller reads these; :meth:`headlines` makes :class:`Headline` objects)."""

    time_ns: np.ndarray  # int64, UTC nanoseconds
    provider_code: np.ndarray  # object (str)
    article_id: np.ndarray  # object (str)
    headline: np.ndarray  # object (str)
    tone: np.ndarray  # float64, -1 (very negative) .. 1 (very positive), 4 decimals
    conid: int
    symbol: str

    def __len__(self) -> int:
        return len(self.time_ns)

    def take(self, rows: np.ndarray) -> NewsColumns:
        """The headlines at positions ``rows`` (indices or a boolean mask), in that order."""
        return NewsColumns(
            self.time_ns[rows],
            self.provider_code[rows],
            self.article_id[rows],
            self.headline[rows],
            self.tone[rows],
            self.conid,
            self.symbol,
        )

    def headlines(self) -> list[Headline]:
        """The headlines as :class:`Headline` objects, in the columns' order."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return [
            Headline(
                time=epoch + timedelta(microseconds=t // 1000),
                provider_code=p,
                article_id=a,
                headline=h,
                conid=self.conid,
                symbol=self.symbol,
                tone=tone,
            )
            for t, p, a, h, tone in zip(
                self.time_ns.tolist(),
                self.provider_code.tolist(),
                self.article_id.tolist(),
                self.headline.tolist(),
                self.tone.tolist(),
                strict=True,
            )
        ]


def headlines(
    seed: int, edge: Edge, inst: Instrument, col: int | None, start: datetime, end: datetime
) -> list[Headline]:
    """Headlines with ``start <= time <= end``, oldest first (stocks only; others have none).

    ``col`` is the instrument's panel column (None for a contract outside the panel).
    """
    return news_columns(seed, edge, inst, col, start, end).headlines()


def news_columns(
    seed: int, edge: Edge, inst: Instrument, col: int | None, start: datetime, end: datetime
) -> NewsColumns:
    """:func:`headlines` as columns: the headlines with ``start <= time <= end``, oldest first
    (none for anything but a stock, or for ``col`` None: a contract outside the panel)."""
    return news_columns_many(seed, edge, [inst], [col], start, end)[0]


def news_columns_many(
    seed: int,
    edge: Edge,
    insts: Sequence[Instrument],
    cols: Sequence[int | None],
    start: datetime,
    end: datetime,
) -> list[NewsColumns]:
    """:func:`news_columns` of many instruments (``cols[k]`` is ``insts[k]``'s panel column),
    drawn together: the same headlines as one by one, for less numpy overhead per stock."""
    start_ns, end_ns = to_ns(start), to_ns(end)
    out = [_no_news(inst) for inst in insts]
    served = [
        k
        for k, (inst, col) in enumerate(zip(insts, cols, strict=True))
        if col is not None and inst.sec_type == "STK" and not inst.is_etf
    ]
    if not served or end_ns < start_ns:
        return out
    days = schedule()[0]
    lo = int(np.searchsorted(days, np.datetime64(start.astimezone(NEW_YORK).date(), "D")))
    hi = int(np.searchsorted(days, np.datetime64(end.astimezone(NEW_YORK).date(), "D"), "right"))
    picked = np.array([cols[k] for k in served], dtype=np.int64)
    found = _session_headlines(seed, edge, [insts[k] for k in served], picked, lo, hi)
    for k, one in zip(served, found, strict=True):
        out[k] = one.take((one.time_ns >= start_ns) & (one.time_ns <= end_ns))
    return out


def _no_news(inst: Instrument) -> NewsColumns:
    """An instrument's empty headline columns."""
    none = np.zeros(0, dtype=object)
    return NewsColumns(
        np.zeros(0, np.int64), none, none, none, np.zeros(0), inst.conid, inst.symbol
    )


#: New York minute of the open: a jump's news comes then (less ``Edge.jump_news_lead``)
_OPEN_MINUTE = 9 * 60 + 30
_LAST_MINUTE = 20 * 60  # the day's last headline minute
_MINUTE_NS = 60_000_000_000


@functools.cache
def _noon_ns() -> np.ndarray:
    """Each session's 12:00 New York in UTC nanoseconds: the day's UTC offset at noon holds
    from 06:00 to 20:00 (clocks change at 02:00), when headlines come."""
    return np.array(
        [to_ns(datetime.combine(d, time(12), NEW_YORK)) for d in schedule()[0].tolist()],
        dtype=np.int64,
    )


def _session_headlines(
    seed: int, edge: Edge, insts: Sequence[Instrument], cols: np.ndarray, lo: int, hi: int
) -> list[NewsColumns]:
    """The headlines of panel rows ``lo:hi`` of each of ``insts`` (stocks; ``cols`` their
    panel columns), each stock's oldest first: each session's ``news_count`` headlines, the
    k-th drawn from its own generator keyed (seed, 77, col, session, k), so a headline is the
    same whichever span (and with whichever other stocks) it is asked in. The draws are made
    for all headlines at once (:class:`~ibkr_sim.market.seeded.KeyedArrays`); the few whose
    draws leave numpy's fast paths are drawn again one by one (:func:`_drawn_one_by_one`)."""
    p = panel(seed, edge)
    per_day = p.news_count[lo:hi][:, cols].T.astype(np.int64)  # (stocks, sessions)
    counts = per_day.ravel()
    rows = np.repeat(np.tile(np.arange(lo, hi), len(cols)), counts)
    stock = np.repeat(np.repeat(np.arange(len(cols)), hi - lo), counts)
    ks = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    col = cols[stock]
    keys = np.column_stack([col, rows, ks])
    base_tone = p.news_tone[rows, col].astype(np.float64)
    jumped = p.jump[rows, col]
    first = _OPEN_MINUTE - edge.jump_news_lead
    of_row = [insts[i] for i in stock.tolist()]
    if len(rows) < _AT_ONCE_FROM:  # a few headlines: one generator after another costs less
        drawn = _drawn_one_by_one(seed, of_row, keys, base_tone, jumped, first)
        minute = np.array([m for m, _, _, _ in drawn], dtype=np.int64)
        tones = np.array([t for _, t, _, _ in drawn], dtype=np.float64)
        providers = [code for _, _, code, _ in drawn]
        texts = [text for _, _, _, text in drawn]
        return _columns(seed, insts, stock, rows, ks, minute, tones, providers, texts)
    rng = KeyedArrays([seed, 77], keys, _OUTPUTS)
    # the big move is reported as the price makes it; later stories of the move, never before it
    lead = jumped & (ks == 0)
    minute = np.where(jumped, first, 6 * 60) + rng.integers(
        0, np.where(lead, 15, np.where(jumped, _LAST_MINUTE - first, 14 * 60))
    )
    tone = np.clip(base_tone + 0.15 * rng.standard_normal(), -1.0, 1.0)
    asks = np.flatnonzero(~lead & (np.abs(base_tone) > 0.9))
    strong = lead.copy()
    strong[asks] = rng.random(asks) < 0.3
    provider = rng.integers(0, len(NEWS_PROVIDERS))
    health = np.array([inst.sector == "Health Care" for inst in insts], dtype=bool)[stock]
    pool = _pools(health, tone, strong)
    template = rng.integers(0, np.array([len(_POOLS[k]) for k in range(len(_POOLS))])[pool])
    broker = rng.integers(0, len(_BROKERS))
    target = rng.integers(20, 600)
    buyback = rng.integers(1, 20)
    quarter = rng.integers(1, 5)
    beat = rng.uniform(0.02, 0.4)
    providers = [NEWS_PROVIDERS[i][0] for i in provider.tolist()]
    texts = [
        _POOLS[k][t].format(
            name=inst.name,
            sym=inst.symbol,
            broker=_BROKERS[b],
            sector=inst.sector or "Investor",
            target=x,
            buyback=y,
            q=q,
            beat=f"{u:.2f}",
        )
        for inst, k, t, b, x, y, q, u in zip(
            of_row,
            pool.tolist(),
            template.tolist(),
            broker.tolist(),
            target.tolist(),
            buyback.tolist(),
            quarter.tolist(),
            beat.tolist(),
            strict=True,
        )
    ]
    tones = np.array([round(t, 4) for t in tone.tolist()])  # Python's rounding, as before
    irregular = np.flatnonzero(rng.irregular)
    if len(irregular):
        again = _drawn_one_by_one(
            seed,
            [of_row[i] for i in irregular.tolist()],
            keys[irregular],
            base_tone[irregular],
            jumped[irregular],
            first,
        )
        for i, (m, t, code, text) in zip(irregular.tolist(), again, strict=True):
            minute[i], tones[i], providers[i], texts[i] = m, t, code, text
    return _columns(seed, insts, stock, rows, ks, minute, tones, providers, texts)


def _columns(
    seed: int,
    insts: Sequence[Instrument],
    stock: np.ndarray,
    rows: np.ndarray,
    ks: np.ndarray,
    minute: np.ndarray,
    tones: np.ndarray,
    providers: list[str],
    texts: list[str],
) -> list[NewsColumns]:
    """The headlines of ``insts[stock]`` on panel rows ``rows`` (the k-th ``ks`` of their
    session, in stock order) at New York ``minute``, with their ``tones``, ``providers`` and
    ``texts``, as columns of each stock, oldest first."""
    # the article id: the low 32 bits of stable_int(seed, conid, session, k), its hash inlined
    prefixes = [f"{seed}|{inst.conid}|" for inst in insts]
    articles = [
        f"{code}${blake2b(f'{prefixes[i]}{t}|{k}'.encode(), digest_size=8).digest()[4:].hex()}"
        for code, i, t, k in zip(providers, stock.tolist(), rows.tolist(), ks.tolist(), strict=True)
    ]
    time_ns = _noon_ns()[rows] + (minute - 12 * 60) * _MINUTE_NS
    # each stock's sessions by time (stable: ties keep k's order)
    order = np.lexsort((time_ns, rows, stock))
    n = len(rows)
    provider = np.array(providers, dtype=object).reshape(n)[order]
    article = np.array(articles, dtype=object).reshape(n)[order]
    text = np.array(texts, dtype=object).reshape(n)[order]
    time_ns, tones = time_ns[order], tones[order]
    edges = np.searchsorted(stock[order], np.arange(len(insts) + 1))
    return [
        NewsColumns(
            time_ns[a:b],
            provider[a:b],
            article[a:b],
            text[a:b],
            tones[a:b],
            inst.conid,
            inst.symbol,
        )
        for inst, a, b in zip(insts, edges[:-1].tolist(), edges[1:].tolist(), strict=True)
    ]


#: from this many headlines a request's are drawn all at once (below, one by one is cheaper)
_AT_ONCE_FROM = 48
#: PCG64 outputs drawn per headline: its draws take at most seven (see _drawn_one_by_one)
_OUTPUTS = 8
#: the templates by kind: strong positive, strong negative, strong negative for health care,
#: positive, negative, neutral (:func:`_pools` picks one per headline)
_POOLS: tuple[tuple[str, ...], ...] = (
    _STRONG_POSITIVE,
    _STRONG_NEGATIVE,
    (*_STRONG_NEGATIVE, _FDA),
    _POSITIVE,
    _NEGATIVE,
    _NEUTRAL,
)


def _pools(health_care: np.ndarray, tone: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Each headline's template pool (an index of :data:`_POOLS`), as
    :func:`_headline_text` picks it (``health_care``: the headline's stock is in that sector)."""
    negative = np.where(health_care, 2, 1)
    mild = np.where(tone > 0.25, 3, np.where(tone < -0.25, 4, 5))
    return np.where(strong, np.where(tone > 0, 0, negative), mild)


def _drawn_one_by_one(
    seed: int,
    insts: Sequence[Instrument],
    keys: np.ndarray,
    base_tone: np.ndarray,
    jumped: np.ndarray,
    first: int,
) -> list[tuple[int, float, str, str]]:
    """The (minute, rounded tone, provider, text) of the headlines keyed ``keys`` (col,
    session, k; about ``insts``, one a key), each drawn from its own generator one draw at a
    time: what :func:`_session_headlines` draws for all at once, for the headlines whose draws
    leave numpy's fast paths."""
    rng = KeyedDraws()
    out = []
    for inst, state, (_, _, k), base, jump in zip(
        insts,
        pcg64_states([seed, 77], keys),
        keys.tolist(),
        base_tone.tolist(),
        jumped.tolist(),
        strict=True,
    ):
        rng.start(state)
        if jump and k == 0:  # the big move is reported as the price makes it
            minute = first + rng.integers(0, 15)
        elif jump:  # later stories of the move, never before it
            minute = first + rng.integers(0, _LAST_MINUTE - first)
        else:
            minute = 6 * 60 + rng.integers(0, 14 * 60)
        tone = min(max(base + 0.15 * rng.standard_normal(), -1.0), 1.0)
        strong = (jump and k == 0) or (abs(base) > 0.9 and rng.random() < 0.3)
        provider = NEWS_PROVIDERS[rng.integers(len(NEWS_PROVIDERS))][0]
        out.append((minute, round(tone, 4), provider, _headline_text(rng, inst, tone, strong)))
    return out
