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
draws are numpy's without building a generator per headline (:mod:`ibkr_sim.market.seeded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import numpy as np

from ibkr_sim.market.calendar import NEW_YORK, schedule, to_ns
from ibkr_sim.market.edge import Edge
from ibkr_sim.market.paths import panel
from ibkr_sim.market.seeded import KeyedDraws, pcg64_states
from ibkr_sim.universe import Instrument, stable_int

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


def headlines(
    seed: int, edge: Edge, inst: Instrument, col: int | None, start: datetime, end: datetime
) -> list[Headline]:
    """Headlines with ``start <= time <= end``, oldest first (stocks only; others have none).

    ``col`` is the instrument's panel column (None for a contract outside the panel).
    """
    start_ns, end_ns = to_ns(start), to_ns(end)
    if col is None or inst.sec_type != "STK" or inst.is_etf or end_ns < start_ns:
        return []
    p = panel(seed, edge)
    days = schedule()[0]
    lo = int(np.searchsorted(days, np.datetime64(start.astimezone(NEW_YORK).date(), "D")))
    hi = int(np.searchsorted(days, np.datetime64(end.astimezone(NEW_YORK).date(), "D"), "right"))
    sessions = np.flatnonzero(p.news_count[lo:hi, col]) + lo
    found = _session_headlines(seed, edge, inst, col, sessions)
    return [h for h in found if start <= h.time <= end]


#: New York minute of the open: a jump's news comes then (less ``Edge.jump_news_lead``)
_OPEN_MINUTE = 9 * 60 + 30
_LAST_MINUTE = 20 * 60  # the day's last headline minute


def _session_headlines(
    seed: int, edge: Edge, inst: Instrument, col: int, sessions: np.ndarray
) -> list[Headline]:
    """The headlines of the panel rows ``sessions`` (ascending), oldest first: each session's
    ``news_count`` headlines, the k-th drawn from its own generator keyed (seed, 77, col,
    session, k), so a headline is the same whichever span it is asked in."""
    p = panel(seed, edge)
    counts = p.news_count[sessions, col].astype(np.int64)
    rows = np.repeat(sessions, counts)
    ks = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    states = pcg64_states([seed, 77], np.column_stack([np.full(len(rows), col), rows, ks]))
    rng = KeyedDraws()
    first = _OPEN_MINUTE - edge.jump_news_lead
    out: list[Headline] = []
    for t, count in zip(sessions.tolist(), counts.tolist(), strict=True):
        # the day's UTC offset at noon holds from 06:00 to 20:00 (clocks change at 02:00)
        noon = datetime.combine(schedule()[0][t].item(), time(12), NEW_YORK).astimezone(UTC)
        base_tone, jumped = float(p.news_tone[t, col]), bool(p.jump[t, col])
        session = []
        for k in range(count):
            rng.start(states[len(out) + k])
            if jumped and k == 0:  # the big move is reported as the price makes it
                minute = first + rng.integers(0, 15)
            elif jumped:  # later stories of the move, never before it
                minute = first + rng.integers(0, _LAST_MINUTE - first)
            else:
                minute = 6 * 60 + rng.integers(0, 14 * 60)
            tone = min(max(base_tone + 0.15 * rng.standard_normal(), -1.0), 1.0)
            strong = (jumped and k == 0) or (abs(base_tone) > 0.9 and rng.random() < 0.3)
            provider = NEWS_PROVIDERS[rng.integers(len(NEWS_PROVIDERS))][0]
            article = f"{provider}${stable_int(seed, inst.conid, t, k) % 2**32:08x}"
            session.append(
                Headline(
                    time=noon + timedelta(minutes=minute - 12 * 60),
                    provider_code=provider,
                    article_id=article,
                    headline=_headline_text(rng, inst, tone, strong),
                    conid=inst.conid,
                    symbol=inst.symbol,
                    tone=round(tone, 4),
                )
            )
        out.extend(sorted(session, key=lambda h: h.time))
    return out
